"""compute_squares on a real Dask cluster: a `dask scheduler` and two `dask worker` processes
started here, and a deployment run of compute-squares whose job-variable env names the scheduler
(DASK_SCHEDULER_ADDRESS). The workers import the repository from PYTHONPATH, as the README tells
users to run them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client
from prefect.client.schemas.objects import StateType

from deployments import settings
from flows.squares import square_numbers
from stack.local import LocalStack
from stack.processes import ManagedProcess, free_port
from tests.live_stack import unique, wait_for_completed_task_runs, wait_for_final_state, wait_until

pytestmark = pytest.mark.parametrize("live_stack", ["postgres"], indirect=True)

DASK = str(Path(sys.executable).with_name("dask"))
STOP = 10_000_000
CHUNK_SIZE = 100_000
DASK_WORKERS = 2


@pytest.fixture
def dask_cluster(live_stack: LocalStack, tmp_path: Path) -> Iterator[str]:
    """A scheduler on a free loopback port and DASK_WORKERS single-process workers, with the
    stack's Prefect settings and the repository on PYTHONPATH; the scheduler's address."""
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**live_stack.env, "PYTHONPATH": str(settings.REPO_ROOT)}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    scheduler = ManagedProcess("dask-scheduler", tmp_path)
    workers = [ManagedProcess(f"dask-worker-{i}", tmp_path) for i in range(DASK_WORKERS)]
    host, port = address.removeprefix("tcp://").split(":")
    try:
        scheduler.start(
            [DASK, "scheduler", "--host", host, "--port", port, "--no-dashboard"], env, tmp_path
        )
        for worker in workers:
            argv = [DASK, "worker", address, "--nworkers", "1", "--nthreads", "2"]
            worker.start([*argv, "--no-dashboard", "--name", worker.name], env, tmp_path)
        with Client(address, timeout=60) as client:
            wait_until(
                lambda: len(client.scheduler_info()["workers"]) == DASK_WORKERS,
                90,
                f"{DASK_WORKERS} Dask workers to join the scheduler",
            )
        yield address
    finally:
        for process in [*workers, scheduler]:
            process.stop(settings.STOP_TIMEOUT_S)


def executed_per_worker(address: str) -> dict[str, int]:
    """How many tasks each Dask worker has executed so far, by worker address."""
    with Client(address, timeout=60) as client:
        return client.run(lambda dask_worker: dask_worker.state.executed_count)


def test_compute_squares_runs_its_chunks_on_the_dask_cluster(api, dask_cluster) -> None:
    deployment = api.read_deployment_by_name("compute-squares/compute-squares")
    created = api.create_flow_run_from_deployment(
        deployment.id,
        name=unique("dask"),
        parameters={"numbers": None, "start": 0, "stop": STOP, "chunk_size": CHUNK_SIZE},
        job_variables={"env": {"DASK_SCHEDULER_ADDRESS": dask_cluster}},
    )
    run = wait_for_final_state(api, created.id, timeout_s=600)
    assert run.state.type == StateType.COMPLETED, run.state.message

    chunks = STOP // CHUNK_SIZE
    task_runs = wait_for_completed_task_runs(api, run.id, chunks, timeout_s=60)
    assert {t.task_key.split("-")[0] for t in task_runs} == {"square_chunk"}
    # The chunks ran on the cluster, spread over both workers, not in the flow's own process.
    executed = executed_per_worker(dask_cluster)
    assert len(executed) == DASK_WORKERS and all(executed.values()), executed
    assert sum(executed.values()) >= chunks, executed

    squares = run.state.result()
    assert len(squares) == STOP
    assert squares == square_numbers(range(STOP))
