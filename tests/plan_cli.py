"""`python -m deployments plan|apply|import` as users run them, against a test's server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from deployments import settings
from stack.local import LocalStack
from tests.live_stack import new_stack

# The environment variables prefect.yaml's blocks read; unset, they are left out.
WEBHOOK_ENV = {
    "FAILURE_WEBHOOK_URL": "http://127.0.0.1:9/unused",
    "FAILURE_WEBHOOK_TOKEN": "token-that-must-never-show",
}


@contextmanager
def server_only(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[LocalStack]:
    """A fresh server and nothing else: no pool, no deployment, no worker."""
    stack = new_stack(tmp_path_factory, name)
    try:
        stack.start_server()
        yield stack
    finally:
        stack.down()


def cli(stack: LocalStack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m deployments ...` against `stack`, with `env` added to its environment."""
    return subprocess.run(
        [sys.executable, "-m", "deployments", *args],
        env={**stack.env, **env},
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def plan_json(stack: LocalStack, *args: str, **env: str) -> tuple[int, dict]:
    result = cli(stack, "plan", "--json", *args, **env)
    assert result.returncode in (0, 1, 2), result.stderr
    return result.returncode, json.loads(result.stdout)


def applied(stack: LocalStack, *args: str, **env: str) -> str:
    result = cli(stack, "apply", *args, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def changes(plan: dict, action: str, kind: str | None = None) -> dict[str, dict]:
    return {
        c["name"]: c for c in plan["changes"] if c["action"] == action and kind in (None, c["kind"])
    }


def edited_prefect_yaml(
    tmp_path: Path, edit: Callable[[dict], None], name: str = "prefect.yaml"
) -> Path:
    """A copy of prefect.yaml with `edit(raw)` applied, as a user's working copy would be."""
    raw = yaml.safe_load(settings.PREFECT_YAML.read_text())
    edit(raw)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path
