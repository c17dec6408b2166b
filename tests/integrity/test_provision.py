"""deployments/provision.py refuses a command it does not know without touching any server."""

import subprocess
import sys

import pytest

from deployments import settings


@pytest.mark.parametrize("argv", [[], ["deploy"], ["after-deploy", "extra"]])
def test_unknown_usage_prints_the_usage_and_exits_2(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deployments.provision", *argv],
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        # A server that does not exist: the command must fail before it would call one.
        env={"PATH": "/usr/bin:/bin", "PREFECT_API_URL": "http://127.0.0.1:9/api"},
    )
    assert result.returncode == 2
    assert "usage: python -m deployments.provision before-deploy" in result.stderr
