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
                )
            )
        except KeyError as exc:
            raise SpecError(f"{where}: missing required field {exc.args[0]!r}") from exc
    return specs
