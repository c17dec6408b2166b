"""A server's history for bench/curves.py: copies of real runs written through Prefect's database
models, so a database holds 10,000 or 100,000 finished runs in minutes instead of days.

The templates are runs the stack really ran. Every row that belongs to them is copied, with the
proportions and contents a real run leaves: the run, its states, its task runs and their states,
its logs, its artifacts, and the events about the run and its task runs with their resources.
Each copy gets new ids (every reference to a copied row follows) and all its times moved back, so
the copies spread over the past as a server's history does. Prefect's tables and column types
(`prefect.server.database.orm_models`) read and write every value; no SQL is written here.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prefect.server.database import provide_database_interface
from prefect.server.database.configurations import AsyncPostgresConfiguration
from prefect.server.database.dependencies import temporary_database_config
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

BATCH_RUNS = 1_000  # runs written per transaction
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UUID_LENGTH = 36
EVENT_TABLES = {"events", "event_resources"}


@contextmanager
def _database(url: str) -> Iterator[None]:
    """Prefect's database interface on the PostgreSQL database at `url`: the setting, and the
    configuration Prefect otherwise keeps for the whole process from its first use."""
    config = AsyncPostgresConfiguration(connection_url=url)
    with (
        temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: url}),
        temporary_database_config(config),
    ):
        yield


def _tables(db) -> dict[str, sa.Table]:
    """The tables a run's rows live in, in the order rows can be inserted (referenced first)."""
    models = [
        db.FlowRun,
        db.TaskRun,
        db.Artifact,
        db.FlowRunState,
        db.TaskRunState,
        db.Log,
        db.Event,
        db.EventResource,
    ]
    return {model.__table__.name: model.__table__ for model in models}


async def _template_rows(db, session, run_ids: list[uuid.UUID]) -> dict[str, list[dict]]:
    """Every row of the tables that belongs to the runs `run_ids`."""
    tables = _tables(db)

    async def rows(table: sa.Table, where) -> list[dict]:
        result = await session.execute(sa.select(table).where(where))
        return [dict(row._mapping) for row in result]

    flow_run, task_run = tables["flow_run"], tables["task_run"]
    found = {"flow_run": await rows(flow_run, flow_run.c.id.in_(run_ids))}
    found["flow_run_state"] = await rows(
        tables["flow_run_state"], tables["flow_run_state"].c.flow_run_id.in_(run_ids)
    )
    found["task_run"] = await rows(task_run, task_run.c.flow_run_id.in_(run_ids))
    task_ids = [row["id"] for row in found["task_run"]]
    found["task_run_state"] = await rows(
        tables["task_run_state"], tables["task_run_state"].c.task_run_id.in_(task_ids)
    )
    found["log"] = await rows(tables["log"], tables["log"].c.flow_run_id.in_(run_ids))
    results = [
        row["result_artifact_id"]
        for name in ("flow_run_state", "task_run_state")
        for row in found[name]
        if row["result_artifact_id"]
    ]
    artifact = tables["artifact"]
    found["artifact"] = await rows(
        artifact, sa.or_(artifact.c.flow_run_id.in_(run_ids), artifact.c.id.in_(results))
    )
    resources = [f"prefect.flow-run.{i}" for i in run_ids]
    resources += [f"prefect.task-run.{i}" for i in task_ids]
    found["events"] = await rows(tables["events"], tables["events"].c.resource_id.in_(resources))
    event_ids = [row["id"] for row in found["events"]]
    found["event_resources"] = await rows(
        tables["event_resources"], tables["event_resources"].c.event_id.in_(event_ids)
    )
    return found


class _Copier:
    """Copies of the template rows: new ids for every copied row, every reference to one of them
    (a column, or an id inside a text or JSON value) pointed at its copy, every time moved."""

    def __init__(self, templates: dict[str, list[dict]]) -> None:
        self.templates = templates
        self.ids = {row["id"] for rows in templates.values() for row in rows}

    def copy(self, back: timedelta, events_within: timedelta | None) -> dict[str, list[dict]]:
        """A copy moved `back`; without events when that is further back than `events_within`
        (the server's event retention would have deleted them)."""
        skipped = set() if events_within is None or back <= events_within else EVENT_TABLES
        new = {old: uuid.uuid4() for old in self.ids}
        new_text = {str(old): str(value) for old, value in new.items()}

        def moved(value: Any) -> Any:
            if isinstance(value, uuid.UUID):
                return new.get(value, value)
            if isinstance(value, datetime):
                return value - back
            if isinstance(value, str):
                if len(value) < UUID_LENGTH:
                    return value
                return UUID_TEXT.sub(lambda m: new_text.get(m.group(0), m.group(0)), value)
            if isinstance(value, dict):
                return {key: moved(item) for key, item in value.items()}
            if isinstance(value, list):
                return [moved(item) for item in value]
            return value  # numbers, None, and Prefect's own objects (state details) as they were

        return {
            name: [] if name in skipped else [{k: moved(v) for k, v in row.items()} for row in rows]
            for name, rows in self.templates.items()
        }


async def _write(db, session, batch: Iterable[dict[str, list[dict]]]) -> None:
    """Insert the copies' rows, each table in one statement; a run's current state (a reference
    the state's own row makes possible) is set once its states exist."""
    tables = _tables(db)
    copies = list(batch)
    current = {}
    for name, table in tables.items():
        rows = [row for copy in copies for row in copy[name]]
        if name in ("flow_run", "task_run"):
            current[name] = [{"run": row["id"], "state": row["state_id"]} for row in rows]
            rows = [{**row, "state_id": None} for row in rows]
        if rows:
            await session.execute(sa.insert(table), rows)
    for name, pairs in current.items():
        table = tables[name]
        statement = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("run"))
            .values(state_id=sa.bindparam("state"))
        )
        if pairs:
            await session.execute(statement, pairs)


async def _seed(
    template_run_ids: list[uuid.UUID],
    runs: int,
    spread: timedelta,
    offset: timedelta,
    events_within: timedelta | None,
) -> int:
    db = provide_database_interface()
    try:
        async with db.session_context() as session:
            templates = await _template_rows(db, session, template_run_ids)
        per_copy = len(templates["flow_run"])
        copies = runs // per_copy if per_copy else 0
        copier = _Copier(templates)
        per_batch = max(1, BATCH_RUNS // max(per_copy, 1))
        for first in range(0, copies, per_batch):
            batch = [
                copier.copy(offset + spread * (index + 1) / copies, events_within)
                for index in range(first, min(first + per_batch, copies))
            ]
            async with db.session_context(begin_transaction=True) as session:
                await _write(db, session, batch)
        return copies * per_copy
    finally:
        await (await db.engine()).dispose()  # its connections belong to this event loop


def seed_history(
    database_url: str,
    template_run_ids: list[uuid.UUID],
    runs: int,
    spread: timedelta,
    offset: timedelta = timedelta(0),
    events_within: timedelta | None = None,
) -> int:
    """About `runs` copies of the template runs (a whole number of copies of all of them) in the
    database at `database_url`, the k-th copy moved back by `offset` and k/copies of `spread`,
    with their events only where they are at most `events_within` back (all without it); how
    many runs were written."""
    with _database(database_url):
        return asyncio.run(_seed(template_run_ids, runs, spread, offset, events_within))


async def _database_bytes() -> int:
    db = provide_database_interface()
    try:
        async with db.session_context() as session:
            size = sa.func.pg_database_size(sa.func.current_database())
            return (await session.execute(sa.select(size))).scalar_one()
    finally:
        await (await db.engine()).dispose()


def database_bytes(database_url: str) -> int:
    """The size of the PostgreSQL database at `database_url` on disk, as PostgreSQL counts it."""
    with _database(database_url):
        return asyncio.run(_database_bytes())
