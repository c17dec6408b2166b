"""The suite says what it runs: a test file's folder under tests/ is its marker (tests/conftest.py
applies it) and determines the one make target that runs it. docs/testing.md shows the same
table."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib

from _pytest.mark.expression import Expression

from deployments import settings
from tests.conftest import TESTS_DIR, folder_marker, stack_scope

# Each folder of tests/ (its marker has its name) and the make target that runs it.
FOLDER_TARGETS = {
    "unit": "test",
    "integrity": "test",
    "e2e": "test",
    "browser": "test",
    "compose": "test",
    "bench": "test",
    "reliability": "reliability",
    "faults": "faults",
    "containers": "containers",
}
# Targets that run the folders of several others in one session, and which: `make long`, what CI
# runs after make test.
AGGREGATES = {"long": {"containers", "reliability", "faults"}}

# Collects the whole suite as `pytest` does and prints each test's node id and markers.
LIST_MARKERS = """
import sys
import pytest

class ListMarkers:
    def pytest_collection_finish(self, session):
        for item in session.items:
            names = sorted({mark.name for mark in item.iter_markers()})
            print("MARKED", item.nodeid, *names, sep="\\t")

sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider"], plugins=[ListMarkers()]))
"""


# Collects the whole suite and prints each test's node id and whether it runs on a live stack.
LIST_LIVE_STACK_TESTS = """
import sys
import pytest

class ListLiveStackTests:
    def pytest_collection_finish(self, session):
        for item in session.items:
            print("LIVE", item.nodeid, "live_stack" in item.fixturenames, sep="\t")

sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider"],
                     plugins=[ListLiveStackTests()]))
"""


def _collect(script: str, prefix: str) -> list[list[str]]:
    """Run a collection script as `pytest` collects; its rows that start with `prefix`."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    listed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-3000:]
    lines = listed.stdout.splitlines()
    rows = [line.split("\t")[1:] for line in lines if line.startswith(prefix)]
    assert len(rows) > 100, listed.stdout[-3000:]
    return rows


def _registered_markers() -> set[str]:
    pytest_ini = tomllib.loads((settings.REPO_ROOT / "pyproject.toml").read_text())["tool"]
    return {line.split(":", 1)[0] for line in pytest_ini["pytest"]["ini_options"]["markers"]}


def _makefile_selections() -> dict[str, tuple[str, list[str]]]:
    """Each make target that runs `$(PYTEST)`: its `-m` expression and the paths it names."""
    selections, target = {}, None
    makefile = (settings.REPO_ROOT / "Makefile").read_text().replace("\\\n", " ")
    for line in makefile.splitlines():
        if match := re.match(r"^([\w-]+):", line):
            target = match[1]
        elif "$(PYTEST)" in line:
            args = shlex.split(line.split("$(PYTEST)", 1)[1])
            expression = args[args.index("-m") + 1]
            selections[target] = (expression, [arg for arg in args if arg.startswith("tests")])
    return selections


def _selects(expression: str, paths: list[str], folder: str) -> bool:
    """Whether `pytest -m expression *paths` runs the tests of `folder`, as pytest evaluates -m."""
    marked = Expression.compile(expression).evaluate(lambda marker, **_: marker == folder)
    return marked and (not paths or f"tests/{folder}" in paths)


def test_every_test_file_sits_in_a_folder_with_its_own_marker() -> None:
    files = sorted(TESTS_DIR.rglob("test_*.py"))
    assert files
    folders = {path.relative_to(TESTS_DIR).as_posix(): folder_marker(path) for path in files}
    assert not [name for name, folder in folders.items() if folder not in FOLDER_TARGETS], (
        "test files outside the folders of tests/integrity/test_layout.py's FOLDER_TARGETS"
    )
    assert set(folders.values()) == set(FOLDER_TARGETS), "a folder without test files"
    assert _registered_markers() == set(FOLDER_TARGETS), "pyproject.toml's markers"


def test_each_folder_is_run_by_exactly_its_make_target() -> None:
    selections = _makefile_selections()
    assert set(selections) == set(FOLDER_TARGETS.values()) | set(AGGREGATES), selections
    for folder, target in FOLDER_TARGETS.items():
        selected_by = [name for name, chosen in selections.items() if _selects(*chosen, folder)]
        expected = [target, *(name for name, runs in AGGREGATES.items() if target in runs)]
        assert sorted(selected_by) == sorted(expected), f"tests/{folder} is run by {selected_by}"


def test_every_collected_test_carries_exactly_its_folder_marker() -> None:
    rows = _collect(LIST_MARKERS, "MARKED\t")
    wrong = {}
    for node_id, *markers in rows:
        folder = node_id.split("/")[1]
        if set(markers) & set(FOLDER_TARGETS) != {folder}:
            wrong[node_id] = markers
    assert not wrong, wrong


def test_a_live_stack_unit_holds_exactly_the_tests_on_that_live_stack() -> None:
    """xdist gives each unit (tests/conftest.py, stack_scope) to one worker: a test on a stack of
    its own counted into a live stack's unit starts that stack on another worker."""
    wrong = {
        node_id: stack_scope(node_id)
        for node_id, on_live_stack in _collect(LIST_LIVE_STACK_TESTS, "LIVE\t")
        if stack_scope(node_id).startswith("live_stack[") != (on_live_stack == "True")
    }
    assert not wrong, wrong


def test_the_testing_guide_shows_the_same_table() -> None:
    guide = (settings.REPO_ROOT / "docs" / "testing.md").read_text()
    rows = re.findall(r"^\| `tests/(\w+)` \| `(\w+)` \| `make (\w+)` \|", guide, re.MULTILINE)
    assert [(folder, marker) for folder, marker, _ in rows if marker != folder] == []
    assert {folder: target for folder, _, target in rows} == FOLDER_TARGETS
    assert len(rows) == len(FOLDER_TARGETS), rows
