"""Retention on `make up`'s stack (PostgreSQL): the server's vacuum deletes flow runs that ended
longer ago than the repository's retention, with their logs and artifacts, and never a run that
is not final, however old. Old runs are written through Prefect's own database models (its API
stamps every state with the present), with a log and an artifact each. The vacuum runs every
second here instead of hourly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.exceptions import ObjectNotFound
from prefect.server import models, schemas
from prefect.server.database import provide_database_interface
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

from deployments import settings
from tests.live_stack import new_stack, stack_client, wait_until

RETENTION = timedelta(days=settings.current().flow_run_retention_days)
# state: how long ago it ended (a final run) or entered that state (any other)
SEEDED = {
    "expired-completed": (schemas.states.StateType.COMPLETED, RETENTION + timedelta(days=1)),
    "expired-failed": (schemas.states.StateType.FAILED, RETENTION + timedelta(days=2)),
    "recent-completed": (schemas.states.StateType.COMPLETED, RETENTION - timedelta(days=1)),
    "old-running": (schemas.states.StateType.RUNNING, RETENTION * 2),
    "old-scheduled": (schemas.states.StateType.SCHEDULED, RETENTION * 2),
    "old-paused": (schemas.states.StateType.PAUSED, RETENTION * 2),
    "old-pending": (schemas.states.StateType.PENDING, RETENTION * 2),
}
EXPIRED = {"expired-completed", "expired-failed"}


async def _seed_runs(database_url: str, flow_id: UUID) -> dict[str, UUID]:
    """SEEDED as flow runs of `flow_id`, their states and end times in the past."""
    with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: database_url}):
        db = provide_database_interface()
        ids = {}
        async with db.session_context(begin_transaction=True) as session:
            for name, (state_type, ago) in SEEDED.items():
                at = datetime.now(UTC) - ago
                state = schemas.states.State(type=state_type, timestamp=at)
                final = state.is_final()
                run = await models.flow_runs.create_flow_run(
                    session=session,
                    flow_run=schemas.core.FlowRun(
                        name=name,
                        flow_id=flow_id,
                        state=state,
                        start_time=at - timedelta(seconds=5) if final else None,
                        end_time=at if final else None,
                    ),
                )
                ids[name] = run.id
                log = schemas.actions.LogCreate(
                    name="retention", level=20, message=name, timestamp=at, flow_run_id=run.id
                )
                await models.logs.create_logs(session=session, logs=[log])
                artifact = schemas.core.Artifact(type="markdown", data=name, flow_run_id=run.id)
                await models.artifacts.create_artifact(session=session, artifact=artifact)
        await (await db.engine()).dispose()  # its connections belong to this event loop
        return ids


@pytest.mark.timeout(300)
def test_the_vacuum_deletes_expired_runs_with_their_logs_and_never_a_run_that_is_not_final(
    tmp_path_factory,
) -> None:
    stack = new_stack(
        tmp_path_factory,
        "retention",
        database="postgres",
        extra_env={"PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS": "1"},
    )
    with stack.running(with_worker=False), stack_client(stack) as api:
        flow_id = api.read_deployment_by_name("say-hello/greeting-schedule").flow_id
        ids = asyncio.run(_seed_runs(stack.local_database.url, flow_id))

        def left(name: str) -> tuple[bool, int, int]:
            """Whether the run `name` is still there, and its logs and artifacts."""
            run_id = ids[name]
            try:
                api.read_flow_run(run_id)
                there = True
            except ObjectNotFound:
                there = False
            logs = api.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
            artifacts = api.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            return there, len(logs), len(artifacts)

        wait_until(
            lambda: all(left(name) == (False, 0, 0) for name in EXPIRED),
            120,
            "the vacuum to delete the expired runs, their logs and artifacts",
        )
        for name in SEEDED.keys() - EXPIRED:
            assert left(name) == (True, 1, 1), name
            assert api.read_flow_run(ids[name]).state.type.value == SEEDED[name][0].value, name
