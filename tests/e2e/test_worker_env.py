"""A worker started without FLOW_CODE_DIR fails the run with a message that names it."""

from __future__ import annotations

import pytest

from deployments import settings
from tests.live_stack import new_stack, run_deployment_and_wait, stack_client, wait_until

pytestmark = pytest.mark.e2e

HINT = f"set {settings.FLOW_CODE_DIR_ENV} in the worker environment"


def test_missing_flow_code_dir_is_named_in_the_failed_run(tmp_path_factory) -> None:
    stack = new_stack(tmp_path_factory, "no-code-dir")
    stack.flow_code_dir = None
    try:
        stack.up()
        assert settings.FLOW_CODE_DIR_ENV not in stack.worker_env
        with stack_client(stack) as client:
            run = run_deployment_and_wait(client, "say-hello/greeting-schedule", {"name": "x"})
            assert run.state.is_crashed(), run.state
            # The pull step fails before the flow's logger starts, so the explanation lands in
            # the worker's log (the flow-run process's stderr), where its operator looks.
            wait_until(
                lambda: HINT in stack.worker.log_path.read_text(errors="replace"),
                30,
                "the FLOW_CODE_DIR hint in the worker's log",
            )
    finally:
        stack.down()
