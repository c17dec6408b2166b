"""`kill -9` of `make up`'s worker supervisor, with a run in flight: what it leaves running is
named by `make status` as orphaned and stopped by the next `make up` or by `make down`."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from deployments import settings
from stack.local import LocalStack
from stack.processes import ManagedProcess
from tests.live_stack import run_deployment_and_wait, stack_client, wait_until
from tests.make_targets import make, make_env


@pytest.fixture
def user_env(tmp_path_factory) -> dict[str, str]:
    return make_env(tmp_path_factory)


def _stack_client(user_env: dict[str, str]):
    return stack_client(
        LocalStack(
            state_dir=Path(user_env["LOCAL_STATE_DIR"]),
            port=int(user_env["PREFECT_SERVER_API_PORT"]),
            pool_name=user_env[settings.POOL_NAME_ENV],
        )
    )


def _kill_supervisor(worker: ManagedProcess) -> list[psutil.Process]:
    """SIGKILL the worker supervisor alone; what it had started, which now runs on."""
    supervisor = psutil.Process(worker.pid)
    left = supervisor.children(recursive=True)
    supervisor.kill()
    supervisor.wait(10)
    return left


def test_a_killed_supervisor_is_orphaned_replaced_by_up_and_stopped_by_down(user_env) -> None:
    """`kill -9` of the worker supervisor, with a run in flight, leaves its worker, launcher and
    the run running: `make status` names them orphaned; the next `make up` stops them and comes
    up with a worker of its own that runs a flow; after another `kill -9`, `make down` stops
    everything."""
    state_dir = Path(user_env["LOCAL_STATE_DIR"])
    worker = ManagedProcess("worker", state_dir)
    try:
        first = make("up", user_env)
        assert first.returncode == 0, first.stdout + first.stderr
        with _stack_client(user_env) as api:
            deployment = api.read_deployment_by_name("compute-squares/compute-squares")
            run = api.create_flow_run_from_deployment(
                deployment.id,
                parameters={"numbers": None, "start": 0, "stop": 50_000_000, "chunk_size": 10_000},
            )
            wait_until(
                lambda: api.read_flow_run(run.id).state.is_running(), 120, "the run to start"
            )
        left = _kill_supervisor(worker)
        assert len(left) >= 3, f"worker, launcher and the run's processes: {left}"

        status = make("status", user_env)
        assert "worker: ORPHANED" in status.stdout, status.stdout
        again = make("up", user_env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert not [p for p in left if p.is_running()], "make up kept the orphans"
        with _stack_client(user_env) as api:
            finished = run_deployment_and_wait(
                api, "say-hello/greeting-schedule", {"name": "after the crash"}
            )
        assert finished.state.is_completed(), finished.state

        left = _kill_supervisor(worker)
        down = make("down", user_env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not [p for p in left if p.is_running()], "make down left the orphans running"
        assert not worker.leftovers()
    finally:
        make("down", user_env)
