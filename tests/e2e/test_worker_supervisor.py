"""stack/worker_supervisor.py at start-up, as `make up` and the compose worker start it: it
serves the worker's health endpoint, so a port already in use stops it before any worker runs.
How it treats a hung worker or server is tests/reliability/test_worker_supervisor.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from deployments import settings


def test_a_port_in_use_is_named_and_nothing_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "stack.worker_supervisor", "--pool", "any"],
            env={**os.environ, settings.HEALTH_PORT_ENV: str(port)},
            cwd=settings.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} for the worker's health endpoint is in use" in result.stderr
    assert "started worker" not in result.stderr
