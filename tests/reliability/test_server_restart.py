"""The PostgreSQL server stopped and restarted while one run is RUNNING and others fall due:
deployments, schedules and history survive, every run executes exactly once, and the worker
rides out the outage and resumes on its own (the same process, not restarted)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import StateType
from prefect.states import Scheduled

from deployments import settings
from tests.live_stack import wait_for_final_state, wait_until
from tests.reliability.conftest import read_markers, running_workers
from tests.reports import report

# Runs that fall due while the server is down: they must run once it is back. They fall due
# past the worker's prefetch window: a run the worker prefetched before the outage is already in
# its process, waiting for its start time, and crashes when it cannot reach the server (that
# failed CI once). DUE_AFTER_S is well inside the outage.
DUE_DURING_OUTAGE = 3
DUE_AFTER_S = settings.current().worker_prefetch_seconds + 10
OUTAGE_S = DUE_AFTER_S + 10
# Still running when the server comes back (a restart on PostgreSQL takes about 10 s).
LONG_RUN_S = OUTAGE_S + 25


def _deployments_and_schedules(api) -> dict:
    return {
        d.name: (d.id, sorted((s.id, s.slug) for s in d.schedules)) for d in api.read_deployments()
    }


def _greeting_run_times(api) -> list:
    """The expected start times of say-hello's scheduled runs: a duplicate would repeat one."""
    deployment = api.read_deployment_by_name("say-hello/greeting-schedule")
    runs = api.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    )
    return [run.expected_start_time for run in runs]


def test_server_restart_loses_and_duplicates_nothing(
    postgres_stack, postgres_api, marker_deployment, tmp_path
) -> None:
    api, markers = postgres_api, tmp_path / "markers"
    markers.mkdir()
    marker_parameters = {"directory": str(markers)}
    with running_workers(postgres_stack, api, 1) as (worker,):
        worker_pid = worker.pid
        history = api.create_flow_run_from_deployment(
            marker_deployment.id, parameters=marker_parameters
        )
        assert wait_for_final_state(api, history.id).state.type == StateType.COMPLETED
        before = _deployments_and_schedules(api)

        long_run = api.create_flow_run_from_deployment(
            marker_deployment.id, parameters={**marker_parameters, "seconds": LONG_RUN_S}
        )
        wait_until(
            lambda: api.read_flow_run(long_run.id).state.type == StateType.RUNNING,
            120,
            "the long run to be RUNNING",
        )
        due_at = datetime.now(UTC) + timedelta(seconds=DUE_AFTER_S)
        due = [
            api.create_flow_run_from_deployment(
                marker_deployment.id,
                parameters=marker_parameters,
                state=Scheduled(scheduled_time=due_at),
            )
            for _ in range(DUE_DURING_OUTAGE)
        ]

        postgres_stack.server.stop(settings.STOP_TIMEOUT_S)
        assert not postgres_stack.server_ready()
        outage_ends = datetime.now(UTC) + timedelta(seconds=OUTAGE_S)
        # The outage lasts OUTAGE_S, past the time the due runs were scheduled for.
        wait_until(lambda: datetime.now(UTC) >= outage_ends, OUTAGE_S + 5, "the outage to last")
        postgres_stack.start_server()
        back_at = time.monotonic()

        assert _deployments_and_schedules(api) == before
        assert api.read_flow_run(history.id).state.type == StateType.COMPLETED
        finished = [wait_for_final_state(api, run.id) for run in (long_run, *due)]
        assert [run.state.type for run in finished] == [StateType.COMPLETED] * len(finished), [
            run.state.message for run in finished
        ]
        assert worker.pid == worker_pid, "the worker exited during the outage"
        report(
            "server-restart",
            {
                "outage_s": OUTAGE_S,
                "all_runs_done_after_restart_s": round(time.monotonic() - back_at),
                "runs_due_during_outage": DUE_DURING_OUTAGE,
            },
        )

    executions = read_markers(markers)
    expected = {str(run.id) for run in (history, long_run, *due)}
    assert set(executions) == expected
    assert all(len(workers) == 1 for workers in executions.values()), executions
    greeting_times = _greeting_run_times(api)
    assert len(greeting_times) == len(set(greeting_times)), "a scheduled run was duplicated"
