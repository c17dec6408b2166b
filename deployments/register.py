"""Register the deployments of prefect.yaml through Prefect's Python client.

    python -m deployments.register

The same server state as `prefect --no-prompt deploy --all`, for users who prefer Python to the
CLI: create each deployment, or update it in place (same id; schedules matched by slug).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient, SyncPrefectClient, get_client
from prefect.client.schemas.actions import (
    DeploymentScheduleCreate,
    DeploymentScheduleUpdate,
    DeploymentUpdate,
)
from prefect.client.schemas.objects import ConcurrencyOptions
from prefect.exceptions import ObjectNotFound
from prefect.utilities.callables import parameter_schema

from deployments import settings
from deployments.check import require_pool
from deployments.kinds.deployments import declared_triggers, set_triggers
from deployments.spec import DeploymentSpec, SpecError, load_deployments, pull_steps
from deployments.strict_parameters import strict

ScheduleAction = TypeVar("ScheduleAction", DeploymentScheduleCreate, DeploymentScheduleUpdate)


async def _register_one(
    client: PrefectClient, spec: DeploymentSpec, pool_name: str, steps: list[dict]
) -> UUID:
    flow = spec.load_flow()
    fields = dict(
        version=spec.version,
        description=spec.description,
        tags=spec.tags,
        parameters=spec.parameters,
        parameter_openapi_schema=strict(parameter_schema(flow).model_dump(exclude_unset=True)),
        enforce_parameter_schema=spec.enforce_parameter_schema,
        entrypoint=spec.entrypoint,
        work_pool_name=pool_name,
        work_queue_name=spec.work_queue_name,
        paused=spec.paused,
        job_variables=spec.job_variables,
        pull_steps=steps,
        concurrency_limit=spec.concurrency.limit if spec.concurrency else None,
        concurrency_options=(
            ConcurrencyOptions(collision_strategy=spec.concurrency.collision_strategy)
            if spec.concurrency
            else None
        ),
    )
    try:
        existing = await client.read_deployment_by_name(f"{flow.name}/{spec.name}")
    except ObjectNotFound:
        flow_id = await client.create_flow_from_name(flow.name)
        schedules = _schedules(spec, DeploymentScheduleCreate)
        deployment_id = await client.create_deployment(
            flow_id=flow_id, name=spec.name, schedules=schedules, **fields
        )
    else:
        # Schedules carry their slug, so the server updates them in place.
        schedules = _schedules(spec, DeploymentScheduleUpdate)
        await client.update_deployment(existing.id, DeploymentUpdate(schedules=schedules, **fields))
        deployment_id = existing.id
    # As `prefect deploy` does: the deployment's automations replaced by its triggers.
    await set_triggers(client, deployment_id, declared_triggers(spec, spec.name))
    return deployment_id


def _schedules(spec: DeploymentSpec, action: type[ScheduleAction]) -> list[ScheduleAction]:
    return [
        action(
            schedule=s.schedule,
            active=s.active,
            slug=s.slug,
            parameters=s.parameters,
            max_scheduled_runs=s.max_scheduled_runs,
        )
        for s in spec.schedules
    ]


def deploy_flow(
    client: SyncPrefectClient,
    flow: Flow,
    name: str,
    pool_name: str,
    job_variables: dict | None = None,
) -> UUID:
    """A flow of this repository that prefect.yaml does not declare (the tests' and the bench's
    own) deployed on `pool_name` as prefect.yaml deploys its flows: its pull steps, its first
    deployment's job variables (or `job_variables`) and an enforced parameter schema, so its runs
    start as the product's do. The caller deletes it."""
    source = Path(inspect.getsourcefile(flow.fn)).resolve().relative_to(settings.REPO_ROOT)
    if job_variables is None:
        job_variables = load_deployments()[0].job_variables
    return client.create_deployment(
        flow_id=client.create_flow_from_name(flow.name),
        name=name,
        entrypoint=f"{source}:{flow.fn.__name__}",
        work_pool_name=pool_name,
        pull_steps=pull_steps(),
        parameter_openapi_schema=parameter_schema(flow).model_dump(exclude_unset=True),
        enforce_parameter_schema=True,
        job_variables=job_variables,
    )


async def register_all(pool_name: str | None = None) -> dict[str, UUID]:
    """Register every deployment in prefect.yaml on `pool_name` (default: the repository's
    pool); return their ids by name."""
    pool_name = pool_name or settings.current().work_pool_name
    specs = load_deployments()
    steps = pull_steps()
    async with get_client() as client:
        await require_pool(client, pool_name)  # before anything is registered
        return {spec.name: await _register_one(client, spec, pool_name, steps) for spec in specs}


def main(argv: list[str]) -> int:
    try:
        pool_name = argv[0] if argv else settings.current().work_pool_name
        ids = asyncio.run(register_all(pool_name))
    except (SpecError, settings.SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, deployment_id in ids.items():
        print(f"registered {name} ({deployment_id}) on work pool {pool_name!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
