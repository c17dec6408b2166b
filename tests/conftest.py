"""Shared by every kind of test: no telemetry, a private PREFECT_HOME, the live-stack fixture."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Before anything imports Prefect: nothing may call out, and nothing is written to ~/.prefect.
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
if "PREFECT_HOME" not in os.environ:  # xdist workers inherit the one their controller made
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-tests-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.pop("PREFECT_API_URL", None)  # tests choose their server explicitly

pytest_plugins = ["tests.live_stack"]


# Session fixtures that start a stack of their own: their tests share one xdist worker.
SHARED_STACKS = ("live_stack", "postgres_stack")


def pytest_collection_modifyitems(items) -> None:
    """make test runs `pytest -n 2 --dist loadgroup`. Every test on one shared stack runs on one
    xdist worker, in file order, so the stack starts once and the server-log checks still come
    after the end-to-end tests; other tests stay together by module (module-scoped stacks)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        shared = next((name for name in SHARED_STACKS if name in fixtures), None)
        item.add_marker(pytest.mark.xdist_group(shared or item.nodeid.split("::")[0]))
