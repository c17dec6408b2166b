"""Shared by every kind of test: no telemetry, a private PREFECT_HOME, the live-stack fixture."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

# Before anything imports Prefect: nothing may call out, and nothing is written to ~/.prefect.
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
if "PREFECT_HOME" not in os.environ:  # xdist workers inherit the one their controller made
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-tests-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.pop("PREFECT_API_URL", None)  # tests choose their server explicitly
# The session's name for what its xdist workers share, such as the compose tests' image
# (tests/containers/engine.py): made by the controller, inherited by its workers.
if "TEST_SESSION_TOKEN" not in os.environ:
    os.environ["TEST_SESSION_TOKEN"] = uuid.uuid4().hex[:12]

pytest_plugins = ["tests.live_stack", "tests.deployed_flows"]

TESTS_DIR = Path(__file__).parent


def folder_marker(path: Path) -> str | None:
    """The marker of a test file: the folder it sits in under tests/ (None at tests/ itself)."""
    if not path.is_relative_to(TESTS_DIR):
        return None
    parts = path.relative_to(TESTS_DIR).parts
    return parts[0] if len(parts) > 1 else None


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test carries the marker of its folder, so that a folder, its marker and its make
    target say the same (docs/testing.md; tests/integrity/test_layout.py holds them together).
    A folder without a registered marker is left unmarked, for that test to name it."""
    name = folder_marker(item.path)
    registered = {line.split(":", 1)[0].strip() for line in item.config.getini("markers")}
    if name in registered:
        item.add_marker(name)


# The live stack's parameter ends a test's id: `test_x[sqlite]`, `test_y[word-for-number-sqlite]`.
LIVE_STACK_PARAM = re.compile(r"[\[-](sqlite|postgres)\]$")
# The compose tests on the session's `stack` (tests/containers/conftest.py).
COMPOSE_SESSION_STACK = (
    "tests/containers/test_stack.py",
    "tests/containers/test_stack_operations.py",
)
# Started first, so that the longest work is not left for the end: the tiny benchmark (three
# stacks), then the tests on each live stack; in `make long`, the compose stacks' tests and the
# longest fault cells.
FIRST = (
    "tests/bench/test_bench_runs.py",
    "live_stack[sqlite]",
    "live_stack[postgres]",
    "tests/containers/test_ha.py",
    "tests/containers/test_docker_pool.py",
    "compose session stack",
    "tests/faults/test_compose_faults.py::test_killed_container",
    "tests/faults/test_compose_faults.py::test_killed_ha_container",
    "tests/faults/test_partition_faults.py::test_partition_120_s",
    "tests/reliability/test_exactly_once.py",
    "tests/faults/test_disk_faults.py::test_full_disk",
)


def stack_scope(nodeid: str) -> str:
    """The unit of work `make test` and `make long` give one xdist worker: every test on one
    live stack, or every unit test (one `prefect_test_harness` server), or every compose test on
    the session's compose stack: session fixtures, started once on each worker that runs such a
    test. A fault cell on a stack of its own alone, the compose fault cells of one profile
    together (one test function). Else the test's module (module-scoped stacks)."""
    param = LIVE_STACK_PARAM.search(nodeid)
    path = nodeid.split("::", 1)[0]
    if path == "tests/faults/test_compose_faults.py":  # before the parameter: `[postgres]` too
        return nodeid.split("[", 1)[0]
    if param:
        return f"live_stack[{param[1]}]"
    if nodeid.startswith("tests/unit/"):
        return "tests/unit"
    if path in COMPOSE_SESSION_STACK:
        return "compose session stack"
    if path.startswith("tests/faults/"):
        return nodeid
    return path


@pytest.hookimpl(trylast=True)  # after pytest's own ordering by session fixture parameter
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest work first; otherwise pytest's order."""
    rank = {scope: index for index, scope in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(stack_scope(item.nodeid), len(FIRST)))


@pytest.hookimpl(optionalhook=True)
@pytest.fixture(scope="session", autouse=True)
def _postgres_user_passes_through_temporary_directories(tmp_path_factory) -> None:
    """As root, `make up`'s PostgreSQL runs as the postgres user (it refuses root), and the
    stacks' state directories sit under pytest's temporary directories, private to root: other
    users may pass through them (not list them)."""
    if os.geteuid() != 0:
        return
    directory = tmp_path_factory.getbasetemp()
    while directory.name.startswith(("pytest-", "popen-")):
        directory.chmod(directory.stat().st_mode | 0o001)
        directory = directory.parent


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test` and `make long` run `pytest -n N --dist loadscope --no-loadscope-reorder`:
    with that, each unit of work (stack_scope) goes to one xdist worker, in the order above."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class StackScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return stack_scope(nodeid)

    return StackScopeScheduling(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller (or a run without xdist), after every test: the compose tests' image."""
    if hasattr(session.config, "workerinput"):
        return
    from tests.containers.engine import remove_session_image

    remove_session_image()
