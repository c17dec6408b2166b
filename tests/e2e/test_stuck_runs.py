"""stack/stuck_runs.py, as the worker supervisor calls it, against a live server with basic auth
and CSRF protection: a run of its pool left PENDING is marked CRASHED with why once older than the
window; a younger one, one whose recorded process runs and a run of another pool are left alone.
A RUNNING run whose recorded flow-run process is gone is marked CRASHED, one whose process lives
is not, and records of another server are not touched; a run's process records itself while it
runs (where the worker supervisor says) and removes the record when it ends."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.states import Completed, Pending, Running

from stack.stuck_runs import record_process, sweep_pool, sweep_processes
from tests.deployed_flows import deployed_test_flow
from tests.live_stack import unique, wait_for_final_state, wait_until
from tests.reliability.flows import sleep_for

pytestmark = pytest.mark.parametrize("live_stack", ["postgres"], indirect=True)


def test_runs_left_pending_are_crashed_only_in_their_pool_only_when_old_and_never_started(
    api, live_stack, tmp_path
) -> None:
    # Pools no worker polls: nothing else moves these runs.
    pools = [unique("stuck"), unique("other")]
    for pool in pools:
        api.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    try:
        with (
            deployed_test_flow(api, pools[0], sleep_for, "sleep-for/stuck") as stuck,
            deployed_test_flow(api, pools[1], sleep_for, "sleep-for/other") as other,
        ):
            runs = [
                api.create_flow_run_from_deployment(d.id, parameters={"seconds": 1})
                for d in (stuck, other, stuck)
            ]
            for run in runs:
                assert api.set_flow_run_state(run.id, Pending()).state.is_pending()
            # The third run's process started (this one), and waits for its server.
            records = tmp_path / "flow-run-processes"
            record_process(records, str(runs[2].id), live_stack.api_url)

            sweep = (live_stack.api_url, live_stack.auth_string, pools[0])
            assert sweep_pool(*sweep, older_than_s=3600, processes_dir=records) == []
            assert api.read_flow_run(runs[0].id).state.is_pending()

            assert sweep_pool(*sweep, older_than_s=0, processes_dir=records) == [runs[0].name]
            crashed = api.read_flow_run(runs[0].id).state
            assert crashed.is_crashed(), crashed
            assert "never started" in crashed.message
            assert api.read_flow_run(runs[1].id).state.is_pending()
            assert api.read_flow_run(runs[2].id).state.is_pending()
            for run in runs:
                api.delete_flow_run(run.id)
    finally:
        for pool in pools:
            api.delete_work_pool(pool)


def record_in_a_process_that_ends(directory, run_id, api_url) -> None:
    """A record left behind: written by a process that then exits without removing it."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from stack.stuck_runs import record_process; "
            "record_process(Path(sys.argv[1]), sys.argv[2], sys.argv[3])",
            str(directory),
            str(run_id),
            api_url,
        ],
        check=True,
    )


def test_running_runs_whose_recorded_process_is_gone_are_crashed(api, live_stack, tmp_path) -> None:
    pool = unique("gone")
    api.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    records = tmp_path / "flow-run-processes"
    try:
        with deployed_test_flow(api, pool, sleep_for, "sleep-for/gone") as deployment:
            dead, alive, finished, elsewhere = [
                api.create_flow_run_from_deployment(deployment.id, parameters={"seconds": 1})
                for _ in range(4)
            ]
            for run in (dead, alive, finished, elsewhere):
                assert api.set_flow_run_state(run.id, Pending()).state.is_pending()
                assert api.set_flow_run_state(run.id, Running()).state.is_running()
            assert api.set_flow_run_state(finished.id, Completed()).state.is_completed()
            record_in_a_process_that_ends(records, dead.id, live_stack.api_url)
            record_in_a_process_that_ends(records, finished.id, live_stack.api_url)
            record_in_a_process_that_ends(records, elsewhere.id, "http://127.0.0.1:1/api")
            own = record_process(records, str(alive.id), live_stack.api_url)

            swept = sweep_processes(live_stack.api_url, live_stack.auth_string, records)

            assert swept == [dead.name]
            crashed = api.read_flow_run(dead.id).state
            assert crashed.is_crashed(), crashed
            assert "ended without reporting a final state" in crashed.message
            assert api.read_flow_run(alive.id).state.is_running()
            assert api.read_flow_run(finished.id).state.is_completed()
            assert api.read_flow_run(elsewhere.id).state.is_running()
            # Records of ended processes this server answered for are forgotten; the live
            # process's and the other server's stay.
            left = sorted(path.name.split(".")[0] for path in records.iterdir())
            assert left == sorted([str(alive.id), str(elsewhere.id)])
            assert own.exists()
            assert sweep_processes(live_stack.api_url, live_stack.auth_string, records) == []
            for run in (dead, alive, finished, elsewhere):
                api.delete_flow_run(run.id)
    finally:
        api.delete_work_pool(pool)


def test_a_flow_run_process_is_recorded_while_it_runs_and_forgotten_when_it_ends(
    api, live_stack, slow_deployment
) -> None:
    records = live_stack.state_dir / "home" / "flow-run-processes"
    run = api.create_flow_run_from_deployment(slow_deployment.id, parameters={"seconds": 5})

    def its_records():
        return [path for path in records.glob(f"{run.id}.*") if path.name[-1].isdigit()]

    (record,) = wait_until(its_records, 120, "the run's process to record itself")
    pid = int(record.name.rsplit(".", 1)[1])
    assert psutil.Process(pid).is_running()
    assert api.read_flow_run(run.id).state.type.value in ("PENDING", "RUNNING")
    final = wait_for_final_state(api, run.id, timeout_s=120)
    assert final.state.is_completed(), final.state
    wait_until(lambda: not its_records(), 30, "the record to be removed")
