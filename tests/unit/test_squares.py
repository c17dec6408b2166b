from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.task_runners import ThreadPoolTaskRunner

from flows.squares import (
    PROGRESS_MIN_TASKS,
    chunk_task_runner,
    compute_squares,
    main,
    square,
    square_chunk,
    square_number,
    square_numbers,
)
from flows.squares_input import SquaresInputError
from tests.live_stack import run_artifacts, wait_until


@pytest.mark.parametrize(
    ("n", "expected"), [(0, 0), (3, 9), (-4, 16), (10**12, 10**24), (-(10**30), 10**60)]
)
def test_square_number(n: int, expected: int) -> None:
    assert square_number(n) == expected


def test_square_task_calls_the_plain_function() -> None:
    assert square.fn(7) == 49


def test_square_numbers_squares_ranges_and_lists() -> None:
    assert square_numbers(range(-2, 3)) == [4, 1, 0, 1, 4]
    assert square_chunk.fn([10**20]) == [10**40]


@pytest.mark.usefixtures("prefect_harness")
class TestComputeSquaresFlow:
    def test_tutorial_numbers(self) -> None:
        assert compute_squares([2, 4, 6]) == [4, 16, 36]

    def test_empty_list(self) -> None:
        assert compute_squares([]) == []

    def test_negative_and_large_numbers(self) -> None:
        assert compute_squares([-3, 0, 2**40]) == [9, 0, 2**80]

    def test_results_keep_input_order(self) -> None:
        numbers = list(range(40, 0, -1))
        assert compute_squares(numbers) == [n * n for n in numbers]

    def test_runs_one_task_per_number(self) -> None:
        state = compute_squares([1, 2, 3], return_state=True)
        assert state.is_completed()
        assert state.result() == [1, 4, 9]
        flow_run_id = state.state_details.flow_run_id
        with get_client(sync_client=True) as client:
            # Task runs reach the API asynchronously: poll for all three.
            task_runs = wait_until(
                lambda: _completed_runs(client, flow_run_id, "square", 3), 30, "3 square task runs"
            )
        assert len(task_runs) == 3, [run.name for run in task_runs]

    def test_publishes_table_and_summary_artifacts(self) -> None:
        state = compute_squares([2, 4, 6], return_state=True)
        with get_client(sync_client=True) as client:
            artifacts = run_artifacts(client, state.state_details.flow_run_id)
        assert set(artifacts) == {"squares-table", "squares-summary"}, "no progress bar for 3"
        table = artifacts["squares-table"]
        assert table.type == "table"
        assert json.loads(table.data) == [
            {"number": 2, "square": 4},
            {"number": 4, "square": 16},
            {"number": 6, "square": 36},
        ]
        assert "| sum | 56 |" in artifacts["squares-summary"].data

    def test_a_range_is_squared_in_chunks(self) -> None:
        assert compute_squares(start=-3, stop=4, chunk_size=2) == [9, 4, 1, 0, 1, 4, 9]

    def test_a_chunked_list_keeps_its_order(self) -> None:
        assert compute_squares([5, -1, 3], chunk_size=2) == [25, 1, 9]

    def test_a_long_range_runs_one_task_per_chunk(self) -> None:
        state = compute_squares(start=0, stop=120_000, return_state=True)
        squares = state.result()
        assert len(squares) == 120_000 and squares[-1] == 119_999**2
        with get_client(sync_client=True) as client:
            chunk_runs = wait_until(
                lambda: _completed_runs(client, state.state_details.flow_run_id, "square_chunk", 3),
                30,
                "3 square_chunk task runs (50,000 numbers each, the last 20,000)",
            )
            artifacts = run_artifacts(client, state.state_details.flow_run_id)
        assert len(chunk_runs) == 3
        assert len(json.loads(artifacts["squares-table"].data)) == 100, "the table stays bounded"
        assert "| count | 120000 |" in artifacts["squares-summary"].data

    def test_numbers_and_a_range_together_are_refused(self) -> None:
        with pytest.raises(SquaresInputError, match="not both"):
            compute_squares([1, 2], start=0, stop=3)

    def test_long_input_shows_a_finished_progress_bar(self) -> None:
        numbers = list(range(PROGRESS_MIN_TASKS))
        state = compute_squares(numbers, return_state=True)
        with get_client(sync_client=True) as client:
            artifacts = run_artifacts(client, state.state_details.flow_run_id)
        assert artifacts["progress"].data == 100.0


def _completed_runs(client, flow_run_id, task_name: str, count: int):
    """The completed runs of `task_name` in the flow run, once there are `count` of them."""
    runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )
    done = [
        r
        for r in runs
        if r.name.rsplit("-", 1)[0] == task_name and r.state and r.state.is_completed()
    ]
    return done if len(done) >= count else None


def test_command_line(capsys: pytest.CaptureFixture[str], prefect_harness: None) -> None:
    assert main(["2", "4", "6"]) == 0
    assert capsys.readouterr().out.strip().endswith("[4, 16, 36]")


def test_command_line_rejects_non_integers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["2", "four"]) == 2
    assert "integers only" in capsys.readouterr().err


def test_command_line_squares_a_range(capsys, prefect_harness: None) -> None:
    assert main(["--range", "0", "4"]) == 0
    assert capsys.readouterr().out.strip().endswith("4 squares, sum 14")


def test_command_line_names_a_bad_range(capsys, prefect_harness: None) -> None:
    assert main(["--range", "5", "1"]) == 2
    assert "`stop` (1) must not be less than `start` (5)" in capsys.readouterr().err
    assert main(["--range", "5"]) == 2
    assert "--range takes START STOP" in capsys.readouterr().err


def test_chunks_run_on_prefects_default_runner_without_a_dask_address(monkeypatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert chunk_task_runner() is None
    assert isinstance(compute_squares.task_runner, ThreadPoolTaskRunner)


def test_chunks_run_on_the_dask_cluster_named_by_the_address(monkeypatch) -> None:
    from prefect_dask import DaskTaskRunner

    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://10.0.0.5:8786")
    runner = chunk_task_runner()  # connects only when a flow run starts it
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://10.0.0.5:8786"
