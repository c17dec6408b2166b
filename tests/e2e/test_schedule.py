"""The say-hello schedule as the server holds it, and the runs its scheduler really creates."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort

from tests.live_stack import wait_until


def test_greeting_schedule_is_one_active_300_second_interval(api) -> None:
    deployment = api.read_deployment_by_name("say-hello/greeting-schedule")
    (schedule,) = deployment.schedules
    assert schedule.active
    assert schedule.slug == "every-5-minutes"
    assert schedule.schedule.interval == timedelta(seconds=300)


def test_scheduler_creates_upcoming_runs_300_seconds_apart(api) -> None:
    deployment = api.read_deployment_by_name("say-hello/greeting-schedule")

    def scheduled_runs():
        runs = api.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )
        auto = [r for r in runs if r.auto_scheduled]
        return auto if len(auto) >= 3 else None

    runs = wait_until(scheduled_runs, 90, "the scheduler to create upcoming say-hello runs")
    starts = [r.expected_start_time for r in runs]
    gaps = {(later - earlier).total_seconds() for earlier, later in pairwise(starts)}
    assert gaps == {300.0}, f"expected runs 300 s apart, got gaps of {sorted(gaps)} s"
    assert all(r.parameters == {} for r in runs), "scheduled runs use the flow's default name"
