"""stack/worker_supervisor.py acts on the worker's health endpoint: a worker that hangs
(SIGSTOP: alive, but its poll loop and endpoint answer nothing) is kept while its flow run still
runs (a restart would end it), then replaced, and the pool's work goes on without anyone stepping
in. A worker that cannot poll because its server hangs is not to blame: it is kept, and resumes
when the server does."""

from __future__ import annotations

import os
import signal
import time

import pytest
from prefect.client.schemas.objects import StateType

from deployments import settings
from stack import worker_supervisor
from stack.processes import process_state
from tests.deployed_flows import supervised_worker_pid
from tests.live_stack import run_deployment_and_wait, wait_for_final_state, wait_until
from tests.reports import report

pytestmark = pytest.mark.parametrize("live_stack", ["postgres"], indirect=True)

# Prefect reports a worker unhealthy once it has not polled for 30 poll intervals.
WORKER_UNHEALTHY_AFTER_S = 30 * settings.current().worker_query_seconds


def test_a_hung_worker_is_replaced_once_its_runs_end(api, live_stack, slow_deployment) -> None:
    # Long enough to outlast the worker's unhealthy window (30 polls) and the supervisor's.
    run_s = WORKER_UNHEALTHY_AFTER_S + worker_supervisor.UNHEALTHY_AFTER_S + 50
    flow_run = api.create_flow_run_from_deployment(
        slow_deployment.id, parameters={"seconds": run_s}
    )
    wait_until(
        lambda: api.read_flow_run(flow_run.id).state.type == StateType.RUNNING,
        120,
        "the slow run to be RUNNING",
    )
    hung = supervised_worker_pid(live_stack)
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)
    hung_at = time.monotonic()
    try:
        # A restart would end the run, so the supervisor keeps the worker while the run lasts...
        wait_until(
            lambda: "still run: keeping the worker" in live_stack.worker.log_tail(200),
            WORKER_UNHEALTHY_AFTER_S + worker_supervisor.UNHEALTHY_AFTER_S + 40,
            "the supervisor to keep the hung worker for its flow run",
        )
        assert supervised_worker_pid(live_stack) == hung
        assert api.read_flow_run(flow_run.id).state.type == StateType.RUNNING
        finished = wait_for_final_state(api, flow_run.id, timeout_s=run_s + 60)
        # ...and replaces it once the run has ended.
        replaced = wait_until(
            lambda: supervised_worker_pid(live_stack) not in (None, hung),
            60,
            "the supervisor to replace the hung worker",
        )
        replaced_after_s = time.monotonic() - hung_at
    finally:
        if process_state(hung) is not None:  # not replaced: let the test's cleanup stop it
            os.kill(hung, signal.SIGCONT)
    assert finished.state.type == StateType.COMPLETED, finished.state.message
    assert replaced
    assert "unhealthy" in live_stack.worker.log_tail(200)
    after = run_deployment_and_wait(api, "compute-squares/compute-squares", {"numbers": [5]})
    assert after.state.type == StateType.COMPLETED, after.state.message
    report("hung-worker", {"replaced_after_s": round(replaced_after_s)})


def test_a_worker_is_kept_while_its_server_hangs(api, live_stack) -> None:
    worker = supervised_worker_pid(live_stack)
    server = live_stack.server.pid
    assert worker is not None and server is not None
    # The worker turns unhealthy 30 poll intervals after its last poll, the supervisor acts
    # UNHEALTHY_AFTER_S later and then waits for the server's readiness probe to time out.
    deadline_s = (
        WORKER_UNHEALTHY_AFTER_S
        + worker_supervisor.UNHEALTHY_AFTER_S
        + worker_supervisor.SERVER_READY_TIMEOUT_S
    ) + 45
    os.kill(server, signal.SIGSTOP)
    hung_at = time.monotonic()
    try:
        wait_until(
            lambda: "is not ready either: keeping the worker" in live_stack.worker.log_tail(400),
            deadline_s,
            "the supervisor to see the hung server and keep the worker",
        )
        kept_after_s = time.monotonic() - hung_at
    finally:
        os.kill(server, signal.SIGCONT)
    assert supervised_worker_pid(live_stack) == worker
    after = run_deployment_and_wait(api, "compute-squares/compute-squares", {"numbers": [6]})
    assert after.state.type == StateType.COMPLETED, after.state.message
    assert supervised_worker_pid(live_stack) == worker, live_stack.worker.log_tail(30)
    report("hung-server", {"worker_kept_after_s": round(kept_after_s)})
