"""stack/stuck_runs.py, as the worker supervisor calls it, against a live server with basic auth
and CSRF protection: runs of its pool left PENDING, or RUNNING while their process on this machine
is gone, are marked CRASHED with why once older than the window; a younger one, a live process, a
process on another machine and a run of another pool are left alone."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.states import Pending, Running

from stack.stuck_runs import sweep_pool
from tests.deployed_flows import deployed_test_flow
from tests.live_stack import unique
from tests.reliability.flows import sleep_for

pytestmark = pytest.mark.parametrize("live_stack", ["postgres"], indirect=True)


def _gone_pid() -> int:
    ended = subprocess.Popen(["true"])
    ended.wait()
    return ended.pid


def test_runs_nothing_will_end_are_crashed_only_in_their_pool_and_only_when_old(
    api, live_stack
) -> None:
    # Pools no worker polls: nothing else moves these runs.
    pools = [unique("stuck"), unique("other")]
    for pool in pools:
        api.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    host = socket.gethostname()
    try:
        with (
            deployed_test_flow(api, pools[0], sleep_for, "sleep-for/stuck") as stuck,
            deployed_test_flow(api, pools[1], sleep_for, "sleep-for/other") as other,
        ):

            def new_run(deployment, *states, pid: str | None = None):
                run = api.create_flow_run_from_deployment(deployment.id, parameters={"seconds": 1})
                for state in states:
                    assert api.set_flow_run_state(run.id, state).status.value == "ACCEPT"
                if pid:
                    api.update_flow_run(run.id, infrastructure_pid=pid)
                return run

            pending = new_run(stuck, Pending())
            gone = new_run(stuck, Pending(), Running(), pid=f"{host}:{_gone_pid()}")
            alive = new_run(stuck, Pending(), Running(), pid=f"{host}:{os.getpid()}")
            elsewhere = new_run(stuck, Pending(), Running(), pid=f"other-host:{_gone_pid()}")
            other_pool = new_run(other, Pending())

            sweep = (live_stack.api_url, live_stack.auth_string, pools[0])
            assert sweep_pool(*sweep, older_than_s=3600) == []
            assert sorted(sweep_pool(*sweep, older_than_s=0)) == sorted([pending.name, gone.name])

            messages = {
                run.name: api.read_flow_run(run.id).state
                for run in (pending, gone, alive, elsewhere, other_pool)
            }
            assert messages[pending.name].is_crashed()
            assert "never started" in messages[pending.name].message
            assert messages[gone.name].is_crashed()
            assert "is gone" in messages[gone.name].message
            assert messages[alive.name].is_running()
            assert messages[elsewhere.name].is_running()
            assert messages[other_pool.name].is_pending()
            for run in (pending, gone, alive, elsewhere, other_pool):
                api.delete_flow_run(run.id)
    finally:
        for pool in pools:
            api.delete_work_pool(pool)
