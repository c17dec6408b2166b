"""deployments/worker_supervisor.py acts on the worker's health endpoint: a worker that hangs
(SIGSTOP: alive, but its poll loop and endpoint answer nothing) is replaced, and the pool's work
goes on without anyone stepping in."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from prefect.client.schemas.objects import StateType

from deployments import settings, worker_supervisor
from tests.live_stack import run_deployment_and_wait, wait_until
from tests.reliability.conftest import supervised_worker_pid
from tests.reports import report


def test_a_port_in_use_is_named_and_nothing_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "deployments.worker_supervisor", "--pool", "any"],
            env={**os.environ, worker_supervisor.HEALTH_PORT_ENV: str(port)},
            cwd=settings.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} for the worker's health endpoint is in use" in result.stderr
    assert "started worker" not in result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("live_stack", ["sqlite"], indirect=True)
def test_a_hung_worker_is_replaced_by_the_supervisor(api, live_stack) -> None:
    hung = supervised_worker_pid(live_stack)
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)
    hung_at = time.monotonic()
    try:
        replaced = wait_until(
            lambda: supervised_worker_pid(live_stack) not in (None, hung),
            worker_supervisor.UNHEALTHY_AFTER_S + 60,
            "the supervisor to replace the hung worker",
        )
        replaced_after_s = time.monotonic() - hung_at
    finally:
        if os.path.exists(f"/proc/{hung}"):  # not replaced: let the test's cleanup stop it
            os.kill(hung, signal.SIGCONT)
    assert replaced
    assert "unhealthy" in live_stack.worker.log_tail(200)
    after = run_deployment_and_wait(api, "compute-squares/compute-squares", {"numbers": [5]})
    assert after.state.type == StateType.COMPLETED, after.state.message
    report("hung-worker", {"replaced_after_s": round(replaced_after_s)})
