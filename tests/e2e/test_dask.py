"""compute_squares on a real Dask cluster: a `dask scheduler` and two `dask worker` processes
(stack/dask_cluster.py), and a deployment run of compute-squares whose job-variable env names the
scheduler (DASK_SCHEDULER_ADDRESS). The workers import the repository from PYTHONPATH, as the
README tells users to run them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType

from deployments import settings
from flows.squares import square_numbers
from stack.dask_cluster import executed_per_worker, local_dask_cluster
from stack.local import LocalStack
from tests.live_stack import unique, wait_for_completed_task_runs, wait_for_final_state

pytestmark = pytest.mark.parametrize("live_stack", ["postgres"], indirect=True)

STOP = 10_000_000
CHUNK_SIZE = 100_000
DASK_WORKERS = 2


@pytest.fixture
def dask_cluster(live_stack: LocalStack, tmp_path: Path) -> Iterator[str]:
    with local_dask_cluster(live_stack.env, tmp_path, workers=DASK_WORKERS) as address:
        yield address


def test_compute_squares_runs_its_chunks_on_the_dask_cluster(api, dask_cluster) -> None:
    deployment = api.read_deployment_by_name("compute-squares/compute-squares")
    created = api.create_flow_run_from_deployment(
        deployment.id,
        name=unique("dask"),
        parameters={"numbers": None, "start": 0, "stop": STOP, "chunk_size": CHUNK_SIZE},
        job_variables={"env": {settings.DASK_SCHEDULER_ADDRESS_ENV: dask_cluster}},
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
