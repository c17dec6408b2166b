"""Runs through the real worker: the results, task runs and logs the server records."""

from __future__ import annotations

import json

from prefect.client.schemas.filters import (
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType

from stack.local import PREFECT
from tests.live_stack import (
    run_artifacts,
    run_deployment_and_wait,
    unique,
    wait_for_completed_task_runs,
    wait_for_final_state,
    wait_until,
)


def test_compute_squares_completes_with_the_squares(api) -> None:
    run = run_deployment_and_wait(api, "compute-squares/compute-squares", {"numbers": [2, 4, 6]})
    assert run.state.type == StateType.COMPLETED, run.state.message
    assert run.state.result() == [4, 16, 36]

    task_runs = wait_for_completed_task_runs(api, run.id, 3, timeout_s=30)
    assert sorted(t.task_key.split("-")[0] for t in task_runs) == ["square"] * 3


def test_compute_squares_publishes_its_artifacts(api) -> None:
    numbers = list(range(-30, 30))  # long enough for a progress bar
    run = run_deployment_and_wait(api, "compute-squares/compute-squares", {"numbers": numbers})
    assert run.state.type == StateType.COMPLETED, run.state.message
    artifacts = run_artifacts(api, run.id)
    assert set(artifacts) == {"squares-table", "squares-summary", "progress"}
    table = json.loads(artifacts["squares-table"].data)
    assert table[0] == {"number": -30, "square": 900}
    assert len(table) == len(numbers)
    assert f"| sum | {sum(n * n for n in numbers)} |" in artifacts["squares-summary"].data
    assert artifacts["progress"].data == 100.0


def test_compute_squares_runs_with_its_default_numbers(api) -> None:
    run = run_deployment_and_wait(api, "compute-squares/compute-squares")
    assert run.state.type == StateType.COMPLETED, run.state.message
    assert run.parameters == {"numbers": [2, 4, 6]}
    assert run.state.result() == [4, 16, 36]


def test_say_hello_logs_the_greeting_to_the_server(api) -> None:
    name = unique("Zaphod")
    run = run_deployment_and_wait(api, "say-hello/greeting-schedule", {"name": name})
    assert run.state.type == StateType.COMPLETED, run.state.message

    def greeting_logged():
        logs = api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        return [log for log in logs if log.message == f"Hello, {name}!"]

    (log,) = wait_until(greeting_logged, 30, "the greeting log line")  # logs ship in batches
    assert log.task_run_id is not None, "logged by the greet task, so it shows under it"
    assert f"Hello, {name}!" in run_artifacts(api, run.id)["greeting"].data


def test_a_run_triggered_from_the_cli_completes(live_stack, api) -> None:
    name = unique("Cli")
    live_stack.run_cli(
        PREFECT,
        "deployment",
        "run",
        "say-hello/greeting-schedule",
        "--param",
        f"name={name}",
    )
    deployment = api.read_deployment_by_name("say-hello/greeting-schedule")

    def the_cli_run():
        runs = api.read_flow_runs(limit=200)
        return [
            r for r in runs if r.deployment_id == deployment.id and r.parameters == {"name": name}
        ]

    (created,) = wait_until(the_cli_run, 30, "the flow run the CLI created")
    run = wait_for_final_state(api, created.id)
    assert run.state.type == StateType.COMPLETED, run.state.message
    assert run.state.result() == f"Hello, {name}!"
