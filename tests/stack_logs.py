"""The live stack's logs, checked when its last test is over (the `live_stack` fixture's
teardown): by then the server has served deploys, runs, logs and scheduling, and neither its log
nor the worker's may hold a traceback, with two known, counted exceptions on embedded SQLite
(below). A stack that a fault-injection test (marker `reliability`) hung or killed on purpose is
not checked: the faults it injected log tracebacks by design."""

from __future__ import annotations

import re

from stack.local import LocalStack
from tests.reports import report

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


def _known_on_sqlite(tracebacks: list[str]) -> tuple[list[str], dict[str, int]]:
    """The "database is locked" records, and the duplicate-event flushes with what they dropped."""
    locked = [record for record in tracebacks if SQLITE_LOCKED in record]
    duplicates = {record: _duplicate_events_dropped(record) for record in tracebacks}
    return locked, {record: dropped for record, dropped in duplicates.items() if dropped}


def unexpected_tracebacks(log: str, database: str) -> list[str]:
    """The server log's tracebacks, less the two known kinds when the database is SQLite."""
    return _classified(log, database)[0]


def _classified(log: str, database: str) -> tuple[list[str], list[str], dict[str, int]]:
    """(unexpected records, "database is locked" records, duplicate-event flushes with what
    each dropped); the two known kinds count only on SQLite."""
    tracebacks = _tracebacks(log)
    if database != "sqlite":
        return tracebacks, [], {}
    locked, duplicates = _known_on_sqlite(tracebacks)
    unexpected = [r for r in tracebacks if r not in locked and r not in duplicates]
    return unexpected, locked, duplicates


def _report_known_sqlite_tracebacks(
    log: str, locked: list[str], duplicates: dict[str, int]
) -> None:
    """Count the two known kinds in results/, where docs/performance.md's figures come from."""
    report(
        "sqlite-locked-tracebacks",
        {"tracebacks": len(locked), "dropped": log.count("will be moved to the dead letter queue")},
    )
    report(
        "sqlite-duplicate-event-flushes",
        {"flushes": len(duplicates), "events_dropped": sum(duplicates.values())},
    )


def assert_stack_logs_clean(stack: LocalStack, database: str) -> None:
    """Fail, quoting the first records, when the server was down at the end or either log holds
    an unexpected traceback."""
    assert stack.server_ready(), "the server was no longer ready after the last test"
    log = stack.server.log_path.read_text(errors="replace")
    assert log, f"the server wrote no log at all ({stack.server.log_path})"
    unexpected, locked, duplicates = _classified(log, database)
    if database == "sqlite":
        _report_known_sqlite_tracebacks(log, locked, duplicates)
    assert not unexpected, f"{stack.server.log_path}:\n" + "\n".join(
        record[:3000] for record in unexpected[:3]
    )
    worker_log = stack.worker.log_path.read_text(errors="replace")
    assert "Traceback" not in worker_log, stack.worker.log_tail(60)
