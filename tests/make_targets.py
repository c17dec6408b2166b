"""`make up`, `make down` and `make status` as a user runs them, in a temporary state directory
on free ports."""

from __future__ import annotations

import os
import subprocess

import pytest

from deployments import settings
from stack.processes import free_port
from tests.live_stack import state_directory, unique


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(settings.REPO_ROOT), target],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def make_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A user's environment for a `make up` stack of its own."""
    return {
        **os.environ,
        "LOCAL_STATE_DIR": str(state_directory(tmp_path_factory, "make-up") / "state"),
        "PREFECT_SERVER_API_PORT": str(free_port()),
        settings.HEALTH_PORT_ENV: str(free_port()),
        settings.POOL_NAME_ENV: unique("make-up-pool"),
    }
