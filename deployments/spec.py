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
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
from prefect.flows import load_flow_from_entrypoint
from prefect.types._datetime import parse_datetime
from prefect.utilities.templating import (
    PlaceholderType,
    apply_values,
    find_placeholders,
    resolve_block_document_references,
    resolve_variables,
)
from pydantic import BaseModel, ValidationError

from deployments import settings

# The ownership marker: a tag naming the project (prefect.yaml's `name`, and the target's for a
# target that is not the default: deployments/targets.py). `python -m deployments plan/apply
# --prune` change or delete only objects that carry it (deployments/kinds/base.py).
from deployments.targets import OWNER_TAG_PREFIX, Target, TargetError, chosen, with_target


class SpecError(ValueError):
    """prefect.yaml is malformed; the message names the file and the field."""


# A schedule as prefect.yaml writes it (Prefect's own fields): one of interval (seconds), cron
# (with day_or) or rrule; anchor_date and timezone; active, parameters and max_scheduled_runs.
SCHEDULE_FIELDS = {
    "slug",
    "interval",
    "cron",
    "day_or",
    "rrule",
    "anchor_date",
    "timezone",
    "active",
    "parameters",
    "max_scheduled_runs",
}


@dataclass(frozen=True)
class ScheduleSpec:
    slug: str
    schedule: IntervalSchedule | CronSchedule | RRuleSchedule
    active: bool = True
    parameters: dict[str, Any] = field(default_factory=dict)
    max_scheduled_runs: int | None = None
    anchor_declared: bool = False  # without one, the anchor is the server's choice

    @property
    def interval(self) -> timedelta | None:
        return self.schedule.interval if isinstance(self.schedule, IntervalSchedule) else None


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
    paused: bool = False
    work_queue_name: str | None = None
    triggers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def entrypoint_path(self) -> Path:
        return settings.REPO_ROOT / self.entrypoint.split(":", 1)[0]

    @property
    def flow_function(self) -> str:
        return self.entrypoint.split(":", 1)[1]

    def load_flow(self) -> Flow:
        """Import the flow, once per entrypoint (many deployments may share one); raises for an
        import error, a missing name or a non-@flow."""
        return load_flow(self.entrypoint_path, self.flow_function)


@cache
def load_flow(path: Path, function: str) -> Flow:
    """The flow `function` of the file at `path`, imported once."""
    return load_flow_from_entrypoint(f"{path}:{function}")


def load_declared(path: Path = settings.PREFECT_YAML) -> dict[str, Any]:
    """The prefect file as written, with no target applied."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot be read as YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("deployments"), list):
        raise SpecError(f"{path}: needs a top-level `deployments:` list")
    return raw


def chosen_target(path: Path = settings.PREFECT_YAML) -> Target | None:
    """The target plan and apply deploy (deployments/targets.py); None for a file without
    targets."""
    try:
        return chosen(load_declared(path), path.name)
    except TargetError as exc:
        raise SpecError(str(exc)) from None


def load_raw(path: Path = settings.PREFECT_YAML) -> dict[str, Any]:
    """The prefect file as the chosen target sees it: its overrides merged in."""
    raw = load_declared(path)
    try:
        return with_target(raw, chosen(raw, path.name), path.name)
    except TargetError as exc:
        raise SpecError(str(exc)) from None


def pull_steps(path: Path = settings.PREFECT_YAML) -> list[dict[str, Any]]:
    return load_raw(path).get("pull") or []


def project_name(path: Path = settings.PREFECT_YAML) -> str:
    """prefect.yaml's `name`: the owner of what the file declares on a server."""
    name = load_raw(path).get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{path.name}: needs a top-level `name:` (the project's name)")
    return name


def owner_tag(path: Path = settings.PREFECT_YAML) -> str:
    """The tag that marks what this prefect.yaml owns on the server."""
    return OWNER_TAG_PREFIX + project_name(path)


def valid_name(action: type[BaseModel], where: str, **fields: Any) -> None:
    """SpecError when Prefect's own action model refuses the declared object's name (checked
    before anything is sent, so apply cannot stop halfway on it)."""
    try:
        action(**fields)
    except ValidationError as exc:
        raise SpecError(f"{where}.name: {exc.errors()[0]['msg']}") from None


def reject_unknown(item: dict[str, Any], known: set[str], where: str) -> None:
    """SpecError naming the first field of `item` that is not in `known`."""
    unknown = sorted(set(item) - known)
    if unknown:
        raise SpecError(
            f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )


def _schedule(where: str, item: dict[str, Any]) -> ScheduleSpec:
    if not isinstance(item, dict):
        raise SpecError(f"{where}: a mapping of schedule fields")
    reject_unknown(item, SCHEDULE_FIELDS, where)
    if not item.get("slug"):
        raise SpecError(f"{where}.slug: every schedule needs a slug to survive redeploys")
    kinds = [kind for kind in ("interval", "cron", "rrule") if item.get(kind) is not None]
    if len(kinds) != 1:
        raise SpecError(f"{where}: exactly one of interval, cron or rrule, not {kinds or 'none'}")
    common = {"timezone": item["timezone"]} if item.get("timezone") else {}
    try:
        if kinds == ["interval"]:
            if item.get("anchor_date"):
                common["anchor_date"] = parse_datetime(str(item["anchor_date"]))
            schedule = IntervalSchedule(interval=timedelta(seconds=item["interval"]), **common)
        elif kinds == ["cron"]:
            schedule = CronSchedule(cron=item["cron"], day_or=item.get("day_or", True), **common)
        else:
            schedule = RRuleSchedule(rrule=item["rrule"], **common)
        limit = item.get("max_scheduled_runs")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(
                f"max_scheduled_runs must be a whole number of at least 1, not {limit!r}"
            )
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise SpecError(f"{where}: {exc}") from None
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise SpecError(f"{where}.parameters: a mapping of parameter names to values")
    return ScheduleSpec(
        slug=item["slug"],
        schedule=schedule,
        active=bool(item.get("active", True)),
        parameters=parameters,
        max_scheduled_runs=item.get("max_scheduled_runs"),
        anchor_declared=bool(item.get("anchor_date")),
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
                    paused=bool(item.get("paused", False)),
                    work_queue_name=work_pool.get("work_queue_name"),
                    triggers=list(item.get("triggers") or []),
                )
            )
        except KeyError as exc:
            raise SpecError(f"{where}: missing required field {exc.args[0]!r}") from exc
    return specs


SERVER_PLACEHOLDERS = {PlaceholderType.BLOCK_DOCUMENT, PlaceholderType.VARIABLE}


def _server_placeholders(value: Any) -> set[str]:
    """The `{{ prefect.blocks.* }}` and `{{ prefect.variables.* }}` placeholders in `value`."""
    if isinstance(value, dict):
        return {p for item in value.values() for p in _server_placeholders(item)}
    if isinstance(value, list):
        return {p for item in value for p in _server_placeholders(item)}
    if isinstance(value, str):
        return {p.name for p in find_placeholders(value) if p.type in SERVER_PLACEHOLDERS}
    return set()


async def resolve_deployments(
    client: PrefectClient | None, path: Path = settings.PREFECT_YAML
) -> list[DeploymentSpec]:
    """As `prefect deploy` reads them: block references and `{{ prefect.variables.* }}` resolved
    on the server first, then the environment's `{{ $VAR }}` placeholders. Without a client (a
    plan from a snapshot) a deployment that needs the server's values is an error."""
    items = []
    for index, item in enumerate(load_raw(path)["deployments"]):
        if client is None:
            if needed := _server_placeholders(item):
                raise SpecError(
                    f"{path.name}: deployments[{index}] reads {', '.join(sorted(needed))} from "
                    "the server, which a plan from a snapshot cannot: plan against the server"
                )
            items.append(item)
            continue
        item = await resolve_block_document_references(item, client=client)
        items.append(await resolve_variables(item, client=client))
    return load_deployments(path, items)
