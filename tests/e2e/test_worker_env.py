"""A plain `prefect worker start`, as Prefect's docs start one: from a clone's root with its venv
active and no extra variable, it runs the deployments; started anywhere else without
FLOW_CODE_DIR, the failed run's log names the fix."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments import settings
from stack.local import LocalStack
from stack.processes import ManagedProcess
from tests.live_stack import (
    new_stack,
    run_deployment_and_wait,
    stack_client,
    unique,
    wait_until,
)

HINT = "start the worker from the repository root, or set FLOW_CODE_DIR"


@pytest.fixture(scope="module")
def stack_without_worker(tmp_path_factory) -> Iterator[LocalStack]:
    stack = new_stack(tmp_path_factory, "plain-worker")
    try:
        stack.up(with_worker=False)
        yield stack
    finally:
        stack.down()


def plain_worker_env(stack: LocalStack) -> dict[str, str]:
    """The shell of a user who ran `source .venv/bin/activate` and exported PREFECT_API_URL."""
    env = {k: v for k, v in stack.env.items() if k != settings.FLOW_CODE_DIR_ENV}
    venv_bin = str(Path(sys.executable).parent)
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    return env


def start_plain_worker(stack: LocalStack, cwd: Path) -> ManagedProcess:
    name = unique("plain-worker")
    worker = ManagedProcess(name, stack.state_dir)
    command = ["prefect", "worker", "start", "--pool", stack.pool_name, "--name", name]
    worker.start(command, plain_worker_env(stack), cwd=cwd)
    return worker


def test_plain_worker_from_the_repository_root_runs_both_deployments(stack_without_worker):
    worker = start_plain_worker(stack_without_worker, settings.REPO_ROOT)
    try:
        with stack_client(stack_without_worker) as client:
            hello = run_deployment_and_wait(
                client, "say-hello/greeting-schedule", {"name": "plain"}
            )
            squares = run_deployment_and_wait(
                client, "compute-squares/compute-squares", {"numbers": [3, 5]}
            )
        assert hello.state.is_completed(), hello.state
        assert squares.state.is_completed(), squares.state
        assert squares.state.result() == [9, 25]
    finally:
        worker.stop(settings.STOP_TIMEOUT_S)


def test_worker_elsewhere_without_flow_code_dir_names_the_fix(stack_without_worker, tmp_path):
    worker = start_plain_worker(stack_without_worker, tmp_path)
    try:
        with stack_client(stack_without_worker) as client:
            run = run_deployment_and_wait(client, "say-hello/greeting-schedule", {"name": "x"})
        assert run.state.is_crashed(), run.state
        # The pull step fails before the flow's logger starts, so the explanation lands in the
        # worker's log (the flow-run process's stderr), where its operator looks.
        wait_until(
            lambda: HINT in worker.log_path.read_text(errors="replace"),
            30,
            "the FLOW_CODE_DIR hint in the worker's log",
        )
    finally:
        worker.stop(settings.STOP_TIMEOUT_S)
