"""Deployments: everything prefect.yaml says of each one, keyed `flow/deployment`.

Fields: entrypoint, description, version, tags, parameters and their schema (made strict:
deployments/strict_parameters.py), enforce_parameter_schema, work pool and queue, job variables,
concurrency limit, paused, schedules (every field, by slug), pull steps and event triggers (the
automations the deployment owns). `prefect deploy --all` creates and updates them, as users run
it, with the file's build and push steps; what it leaves different (the strict schema, paused,
schedule fields it does not send, an edit it does not undo) is then set through the API.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentUpdate
from prefect.client.schemas.filters import FlowFilter, FlowFilterId
from prefect.client.schemas.objects import ConcurrencyOptions, DeploymentSchedule
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.sorting import DeploymentSort, FlowSort
from prefect.events import DeploymentTriggerTypes
from prefect.events.schemas.automations import AutomationCore
from prefect.utilities.callables import parameter_schema
from pydantic import TypeAdapter, ValidationError

from deployments import settings
from deployments.declarations import Declarations
from deployments.kinds.automations import automation_fields
from deployments.kinds.base import (
    ApplyError,
    Declared,
    Fields,
    Kind,
    Ownership,
    ServerObject,
)
from deployments.paging import every_page
from deployments.spec import (
    OWNER_TAG_PREFIX,
    DeploymentSpec,
    ScheduleSpec,
    SpecError,
    chosen_target,
    load_flow,
    load_raw,
    pull_steps,
    resolve_deployments,
)
from deployments.strict_parameters import strict

PREFECT = str(Path(sys.executable).with_name("prefect"))  # the CLI of this environment
TRIGGER = TypeAdapter(DeploymentTriggerTypes)
# The fields DeploymentUpdate sets as they are, by the name the comparison gives them.
PLAIN_FIELDS = {
    "entrypoint": "entrypoint",
    "description": "description",
    "version": "version",
    "tags": "tags",
    "parameters": "parameters",
    "parameter_schema": "parameter_openapi_schema",
    "enforce_parameter_schema": "enforce_parameter_schema",
    "work_pool": "work_pool_name",
    "work_queue": "work_queue_name",
    "job_variables": "job_variables",
    "paused": "paused",
    "pull_steps": "pull_steps",
}


def _schedule_fields(
    schedule: dict[str, Any], slug: str | None, active: bool, parameters, limit, anchor: bool
) -> Fields:
    if not anchor:  # an anchor the repository does not declare is the server's choice
        schedule = {k: v for k, v in schedule.items() if k != "anchor_date"}
    return {
        "slug": slug,
        "schedule": schedule,
        "active": active,
        "parameters": parameters or {},
        "max_scheduled_runs": limit,
    }


def declared_schedule(spec: ScheduleSpec) -> Fields:
    return _schedule_fields(
        spec.schedule.model_dump(mode="json"),
        spec.slug,
        spec.active,
        spec.parameters,
        spec.max_scheduled_runs,
        spec.anchor_declared,
    )


def _by_slug(schedules: list[Fields]) -> list[Fields]:
    return sorted(schedules, key=lambda schedule: schedule["slug"] or "")


async def _triggers(
    client: PrefectClient, deployment: DeploymentResponse, declared: Fields
) -> list[Fields]:
    """The automations `prefect deploy` made of the deployment's triggers: related to the
    deployment and named as a declared trigger or as Prefect names them (`NAME__automation_N`).
    The API does not say which related automations the deployment owns: an automation that
    runs it under another name, or with tags, is not one of its triggers."""
    names = {trigger["name"] for trigger in declared.get("triggers") or []}
    generated = re.compile(rf"^{re.escape(deployment.name)}__automation_\d+$")
    related = await client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
    return [
        {**_trigger_fields(automation, str(deployment.id)), "id": str(automation.id)}
        for automation in related
        if (automation.name in names or generated.match(automation.name))
        and not automation.tags  # `prefect deploy` tags none; ours carry the owner tag
        and _runs_deployment(automation, deployment.id)
    ]


def _runs_deployment(automation, deployment_id: UUID) -> bool:
    return any(
        getattr(action, "deployment_id", None) == deployment_id for action in automation.actions
    )


def _trigger_fields(automation, owner_id: str | None) -> Fields:
    fields = automation_fields(automation, {})
    fields["name"] = automation.name
    for action in fields.get("actions") or []:
        if action.get("deployment_id") in (owner_id, str(UUID(int=0))):
            action.pop("deployment_id")  # the deployment itself
    return fields


def declared_triggers(spec: DeploymentSpec, where: str) -> list[Fields]:
    """The deployment's `triggers` as the automations `prefect deploy` makes of them."""
    triggers = []
    for index, item in enumerate(copy.deepcopy(spec.triggers), start=1):
        item.setdefault("name", f"{spec.name}__automation_{index}")
        try:
            trigger = TRIGGER.validate_python(item)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise SpecError(
                f"{where}.triggers[{index - 1}]: {error['loc']}: {error['msg']}"
            ) from None
        trigger.set_deployment_id(UUID(int=0))
        triggers.append(_trigger_fields(trigger.as_automation(), None))
    return sorted(triggers, key=lambda t: t["name"])


def declared_deployment(
    spec: DeploymentSpec, flow: Flow, steps: list[dict[str, Any]], where: str
) -> Fields:
    """The fields `prefect deploy` gives this deployment of `flow`, plus the strict parameter
    schema that apply sets right after it."""
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
        "work_queue": spec.work_queue_name or "default",
        "job_variables": spec.job_variables,
        "concurrency_limit": concurrency,
        "paused": spec.paused,
        "schedules": _by_slug([declared_schedule(s) for s in spec.schedules]),
        "pull_steps": steps,
        "triggers": declared_triggers(spec, where),
    }


def _server_schedule(schedule: DeploymentSchedule, anchored: set[str]) -> Fields:
    return _schedule_fields(
        schedule.schedule.model_dump(mode="json"),
        schedule.slug,
        schedule.active,
        schedule.parameters,
        schedule.max_scheduled_runs,
        schedule.slug in anchored,
    )


def server_deployment(
    deployment: DeploymentResponse, triggers: list[Fields], anchored: set[str]
) -> Fields:
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
        "work_queue": deployment.work_queue_name,
        "job_variables": deployment.job_variables,
        "concurrency_limit": concurrency,
        "paused": deployment.paused,
        "schedules": _by_slug([_server_schedule(s, anchored) for s in deployment.schedules]),
        "pull_steps": deployment.pull_steps or [],
        "triggers": sorted(triggers, key=lambda t: t["name"]),
    }


def flow_in_repository(entrypoint: str | None, flow_name: str) -> bool:
    """Whether `entrypoint` names a flow of this repository called `flow_name`."""
    path, _, function = (entrypoint or "").partition(":")
    if not function or not (settings.REPO_ROOT / path).is_file():
        return False
    try:
        return load_flow(settings.REPO_ROOT / path, function).name == flow_name
    except Exception:  # noqa: BLE001 - any import error means: not this repository's flow
        return False


def schedule_declaration(schedule: Fields, index: int) -> dict[str, Any]:
    """A server schedule as prefect.yaml declares one (a slug made up where it has none)."""
    timing = {k: v for k, v in schedule["schedule"].items() if v is not None}
    interval = timing.get("interval")
    if isinstance(interval, float) and interval.is_integer():  # 300.0 seconds as prefect.yaml's 300
        timing["interval"] = int(interval)
    limit = schedule["max_scheduled_runs"]
    return {
        "slug": schedule["slug"] or f"schedule-{index}",
        **timing,
        "active": schedule["active"],
        "parameters": schedule["parameters"],
        **({"max_scheduled_runs": limit} if limit is not None else {}),
    }


class Deployments(Kind):
    name = "deployment"
    ownership = Ownership.TAG
    section = "deployments"

    async def declare(self, client: PrefectClient, declarations: Declarations) -> Declared:
        """Read as `prefect deploy` reads them (block and variable references resolved on the
        server), importing each flow."""
        steps = pull_steps(declarations.path)
        result = Declared()
        for index, spec in enumerate(await resolve_deployments(client, declarations.path)):
            flow = spec.load_flow()
            where = f"{declarations.path.name}: deployments[{index}]"
            result.objects[f"{flow.name}/{spec.name}"] = declared_deployment(
                spec, flow, steps, where
            )
        return result

    async def read(self, client: PrefectClient, view) -> list[ServerObject]:
        """Per flow (names are unique within one), each flow's deployments by name: a stable
        order, and no deployment whose flow the read has not seen."""
        flows = await every_page(
            lambda offset, limit: client.read_flows(
                sort=FlowSort.NAME_ASC, limit=limit, offset=offset
            ),
            lambda flow: flow.id,
        )
        declared = view.declared.get(self.name)
        view.trigger_ids = set()
        objects = []
        for flow in flows:
            deployments = await every_page(
                lambda offset, limit, flow=flow: client.read_deployments(
                    flow_filter=FlowFilter(id=FlowFilterId(any_=[flow.id])),
                    sort=DeploymentSort.NAME_ASC,
                    limit=limit,
                    offset=offset,
                ),
                lambda deployment: deployment.id,
            )
            for deployment in deployments:
                key = f"{flow.name}/{deployment.name}"
                declared_fields = (declared.objects.get(key) if declared else None) or {}
                anchored = {
                    s["slug"]
                    for s in declared_fields.get("schedules") or []
                    if "anchor_date" in s["schedule"]
                }
                triggers = (
                    await _triggers(client, deployment, declared_fields) if declared_fields else []
                )
                view.trigger_ids |= {t.pop("id") for t in triggers}
                fields = server_deployment(deployment, triggers, anchored)
                objects.append(
                    ServerObject(key, str(deployment.id), fields, tags=list(deployment.tags))
                )
        return objects

    def declaration(self, obj: ServerObject, view) -> dict[str, Any] | None:
        """A deployment of one of this repository's flows, as a prefect.yaml entry that gives it
        the file's pull steps (its code is now this repository's) and no triggers (the
        automations they made are imported as automations); None for another repository's."""
        fields = obj.fields
        flow_name, _, name = obj.key.partition("/")
        if not flow_in_repository(fields["entrypoint"], flow_name):
            return None
        work_pool = {"name": fields["work_pool"], "work_queue_name": fields["work_queue"]}
        if fields["job_variables"]:
            work_pool["job_variables"] = fields["job_variables"]
        optional = {
            "description": fields["description"],
            "concurrency_limit": fields["concurrency_limit"],
        }
        tags = [tag for tag in fields["tags"] if not tag.startswith(OWNER_TAG_PREFIX)]
        schedules = fields["schedules"]
        return {
            "name": name,
            "entrypoint": fields["entrypoint"],
            "version": fields["version"] or "0",  # the repository requires one
            **{key: value for key, value in optional.items() if value is not None},
            "tags": [view.declarations.owner_tag, *tags],
            "parameters": fields["parameters"],
            "enforce_parameter_schema": fields["enforce_parameter_schema"],
            "work_pool": work_pool,
            "paused": fields["paused"],
            "schedules": [schedule_declaration(s, n) for n, s in enumerate(schedules, start=1)],
        }

    async def apply_changes(self, client: PrefectClient, changes, view) -> list[str]:
        """`prefect deploy --all` for what is created or changed, then the API for what it
        left different."""
        if not changes:
            return []
        names = sorted(change.name for change in changes)
        deploy(view.declarations.path, names)
        done = [f"deployed {', '.join(names)}"]
        after = {obj.key: obj for obj in await self.read(client, view)}
        repaired = []
        for key in names:
            fields = view.declared[self.name].objects[key]
            obj = after.get(key)
            if obj is None:
                raise ApplyError(f"`prefect deploy` did not create deployment {key}")
            view.created.add(obj.id)
            differing = {name for name, value in fields.items() if obj.fields.get(name) != value}
            if differing:
                await self.update(client, obj, fields, differing, view)
                repaired.append(f"{key} ({', '.join(sorted(differing))})")
        if repaired:
            done.append(f"set through the API: {'; '.join(repaired)}")
        return done

    async def update(
        self, client, obj: ServerObject, fields: Fields, changed: set[str], view
    ) -> None:
        deployment_id = UUID(obj.id)
        plain = {PLAIN_FIELDS[name]: fields[name] for name in changed if name in PLAIN_FIELDS}
        if "concurrency_limit" in changed:
            limit = fields["concurrency_limit"]
            plain["concurrency_limit"] = limit["limit"] if limit else None
            plain["concurrency_options"] = (
                ConcurrencyOptions(collision_strategy=limit["collision_strategy"])
                if limit
                else None
            )
        if plain:
            await client.update_deployment(deployment_id, DeploymentUpdate(**plain))
        if "schedules" in changed:
            await _set_schedules(client, obj, fields["schedules"])
        if "triggers" in changed:
            await set_triggers(client, deployment_id, fields["triggers"])

    async def delete(self, client: PrefectClient, obj: ServerObject) -> None:
        """The deployment and the automations its triggers made (the server keeps them)."""
        await client.delete_resource_owned_automations(f"prefect.deployment.{obj.id}")
        await client.delete_deployment(UUID(obj.id))


async def _set_schedules(client: PrefectClient, obj: ServerObject, declared: list[Fields]) -> None:
    """Each declared schedule as declared, by slug; the server's others deleted."""
    deployment: DeploymentResponse = await client.read_deployment(UUID(obj.id))
    existing = {s.slug: s for s in deployment.schedules}
    for schedule in declared:
        body = {
            "schedule": schedule["schedule"],
            "active": schedule["active"],
            "parameters": schedule["parameters"],
            "max_scheduled_runs": schedule["max_scheduled_runs"],
            "slug": schedule["slug"],
        }
        current = existing.pop(schedule["slug"], None)
        if current is None:
            await client.create_deployment_schedules(
                deployment.id, [DeploymentScheduleCreate.model_validate(body)]
            )
        else:
            await client.request(  # the client raises for an error status
                "PATCH",
                "/deployments/{id}/schedules/{schedule_id}",
                path_params={"id": deployment.id, "schedule_id": current.id},
                json=body,
            )
    for schedule in existing.values():
        await client.delete_deployment_schedule(deployment.id, schedule.id)


async def set_triggers(client: PrefectClient, deployment_id: UUID, triggers: list[Fields]) -> None:
    """As `prefect deploy` does: the automations the deployment owns replaced by `triggers`."""
    await client.delete_resource_owned_automations(f"prefect.deployment.{deployment_id}")
    for trigger in triggers:
        automation = copy.deepcopy(trigger)
        for action in automation.get("actions") or []:
            if action.get("type") == "run-deployment" and action.get("source") == "selected":
                action.setdefault("deployment_id", str(deployment_id))
        automation["owner_resource"] = f"prefect.deployment.{deployment_id}"
        await client.create_automation(AutomationCore.model_validate(automation))


def deploy(path: Path, names: list[str]) -> None:
    """Prefect's own deploy machinery, as users run it, from the repository root, for the
    deployments `names` (`flow/deployment`). With a target, `prefect deploy` reads the file as
    the target sees it (deployments/targets.py), written to a temporary file."""
    # Build steps run commands as `python ...`: this environment's, as if it were activated.
    path_env = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with tempfile.TemporaryDirectory(prefix="prefect-target-") as directory:
        if chosen_target(path) is not None:
            effective = Path(directory) / path.name
            effective.write_text(yaml.safe_dump(load_raw(path), sort_keys=False))
            path = effective
        result = subprocess.run(
            [PREFECT, "--no-prompt", "deploy", "--prefect-file", str(path)]
            + [option for name in names for option in ("--name", name)],
            cwd=settings.REPO_ROOT,
            env={**os.environ, "PATH": path_env},
            capture_output=True,
            text=True,
            timeout=600,
        )
    if result.returncode != 0:
        raise ApplyError(
            f"`prefect deploy` failed (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
