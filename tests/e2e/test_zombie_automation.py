"""The zombie automation prefect.yaml declares, on a live stack: applied once however often
`make up` applies it, and armed by the heartbeats the stack's flow runs really send, with room for
late beats. What it does when a run's heartbeats stop: the fault matrix's partition cell
(tests/faults/test_partition_faults.py) and the Docker pool's tests; a run whose process dies on
a supervised worker's machine is crashed sooner by the supervisor (test_crash_recovery.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType

from deployments import settings
from tests.deployed_flows import flow_run_heartbeats, supervised_worker_pid
from tests.live_stack import run_deployment_and_wait, wait_until

pytestmark = pytest.mark.parametrize("live_stack", ["sqlite"], indirect=True)

ZOMBIE_AUTOMATION_NAME = "crash-zombie-flow-runs"  # prefect.yaml's `automations`
# A flow-run process sends a heartbeat event this often (stack/flow_run.py).
HEARTBEAT_ENV = settings.HEARTBEAT_ENV


def _environment(pid: int) -> dict[str, str]:
    """The environment the process `pid` was started with."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def test_the_zombie_automation_is_applied_once(api, live_stack) -> None:
    live_stack.apply()  # a second apply, as a second `make up` does
    (automation,) = api.read_automations_by_name(ZOMBIE_AUTOMATION_NAME)
    assert automation.enabled
    assert automation.trigger.within.total_seconds() == settings.current().zombie_after_s


def test_flow_runs_beat_at_least_three_times_within_the_automation_window(api, live_stack) -> None:
    """A flow-run process inherits the environment of the worker that starts it, so the worker's
    heartbeat setting is the rate its runs beat at. The automation fires when a window passes
    without a beat: the window must hold three beats, so that one late beat is not a crash, and
    the runs must beat at all, or every run would be crashed."""
    worker = supervised_worker_pid(live_stack)
    assert worker is not None, live_stack.worker.log_tail(30)
    environment = _environment(worker)
    assert HEARTBEAT_ENV in environment, "the worker's flow runs send no heartbeat"
    (automation,) = api.read_automations_by_name(ZOMBIE_AUTOMATION_NAME)
    window_s = automation.trigger.within.total_seconds()
    assert window_s >= 3 * float(environment[HEARTBEAT_ENV]), (window_s, environment[HEARTBEAT_ENV])

    run = run_deployment_and_wait(api, "compute-squares/compute-squares", {"numbers": [7]})
    assert run.state.type == StateType.COMPLETED, run.state.message
    wait_until(lambda: flow_run_heartbeats(api, run.id), 30, f"a heartbeat event of run {run.id}")
