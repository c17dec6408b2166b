from __future__ import annotations

import logging

import pytest
from prefect.client.orchestration import get_client

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


def test_greet_task_wraps_the_plain_function() -> None:
    assert greet.name == "greet"
    assert greet.fn.__doc__ and "greeting" in greet.fn.__doc__


def test_command_line_rejects_extra_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["a", "b"]) == 2
    assert "usage" in capsys.readouterr().err
