"""Shared by every kind of test: no telemetry, a private PREFECT_HOME, the live-stack fixture."""

from __future__ import annotations

import os
import tempfile

# Before anything imports Prefect: nothing may call out, and nothing is written to ~/.prefect.
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-tests-"))
os.environ.pop("PREFECT_API_URL", None)  # tests choose their server explicitly

pytest_plugins = ["tests.live_stack"]
