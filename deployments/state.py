"""What prefect.yaml declares and what the server has, in one comparable shape.

Each deployment and automation becomes a flat mapping of field name to plain JSON data, built the
same way from both sides, so a plan is a field-by-field comparison of two such mappings. The
fields are the ones `prefect deploy --all` and `deployments.automations` set; what the server
assigns itself (ids, timestamps, status) is left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import DeploymentSchedule
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.events.schemas.automations import Automation, AutomationCore
from prefect.utilities.callables import parameter_schema

from deployments import settings
from deployments.automations import repository_automations
from deployments.spec import (
    DeploymentSpec,
    owner_tag,
    pool_types,
    pull_steps,
    resolve_deployments,
)
from deployments.strict_parameters import strict

Fields = dict[str, Any]
T = TypeVar("T")

# Where `apply` records, per object and field, a digest of what it applied: a server value that
# no longer matches its digest was edited out of band (drift), not changed in the repository.
APPLIED_VARIABLE_PREFIX = "applied-"


@dataclass(frozen=True)
class Declared:
    """Everything one prefect.yaml declares, keyed by full name ("flow/deployment")."""

    owner_tag: str
    pools: dict[str, str]  # worker type by pool name
    deployments: dict[str, Fields]
    automations: dict[str, Fields]

    @property
    def applied_variable(self) -> str:
        return APPLIED_VARIABLE_PREFIX + self.owner_tag.split(":", 1)[1]


def _by_slug(schedules: list[Fields]) -> list[Fields]:
    return sorted(schedules, key=lambda schedule: schedule["slug"] or "")


def declared_deployment(spec: DeploymentSpec, flow: Flow, steps: list[dict[str, Any]]) -> Fields:
    """The fields `prefect deploy` gives this deployment of `flow`, plus the strict parameter
    schema that `apply` sets right after it (deployments/strict_parameters.py)."""
    schema = parameter_schema(flow).model_dump(exclude_unset=True)
    concurrency = (
        {"limit": spec.concurrency.limit, "collision_strategy": spec.concurrency.collision_strategy}
        if spec.concurrency
        else None
    )
    return {
        "entrypoint": spec.entrypoint,
        "description": spec.description or None,
        "version": spec.version,
        "tags": sorted(spec.tags),
        "parameters": spec.parameters,
        "parameter_schema": strict(schema),
        "enforce_parameter_schema": spec.enforce_parameter_schema,
        "work_pool": spec.work_pool_name,
        "job_variables": spec.job_variables,
        "concurrency_limit": concurrency,
        "schedules": _by_slug(
            [
                {"slug": s.slug, "active": s.active, "interval_s": s.interval.total_seconds()}
                for s in spec.schedules
            ]
        ),
        "pull_steps": steps,
    }


def server_deployment(deployment: DeploymentResponse) -> Fields:
    limit = deployment.global_concurrency_limit
    options = deployment.concurrency_options
    concurrency = (
        {
            "limit": limit.limit,
            "collision_strategy": str(options.collision_strategy.value) if options else "ENQUEUE",
        }
        if limit
        else None
    )
    return {
        "entrypoint": deployment.entrypoint,
        "description": deployment.description or None,
        "version": deployment.version,
        "tags": sorted(deployment.tags),
        "parameters": deployment.parameters,
        "parameter_schema": deployment.parameter_openapi_schema,
        "enforce_parameter_schema": deployment.enforce_parameter_schema,
        "work_pool": deployment.work_pool_name,
        "job_variables": deployment.job_variables,
        "concurrency_limit": concurrency,
        "schedules": _by_slug([_server_schedule(s) for s in deployment.schedules]),
        "pull_steps": deployment.pull_steps or [],
    }


def _server_schedule(schedule: DeploymentSchedule) -> Fields:
    """Interval schedules as prefect.yaml writes them; any other kind (made in the UI) whole."""
    if isinstance(schedule.schedule, IntervalSchedule):
        kind = {"interval_s": schedule.schedule.interval.total_seconds()}
    else:
        kind = {"schedule": schedule.schedule.model_dump(mode="json")}
    return {"slug": schedule.slug, "active": schedule.active, **kind}


def automation_fields(automation: AutomationCore) -> Fields:
    """The automation as the repository declares it; trigger ids are assigned per object."""
    data = AutomationCore.model_validate(automation.model_dump()).model_dump(mode="json")
    data["trigger"].pop("id", None)
    for key in ("after", "expect", "for_each"):  # sets, serialized in no fixed order
        if isinstance(data["trigger"].get(key), list):
            data["trigger"][key] = sorted(data["trigger"][key])
    data["tags"] = sorted(data["tags"])
    return data


async def load_declared(client: PrefectClient, path: Path = settings.PREFECT_YAML) -> Declared:
    """Read prefect.yaml, resolved against `client`'s server, and import every flow it names
    (SpecError when broken)."""
    tag = owner_tag(path)
    steps = pull_steps(path)
    specs = await resolve_deployments(client, path)
    types = pool_types(path)
    deployments = {}
    for spec in specs:
        flow = spec.load_flow()  # imports the flow's module: once per deployment
        deployments[f"{flow.name}/{spec.name}"] = declared_deployment(spec, flow, steps)
    automations = {a.name: automation_fields(a) for a in repository_automations(path)}
    return Declared(
        owner_tag=tag,
        pools={
            spec.work_pool_name: types.get(spec.work_pool_name, settings.WORK_POOL_TYPE)
            for spec in specs
        },
        deployments=deployments,
        automations=automations,
    )


@dataclass(frozen=True)
class ServerState:
    deployments: dict[str, tuple[DeploymentResponse, Fields]]
    automations: dict[str, tuple[Automation, Fields]]
    missing_pools: set[str]
    applied: dict[str, dict[str, dict[str, str]]]  # kind -> name -> field -> digest


PAGE = 200  # the API's largest page


async def _every(read: Callable[..., Awaitable[list[T]]]) -> list[T]:
    """Every object a `read_*` client method lists, page by page."""
    objects: list[T] = []
    while True:
        page = await read(limit=PAGE, offset=len(objects))
        objects += page
        if len(page) < PAGE:
            return objects


async def read_server(client: PrefectClient, declared: Declared) -> ServerState:
    flows = {flow.id: flow.name for flow in await _every(client.read_flows)}
    deployments = {}
    for deployment in await _every(client.read_deployments):
        name = f"{flows.get(deployment.flow_id, '?')}/{deployment.name}"
        deployments[name] = (deployment, server_deployment(deployment))
    automations = {}
    for automation in await client.read_automations():
        automations.setdefault(automation.name, (automation, automation_fields(automation)))
    pools = {pool.name for pool in await client.read_work_pools()}
    missing_pools = set(declared.pools) - pools
    variable = await client.read_variable_by_name(declared.applied_variable)
    applied = variable.value if variable and isinstance(variable.value, dict) else {}
    return ServerState(deployments, automations, missing_pools, applied)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def digests(fields: Fields) -> dict[str, str]:
    return {field: digest(value) for field, value in fields.items()}
