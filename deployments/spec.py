"""prefect.yaml, read once: the one list of deployments that the CLI, the registration script,
the serve script and the tests share.

Read as `prefect deploy` reads it: YAML anchors (`definitions`) merged, `{{ $ENV_VAR }}`
placeholders filled from the environment, and the work pool defaulting to prefect.toml's
`default_work_pool_name` (deployments/settings.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.templating import (
    apply_values,
    resolve_block_document_references,
    resolve_variables,
)

from deployments import settings

# The ownership marker: a tag naming the project (prefect.yaml's `name`). `python -m deployments
# plan/apply --prune` change or delete only deployments and automations that carry it.
OWNER_TAG_PREFIX = "managed-by:"


class SpecError(ValueError):
    """prefect.yaml is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class ScheduleSpec:
    slug: str
    interval: timedelta
    active: bool = True


@dataclass(frozen=True)
class ConcurrencySpec:
    limit: int
    collision_strategy: str  # ENQUEUE or CANCEL_NEW, as Prefect names them


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    entrypoint: str
    description: str
    version: str
    tags: list[str]
    parameters: dict[str, Any]
    enforce_parameter_schema: bool
    job_variables: dict[str, Any]
    work_pool_name: str
    schedules: list[ScheduleSpec] = field(default_factory=list)
    concurrency: ConcurrencySpec | None = None

    @property
    def entrypoint_path(self) -> Path:
        return settings.REPO_ROOT / self.entrypoint.split(":", 1)[0]

    @property
    def flow_function(self) -> str:
        return self.entrypoint.split(":", 1)[1]

    def load_flow(self) -> Flow:
        """Import the flow; raises for an import error, a missing name or a non-@flow."""
        return load_flow_from_entrypoint(f"{self.entrypoint_path}:{self.flow_function}")


def load_raw(path: Path = settings.PREFECT_YAML) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot be read as YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("deployments"), list):
        raise SpecError(f"{path}: needs a top-level `deployments:` list")
    return raw


def pull_steps(path: Path = settings.PREFECT_YAML) -> list[dict[str, Any]]:
    return load_raw(path).get("pull") or []


def pool_types(path: Path = settings.PREFECT_YAML) -> dict[str, str]:
    """Worker type by pool name, from `definitions.work_pools` (Prefect's deployment schema has no
    field for it); a pool not listed there is a process pool."""
    declared = (load_raw(path).get("definitions") or {}).get("work_pools") or {}
    if not isinstance(declared, dict):
        raise SpecError(f"{path.name}: definitions.work_pools must map pool names to worker types")
    return declared


def declared_automations(path: Path = settings.PREFECT_YAML) -> list[str]:
    """Names of the automations (deployments/automations.py) this file owns, from
    `definitions.automations`."""
    names = (load_raw(path).get("definitions") or {}).get("automations") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SpecError(f"{path.name}: definitions.automations must be a list of names")
    return names


def owner_tag(path: Path = settings.PREFECT_YAML) -> str:
    """The tag that marks what this prefect.yaml owns on the server."""
    name = load_raw(path).get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{path.name}: needs a top-level `name:` (the project's name)")
    return OWNER_TAG_PREFIX + name


def _schedule(where: str, item: dict[str, Any]) -> ScheduleSpec:
    if set(item) - {"slug", "interval", "active"} or "interval" not in item:
        raise SpecError(f"{where}: only interval schedules (slug, interval, active) are supported")
    if not item.get("slug"):
        raise SpecError(f"{where}.slug: every schedule needs a slug to survive redeploys")
    return ScheduleSpec(
        slug=item["slug"],
        interval=timedelta(seconds=item["interval"]),
        active=item.get("active", True),
    )


def _concurrency(where: str, item: Any) -> ConcurrencySpec | None:
    if item is None:
        return None
    if isinstance(item, int):
        return ConcurrencySpec(limit=item, collision_strategy="ENQUEUE")
    if not isinstance(item, dict) or not isinstance(item.get("limit"), int):
        raise SpecError(f"{where}: needs `limit` (an integer) and optional `collision_strategy`")
    strategy = item.get("collision_strategy", "ENQUEUE")
    if strategy not in ("ENQUEUE", "CANCEL_NEW"):
        raise SpecError(f"{where}.collision_strategy: ENQUEUE or CANCEL_NEW, not {strategy!r}")
    return ConcurrencySpec(limit=item["limit"], collision_strategy=strategy)


def load_deployments(
    path: Path = settings.PREFECT_YAML, items: list[Any] | None = None
) -> list[DeploymentSpec]:
    """The deployments of `path`, or `items` in its place (the same entries, already resolved
    against the server by `resolve_deployments`)."""
    default_pool = settings.current().work_pool_name
    specs = []
    for index, item in enumerate(load_raw(path)["deployments"] if items is None else items):
        where = f"{path.name}: deployments[{index}]"
        if not isinstance(item, dict):
            raise SpecError(f"{where}: must be a mapping of deployment fields")
        item = apply_values(item, os.environ, remove_notset=False)  # as `prefect deploy` does
        work_pool = item.get("work_pool") or {}
        try:
            specs.append(
                DeploymentSpec(
                    name=item["name"],
                    entrypoint=item["entrypoint"],
                    description=item.get("description", ""),
                    version=str(item["version"]),
                    tags=list(item.get("tags", [])),
                    parameters=dict(item.get("parameters") or {}),
                    enforce_parameter_schema=bool(item.get("enforce_parameter_schema", True)),
                    job_variables=dict(work_pool.get("job_variables") or {}),
                    work_pool_name=work_pool.get("name") or default_pool,
                    schedules=[
                        _schedule(f"{where}.schedules[{i}]", schedule)
                        for i, schedule in enumerate(item.get("schedules") or [])
                    ],
                    concurrency=_concurrency(
                        f"{where}.concurrency_limit", item.get("concurrency_limit")
                    ),
                )
            )
        except KeyError as exc:
            raise SpecError(f"{where}: missing required field {exc.args[0]!r}") from exc
    return specs


async def resolve_deployments(
    client: PrefectClient, path: Path = settings.PREFECT_YAML
) -> list[DeploymentSpec]:
    """As `prefect deploy` reads them: block references and `{{ prefect.variables.* }}` resolved
    on the server first, then the environment's `{{ $VAR }}` placeholders."""
    items = []
    for item in load_raw(path)["deployments"]:
        item = await resolve_block_document_references(item, client=client)
        items.append(await resolve_variables(item, client=client))
    return load_deployments(path, items)
