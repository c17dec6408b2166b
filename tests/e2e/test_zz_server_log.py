"""Runs after the other end-to-end modules (pytest orders files by name): by now the server has
served deploys, runs, logs and scheduling, and its log must hold no traceback, with two known,
counted exceptions on embedded SQLite (below)."""

from __future__ import annotations

import re

import pytest

from tests.reports import report

pytestmark = pytest.mark.e2e

# One log record: from its "HH:MM:SS.fff | LEVEL" line to the next one.
RECORD_START = re.compile(r"(?m)^(?=\d\d:\d\d:\d\d\.\d+ \| )")
# On SQLite, the server's event consumers (the automations' trigger evaluation, worker heartbeat
# persistence) sometimes read and then write while another writer commits, which SQLite answers
# with "database is locked" at once instead of waiting. Prefect logs a traceback and retries the
# message up to 4 times, then drops it. PostgreSQL, the production backend, never shows it (its
# variant of this test allows nothing). Counted in results/sqlite-locked-tracebacks.json.
SQLITE_LOCKED = "sqlite3.OperationalError: database is locked"
# Prefect 3.8.8's SQLite event writer skips events already stored, and when every event of a
# flush is one, it inserts an empty row, which fails (events.occurred is NOT NULL); after 5
# flushes it drops them. Such duplicates come from a client resending its unconfirmed events after
# a reconnect once the server's 1,000-event duplicate filter has forgotten them. Accepted only
# when the failed INSERT carried no event (no `occurred` column), so the part of the flush it
# wrote held nothing new. Prefect writes a flush in parts of at most 999 SQL parameters (a few
# dozen events): fresh events in another part would be dropped with it, which the log cannot
# show. PostgreSQL's writer ignores duplicates (ON CONFLICT DO NOTHING).
DUPLICATE_EVENTS_FLUSH = re.compile(
    r"Max flush retries \(\d+\) reached, dropping (?P<dropped>\d+) events.*"
    r"NOT NULL constraint failed: events\.occurred.*"
    r"\[SQL: INSERT INTO events \((?P<columns>[^)]*)\)",
    re.DOTALL,
)


def _tracebacks(log: str) -> list[str]:
    return [record for record in RECORD_START.split(log) if "Traceback" in record]


def _duplicate_events_dropped(record: str) -> int | None:
    """How many events a failed flush of only already-stored events dropped, else None."""
    match = DUPLICATE_EVENTS_FLUSH.search(record)
    if match is None or "occurred" in match["columns"]:
        return None
    return int(match["dropped"])


def test_server_log_has_no_traceback(live_stack, api, request) -> None:
    assert api.hello().status_code == 200, "the server is still up"
    log = live_stack.server.log_path.read_text(errors="replace")
    assert log, "the server wrote no log at all"
    tracebacks = _tracebacks(log)
    if request.node.callspec.params["live_stack"] == "sqlite":
        locked = [record for record in tracebacks if SQLITE_LOCKED in record]
        dead_lettered = log.count("will be moved to the dead letter queue")
        report("sqlite-locked-tracebacks", {"tracebacks": len(locked), "dropped": dead_lettered})
        duplicates = {record: _duplicate_events_dropped(record) for record in tracebacks}
        duplicates = {record: dropped for record, dropped in duplicates.items() if dropped}
        report(
            "sqlite-duplicate-event-flushes",
            {"flushes": len(duplicates), "events_dropped": sum(duplicates.values())},
        )
        tracebacks = [r for r in tracebacks if r not in locked and r not in duplicates]
    assert not tracebacks, "\n".join(record[:3000] for record in tracebacks[:3])


def test_worker_log_has_no_traceback(live_stack) -> None:
    log = live_stack.worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log, live_stack.worker.log_tail(60)
