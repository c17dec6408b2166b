"""The live stack's teardown check (tests/stack_logs.py) on server logs of the shapes Prefect 3.8.8
writes: it must catch any traceback, and let through only the two known SQLite kinds there."""

from __future__ import annotations

from tests.stack_logs import unexpected_tracebacks

STARTUP = "12:00:00.001 | INFO    | uvicorn.error - Application startup complete.\n"
UNKNOWN = (
    "12:00:01.002 | ERROR   | prefect.server.services - Unexpected error\n"
    "Traceback (most recent call last):\n"
    '  File "loop.py", line 3, in run\n'
    "ZeroDivisionError: division by zero\n"
)
LOCKED = (
    "12:00:02.003 | ERROR   | prefect.server.events.triggers - Error evaluating\n"
    "Traceback (most recent call last):\n"
    "sqlite3.OperationalError: database is locked\n"
)
EMPTY_DUPLICATE_FLUSH = (
    "12:00:03.004 | ERROR   | prefect.server.events - Max flush retries (5) reached, dropping"
    " 12 events\nTraceback (most recent call last):\n"
    "sqlalchemy.exc.IntegrityError: NOT NULL constraint failed: events.occurred\n"
    "[SQL: INSERT INTO events (id, created, updated) VALUES (?, ?, ?)]\n"
)
FLUSH_WITH_EVENTS = EMPTY_DUPLICATE_FLUSH.replace("(id, created,", "(id, occurred, created,")


def test_a_clean_log_has_nothing_unexpected() -> None:
    assert unexpected_tracebacks(STARTUP, "sqlite") == []
    assert unexpected_tracebacks(STARTUP, "postgres") == []


def test_any_other_traceback_is_unexpected_on_both_databases() -> None:
    for database in ("sqlite", "postgres"):
        (record,) = unexpected_tracebacks(STARTUP + UNKNOWN + STARTUP, database)
        assert "ZeroDivisionError" in record and "startup complete" not in record


def test_the_known_sqlite_kinds_pass_only_on_sqlite() -> None:
    log = STARTUP + LOCKED + EMPTY_DUPLICATE_FLUSH
    assert unexpected_tracebacks(log, "sqlite") == []
    assert len(unexpected_tracebacks(log, "postgres")) == 2


def test_a_failed_flush_that_carried_events_is_unexpected() -> None:
    (record,) = unexpected_tracebacks(STARTUP + FLUSH_WITH_EVENTS, "sqlite")
    assert "occurred" in record
