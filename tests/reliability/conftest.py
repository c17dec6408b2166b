"""Fixtures of the reliability tests: the marker flow of tests/reliability/flows.py deployed on a
stack's pool, workers started and stopped by the tests, and a PostgreSQL stack of their own that a
test may stop and restart without disturbing the shared live stack."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient

from deployments import settings
from stack.local import LocalStack
from stack.postgres import PostgresCluster
from stack.processes import ManagedProcess
from tests.deployed_flows import deployed_test_flow
from tests.live_stack import new_stack, stack_client, wait_until
from tests.reliability.flows import WORKER_NAME_ENV, leave_marker
from tests.requirements import require_postgres_binaries

MARKER_DEPLOYMENT = "leave-marker/reliability-marker"


@contextmanager
def running_workers(
    stack: LocalStack, api: SyncPrefectClient, count: int
) -> Iterator[list[ManagedProcess]]:
    """`count` more workers on the stack's pool, each named (also in its runs' environment, for
    the marker files) and stopped afterwards, also when the test fails."""
    workers = []
    try:
        for _ in range(count):
            name = f"worker-{uuid.uuid4().hex[:8]}"
            worker = ManagedProcess(name, stack.state_dir)
            env = {**stack.worker_env, WORKER_NAME_ENV: name}
            worker.start(stack.worker_command(name), env, cwd=settings.REPO_ROOT)
            workers.append(worker)
        names = {worker.name for worker in workers}

        def all_registered() -> bool:
            return names <= {w.name for w in api.read_workers_for_work_pool(stack.pool_name)}

        wait_until(all_registered, settings.STARTUP_TIMEOUT_S, f"workers {sorted(names)}")
        yield workers
    finally:
        for worker in workers:
            worker.stop(settings.STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    require_postgres_binaries()
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_stack(
    postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The server on PostgreSQL with basic auth, as docker-compose.yml runs it, with the pool and
    prefect.yaml's deployments but no worker: the tests start the workers they need."""
    stack = new_stack(
        tmp_path_factory,
        "reliability-postgres",
        extra_env={"PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres_cluster.async_url},
        auth_string=f"admin:{uuid.uuid4().hex}",
    )
    try:
        stack.up(with_worker=False)
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def postgres_api(postgres_stack: LocalStack) -> Iterator[SyncPrefectClient]:
    with stack_client(postgres_stack) as client:
        yield client


@pytest.fixture
def marker_deployment(postgres_stack: LocalStack, postgres_api: SyncPrefectClient):
    with deployed_test_flow(
        postgres_api, postgres_stack.pool_name, leave_marker, MARKER_DEPLOYMENT
    ) as deployment:
        yield deployment


def read_markers(directory: Path) -> dict[str, list[str]]:
    """What leave_marker wrote: flow run id -> the worker of each execution (one per file)."""
    executions: dict[str, list[str]] = defaultdict(list)
    for marker in directory.iterdir():
        executions[marker.name.split(".", 1)[0]].append(marker.read_text())
    return dict(executions)
