"""Automations kept in the repository and applied idempotently: `python -m deployments.automations`.

`make up` and the compose `deploy` service run it after `prefect deploy --all`. Each automation
is found by name: created when missing, updated in place when present, duplicates removed.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from deployments import settings
from deployments.spec import SpecError, declared_automations, owner_tag

ZOMBIE_AUTOMATION_NAME = "crash-zombie-flow-runs"


def zombie_flow_runs(owner_tag: str) -> AutomationCore:
    """Prefect's documented zombie detection for self-hosted servers: a flow run that stops
    sending heartbeats (its process or machine died) without reaching a final state is marked
    CRASHED, so it cannot stay RUNNING forever. The window follows the heartbeat setting, which
    the worker's flow-run processes read from the same variable."""
    config = settings.current()
    return AutomationCore(
        name=ZOMBIE_AUTOMATION_NAME,
        tags=[owner_tag],
        description=(
            f"Mark a flow run CRASHED when it sends no heartbeat for {config.zombie_after_s} s "
            f"(heartbeats every {config.flow_heartbeat_seconds} s)."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=config.zombie_after_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"No heartbeat for {config.zombie_after_s} s: the flow-run process or its "
                    "machine stopped without reporting a final state."
                ),
            )
        ],
    )


# Every automation the repository can declare, by name; a prefect file lists the ones it owns in
# `definitions.automations` (spec.declared_automations).
AUTOMATIONS = {ZOMBIE_AUTOMATION_NAME: zombie_flow_runs}


def repository_automations(path: Path = settings.PREFECT_YAML) -> list[AutomationCore]:
    """The automations `path` declares, each marked with its ownership tag."""
    tag = owner_tag(path)
    names = declared_automations(path)
    unknown = sorted(set(names) - set(AUTOMATIONS))
    if unknown:
        raise SpecError(
            f"{path.name}: definitions.automations: no automation named {unknown[0]!r} in "
            f"deployments/automations.py (known: {', '.join(sorted(AUTOMATIONS))})"
        )
    return [AUTOMATIONS[name](tag) for name in names]


async def _apply_one(client: PrefectClient, automation: AutomationCore) -> UUID:
    existing = await client.read_automations_by_name(automation.name)
    if not existing:
        return await client.create_automation(automation)
    keep, *duplicates = existing
    await client.update_automation(keep.id, automation)
    for duplicate in duplicates:
        await client.delete_automation(duplicate.id)
    return keep.id


async def apply_automations(path: Path = settings.PREFECT_YAML) -> dict[str, UUID]:
    async with get_client() as client:
        return {a.name: await _apply_one(client, a) for a in repository_automations(path)}


def main() -> int:
    try:
        applied = asyncio.run(apply_automations())
    except Exception as exc:  # the API's answer, e.g. unreachable server or bad credentials
        print(f"error: could not apply the automations: {exc}", file=sys.stderr)
        return 1
    for name, automation_id in applied.items():
        print(f"automation {name!r} applied ({automation_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
