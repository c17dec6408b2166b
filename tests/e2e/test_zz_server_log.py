"""Runs after the other end-to-end modules (pytest orders files by name): by now the server has
served deploys, runs, logs and scheduling, and its log must hold no traceback."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_server_log_has_no_traceback(live_stack, api) -> None:
    assert api.hello().status_code == 200, "the server is still up"
    log = live_stack.server.log_path.read_text(errors="replace")
    assert log, "the server wrote no log at all"
    assert "Traceback" not in log, live_stack.server.log_tail(60)


def test_worker_log_has_no_traceback(live_stack) -> None:
    log = live_stack.worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log, live_stack.worker.log_tail(60)
