from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings

from flows import greetings
from flows.greetings import greet, greeting, main, say_hello
from tests.live_stack import run_artifacts


def test_greeting_text() -> None:
    assert greeting("Marvin") == "Hello, Marvin!"


@pytest.mark.usefixtures("prefect_harness")
class TestSayHelloFlow:
    def test_default_name(self) -> None:
        assert say_hello() == "Hello, Prefect!"

    def test_logs_the_greeting_through_the_run_logger(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO):
            assert say_hello("Arthur") == "Hello, Arthur!"
        greet_records = [r for r in caplog.records if r.getMessage() == "Hello, Arthur!"]
        assert greet_records, "the greeting was not logged"
        # Logged by the task's run logger, so it is attached to the task run in the UI.
        assert greet_records[0].name == "prefect.task_runs"

    def test_publishes_the_greeting_as_an_artifact(self) -> None:
        state = say_hello("Zaphod", return_state=True)
        with get_client(sync_client=True) as client:
            artifacts = run_artifacts(client, state.state_details.flow_run_id)
        assert artifacts["greeting"].type == "markdown"
        assert "Hello, Zaphod!" in artifacts["greeting"].data


@pytest.fixture
def task_outside_a_flow(prefect_harness) -> Iterator[None]:
    """The task called on its own: its run logger has no flow run to send its lines to."""
    with temporary_settings({PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
        yield


@pytest.mark.usefixtures("task_outside_a_flow")
def test_greet_task_returns_and_logs_what_the_plain_function_says(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(greetings, "greeting", lambda name: f"Good morning, {name}.")
    with caplog.at_level(logging.INFO):
        assert greet("Ford") == "Good morning, Ford."
    logged = [r.name for r in caplog.records if r.getMessage() == "Good morning, Ford."]
    assert logged == ["prefect.task_runs"]


@pytest.mark.usefixtures("task_outside_a_flow")
def test_greet_task_tries_three_times_then_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two retries: a greeting that fails twice is still returned, one that keeps failing fails
    the task run after its third try."""
    calls: list[str] = []

    def failing(times: int):
        def greeting(name: str) -> str:
            calls.append(name)
            if len(calls) <= times:
                raise ConnectionError(f"try {len(calls)} failed")
            return f"Hello, {name}!"

        return greeting

    monkeypatch.setattr(greetings, "greeting", failing(2))
    assert greet("Trillian") == "Hello, Trillian!"
    assert calls == ["Trillian"] * 3

    calls.clear()
    monkeypatch.setattr(greetings, "greeting", failing(3))
    state = greet("Marvin", return_state=True)
    assert state.is_failed(), state
    assert calls == ["Marvin"] * 3


def test_command_line_rejects_extra_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["a", "b"]) == 2
    assert "usage" in capsys.readouterr().err
