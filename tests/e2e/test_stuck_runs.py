"""stack/stuck_runs.py, as the worker supervisor calls it, against a live server with basic auth
and CSRF protection: a run of its pool left PENDING is marked CRASHED with why once older than the
window; a younger one and a run of another pool are left alone."""

from __future__ import annotations

import pytest
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.states import Pending

from stack.stuck_runs import sweep_pool
from tests.deployed_flows import deployed_test_flow
from tests.live_stack import unique
from tests.reliability.flows import sleep_for

pytestmark = pytest.mark.parametrize("live_stack", ["postgres"], indirect=True)


def test_runs_left_pending_are_crashed_only_in_their_pool_and_only_when_old(
    api, live_stack
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
                for d in (stuck, other)
            ]
            for run in runs:
                assert api.set_flow_run_state(run.id, Pending()).state.is_pending()

            sweep = (live_stack.api_url, live_stack.auth_string, pools[0])
            assert sweep_pool(*sweep, older_than_s=3600) == []
            assert api.read_flow_run(runs[0].id).state.is_pending()

            assert sweep_pool(*sweep, older_than_s=0) == [runs[0].name]
            crashed = api.read_flow_run(runs[0].id).state
            assert crashed.is_crashed(), crashed
            assert "never started" in crashed.message
            assert api.read_flow_run(runs[1].id).state.is_pending()
            for run in runs:
                api.delete_flow_run(run.id)
    finally:
        for pool in pools:
            api.delete_work_pool(pool)
