"""A worker and its flow-run process killed with SIGKILL mid-run, so that nothing reports the run's
end: the worker supervisor finds the run's recorded process gone and marks the run CRASHED, naming
it, well within the zombie automation's window (stack/stuck_runs.py), and a new worker runs new
work normally. The run is forked from the warm launcher (stack/launch.py), as `make up`'s are; the
fault matrix (tests/faults) kills each process of the stack on its own, and partitions a worker
from its server, where the zombie automation is what ends the run."""

from __future__ import annotations

import os
import signal
import time

import pytest
from prefect.client.schemas.objects import StateType

from deployments import settings
from tests.deployed_flows import supervised_worker_pid
from tests.live_stack import run_deployment_and_wait, wait_for_final_state, wait_until
from tests.reports import report

pytestmark = pytest.mark.parametrize("live_stack", ["postgres"], indirect=True)


def test_killed_worker_and_flow_run_become_crashed(api, live_stack, slow_deployment) -> None:
    flow_run = api.create_flow_run_from_deployment(slow_deployment.id, parameters={"seconds": 600})

    def running_with_pid():
        run = api.read_flow_run(flow_run.id)
        return run if run.state.type == StateType.RUNNING and run.infrastructure_pid else None

    run = wait_until(running_with_pid, 120, "the slow run to be RUNNING")

    flow_run_pid = int(run.infrastructure_pid.rsplit(":", 1)[-1])
    worker_pid = supervised_worker_pid(live_stack)
    os.kill(worker_pid, signal.SIGKILL)
    os.kill(flow_run_pid, signal.SIGKILL)
    killed_at = time.monotonic()

    # At most the automation's window, plus the server's evaluation period and the event pipeline.
    crashed = wait_for_final_state(
        api, flow_run.id, timeout_s=settings.current().zombie_after_s + 60
    )
    detected_after_s = time.monotonic() - killed_at
    assert crashed.state.type == StateType.CRASHED, crashed.state
    assert "ended without reporting a final state" in (crashed.state.message or ""), crashed.state

    # stack/worker_supervisor.py starts a new worker (after its backoff), which runs new work.
    wait_until(
        lambda: supervised_worker_pid(live_stack) not in (None, worker_pid),
        60,
        "the supervisor's new worker",
    )
    after = run_deployment_and_wait(api, "compute-squares/compute-squares", {"numbers": [3]})
    assert after.state.type == StateType.COMPLETED, after.state.message
    report(
        "dead-run-detection",
        {"crashed_after_s": round(detected_after_s), "window_s": settings.current().zombie_after_s},
    )
