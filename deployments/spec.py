"""prefect.yaml, read once: the one list of deployments that the CLI, the registration script,
the serve script and the tests share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from deployments import settings


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
    schedules: list[ScheduleSpec] = field(default_factory=list)
    concurrency: ConcurrencySpec | None = None

    @property
    def entrypoint_path(self) -> Path:
        return settings.REPO_ROOT / self.entrypoint.split(":", 1)[0]

    @property
    def flow_function(self) -> str:
        return self.entrypoint.split(":", 1)[1]


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


def load_deployments(path: Path = settings.PREFECT_YAML) -> list[DeploymentSpec]:
    specs = []
    for index, item in enumerate(load_raw(path)["deployments"]):
        where = f"{path.name}: deployments[{index}]"
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
                    job_variables=dict((item.get("work_pool") or {}).get("job_variables") or {}),
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
