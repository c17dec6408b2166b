"""A broken prefect.yaml fails one named test, with the problem in its message, and stops nothing
else: shown on copies of the repository whose prefect.yaml is broken, tested by pytest in a
subprocess as a developer would run it there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from deployments import settings

# Not copied: what pytest does not read, and would be slow to copy.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".prefect-local", "results", "__pycache__", ".*_cache"
)
SQUARES_ENTRYPOINT = "    entrypoint: flows/squares.py:compute_squares\n"

# The whole suite collected as `make test` collects it, running only test_prefect_yaml.py's tests
# (-k matches their module's name, which no other name holds); or that module alone.
WHOLE_SUITE = ["-k", "test_prefect_yaml.py"]
MODULE = ["tests/integrity/test_prefect_yaml.py"]

# How the copy's prefect.yaml is broken, what pytest is run on, and what the failing test says.
# Every module that reads prefect.yaml can meet a file that is not YAML; a missing key reaches
# only the loader's checks.
BREAKAGES = {
    "invalid-yaml": (
        ("\ndeployments:\n", "\ndeployments: [\n"),
        WHOLE_SUITE,
        "cannot be read as YAML",
    ),
    "missing-entrypoint": (
        (SQUARES_ENTRYPOINT, ""),
        MODULE,
        "prefect.yaml: deployments[0]: missing required field 'entrypoint'",
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_broken_prefect_yaml_fails_test_prefect_yaml_loads_naming_the_problem(
    tmp_path, breakage: str
) -> None:
    (old, new), selection, problem = BREAKAGES[breakage]
    copy = tmp_path / "repo"
    shutil.copytree(settings.REPO_ROOT, copy, ignore=NOT_COPIED)
    prefect_yaml = copy / "prefect.yaml"
    text = prefect_yaml.read_text()
    assert text.count(old) == 1, f"prefect.yaml no longer holds {old!r} to break"
    prefect_yaml.write_text(text.replace(old, new))

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *selection],
        cwd=copy,
        env={name: value for name, value in os.environ.items() if name != "PYTEST_ADDOPTS"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # 1: tests failed; 2 would be a collection error
    assert "ERROR" not in result.stdout, output
    failed = re.findall(r"^FAILED (\S+)", result.stdout, re.MULTILINE)
    assert failed == ["tests/integrity/test_prefect_yaml.py::test_prefect_yaml_loads"], output
    (message,) = re.findall(r"^prefect\.yaml cannot be loaded: .*$", result.stdout, re.MULTILINE)
    assert problem in message, output
