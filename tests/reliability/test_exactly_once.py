"""Several workers on one pool of the PostgreSQL stack, many runs triggered at once: every run
executes exactly once (each execution leaves a marker file), the work is spread across the
workers, and no log shows a locked database or an exhausted connection pool.

`make reliability` (which CI runs too) sends 50 runs through 3 workers, `make soak` 300 through
2. SOAK_RUNS and SOAK_WORKERS set the size (12 through 2 when run alone); the report goes
to results/exactly-once-<runs>-runs.json."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from deployments import settings
from stack.processes import poll_until
from tests.deployed_flows import automation_firings, deployed_test_flow
from tests.live_stack import wait_for_final_state, wait_until
from tests.reliability.conftest import read_markers, running_workers
from tests.reliability.flows import pause_then_finish
from tests.reports import report as report_figures

ZOMBIE_AUTOMATION = "crash-zombie-flow-runs"  # prefect.yaml's `automations`
RUNS = settings.current().soak_runs
WORKERS = settings.current().soak_workers
# Generous: on 2 cores a run costs about 2-3 s of CPU, whatever the number of workers.
DEADLINE_S = 120 + 5 * RUNS
LOG_ERRORS = re.compile(
    r"database is locked|QueuePool limit|too many clients|TooManyConnections"
    r"|ConnectionDoesNotExistError|connection was closed in the middle",
    re.IGNORECASE,
)


# The API returns at most 200 flow runs per call.
PAGE = 200


def _read_runs(api, ids: list) -> list:
    only_these = FlowRunFilter(id=FlowRunFilterId(any_=ids))
    runs: list = []
    while page := api.read_flow_runs(flow_run_filter=only_these, limit=PAGE, offset=len(runs)):
        runs += page
    return runs


def _until_all_final_or_deadline(api, ids: list) -> list:
    """The runs once all are final, or as they are at the deadline (the stuck ones counted)."""
    runs: list = []

    def all_final() -> bool:
        runs[:] = _read_runs(api, ids)
        return all(run.state.is_final() for run in runs)

    poll_until(all_final, DEADLINE_S, interval_s=1)
    return runs


def _trigger(api, marker_deployment, markers) -> list:
    """RUNS runs of the marker flow at once, each leaving its marker in `markers`; their ids."""
    return [
        api.create_flow_run_from_deployment(
            marker_deployment.id, parameters={"directory": str(markers)}
        ).id
        for _ in range(RUNS)
    ]


def test_every_run_executes_exactly_once_and_the_zombie_rule_acts_on_none(
    postgres_stack, postgres_api, postgres_cluster, marker_deployment, tmp_path
) -> None:
    """RUNS runs at once across WORKERS workers, each executed exactly once. Then, over the whole
    zombie window, the zombie automation acts on none of them (the server may receive a short
    run's last heartbeat after its final state; stack/flow_run.py orders a run's heartbeats and
    its exit), nor on a run paused in its process meanwhile, which then resumes and completes."""
    markers = tmp_path / "markers"
    markers.mkdir()
    pause = f"{pause_then_finish.name}/{uuid.uuid4().hex[:8]}"
    with (
        running_workers(postgres_stack, postgres_api, WORKERS) as workers,
        deployed_test_flow(postgres_api, postgres_stack.pool_name, pause_then_finish, pause) as d,
    ):
        started = time.monotonic()
        ids = _trigger(postgres_api, marker_deployment, markers)
        runs = _until_all_final_or_deadline(postgres_api, ids)
        elapsed_s = time.monotonic() - started
        paused = postgres_api.create_flow_run_from_deployment(d.id)
        wait_until(lambda: postgres_api.read_flow_run(paused.id).state.is_paused(), 120, "pause")
        ours = {f"prefect.flow-run.{run_id}" for run_id in [*ids, paused.id]}

        def zombie_firings() -> list[str]:
            return [f for f in automation_firings(postgres_api, ZOMBIE_AUTOMATION) if f in ours]

        # The window since the last run ended, and the server's 5 s evaluation period: it
        # would have acted by now.
        window_s = settings.current().zombie_after_s
        fired = poll_until(zombie_firings, window_s + 30, interval_s=5)
        still_paused = postgres_api.read_flow_run(paused.id).state.is_paused()
        postgres_api.resume_flow_run(paused.id)
        resumed = wait_for_final_state(postgres_api, paused.id)
        logs = [postgres_stack.server.log_path, postgres_cluster.log_path]
        logs += [worker.log_path for worker in workers]

    executions = read_markers(markers)
    states = Counter(run.state.type.value for run in runs)
    log_errors = [
        f"{path.name}: {line.strip()}"
        for path in logs
        for line in path.read_text(errors="replace").splitlines()
        if LOG_ERRORS.search(line)
    ]
    report = {
        "runs": RUNS,
        "workers": WORKERS,
        "backend": "postgresql",
        "states": dict(states),
        "lost": sum(str(run_id) not in executions for run_id in ids),
        "duplicated": sum(len(executions.get(str(run_id), [])) > 1 for run_id in ids),
        "stuck": sum(not run.state.is_final() for run in runs),
        "log_errors": len(log_errors),
        "runs_per_worker": dict(Counter(w for ws in executions.values() for w in ws)),
        "elapsed_s": round(elapsed_s, 1),
        "zombie_actions_on_ended_or_paused_runs": len(fired),
    }
    report_figures(f"exactly-once-{RUNS}-runs", report)

    assert (report["lost"], report["duplicated"], report["stuck"]) == (0, 0, 0), report
    assert states == {"COMPLETED": RUNS}, report
    assert set(executions) == {str(run_id) for run_id in ids}  # nothing else ran
    assert set(report["runs_per_worker"]) == {w.name for w in workers}, "not spread: " + str(
        report["runs_per_worker"]
    )
    assert not log_errors, "\n".join(log_errors[:20])
    assert not fired, fired
    assert still_paused and resumed.state.is_completed(), resumed.state
