"""`python -m deployments` refuses what it does not understand with exit 1 (never plan's 2,
which means "changes"), and names a broken prefect.yaml, before it would call any server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deployments import settings

# No server listens here: a command that reached for one would fail differently.
NO_SERVER = {"PATH": "/usr/bin:/bin", "PREFECT_API_URL": "http://127.0.0.1:9/api"}


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments", *argv],
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=NO_SERVER,
    )


@pytest.mark.parametrize("argv", [[], ["deploy"], ["plan", "--force"], ["apply", "extra"]])
def test_unknown_usage_exits_1_with_the_usage(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.returncode == 1
    assert "usage: python -m deployments" in result.stderr


@pytest.mark.parametrize("command", ["check", "plan", "apply"])
def test_broken_prefect_yaml_is_named_before_the_server(tmp_path: Path, command: str) -> None:
    broken = tmp_path / "prefect.yaml"
    broken.write_text(settings.PREFECT_YAML.read_text().replace("enforce_parameter_schema", "["))
    result = run_cli(command, "--prefect-file", str(broken))
    assert result.returncode == 1
    assert "prefect.yaml: cannot be read as YAML" in result.stderr
    assert "127.0.0.1:9" not in result.stderr


def test_unreachable_server_is_named(tmp_path: Path) -> None:
    result = run_cli("plan")
    assert result.returncode == 1
    assert "the Prefect server at http://127.0.0.1:9/api" in result.stderr
    assert "did not answer" in result.stderr


def test_a_server_that_stays_away_is_named_after_the_wait() -> None:
    result = run_cli("apply", "--wait-for-server", "2")
    assert result.returncode == 1
    assert "the Prefect server at http://127.0.0.1:9/api/ did not answer within 2 s" in (
        result.stderr
    )


@pytest.mark.parametrize("wait", ["soon", "-1", "inf"])
def test_a_bad_wait_is_refused_naming_it(wait: str) -> None:
    result = run_cli("plan", "--wait-for-server", wait)
    assert result.returncode == 1
    assert f"--wait-for-server: a number of seconds, 0 or more, not {wait!r}" in result.stderr
