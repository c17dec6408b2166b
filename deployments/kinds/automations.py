"""Automations, as `prefect automation create --from-file` reads them: name, description,
enabled, trigger, actions (and actions_on_trigger, actions_on_resolve). An action may name its
notification block as `block: TYPE/NAME` in place of `block_document_id`.

    automations:
      - name: notify-failed-runs
        trigger: {type: event, expect: [prefect.flow-run.Failed], ...}
        actions:
          - type: send-notification
            block: custom-webhook/failure-notifications
            subject: ...

Automation names are not unique: an automation is the repository's only when it carries the
owner tag (added here), and one without it is another object, whatever its name. Automations a
deployment owns (its `triggers` in prefect.yaml) belong to the deployment kind.
"""

from __future__ import annotations

import copy
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.sorting import AutomationSort
from prefect.events.schemas.automations import Automation, AutomationCore
from pydantic import ValidationError

from deployments.declarations import Declarations
from deployments.kinds.base import (
    ApplyError,
    Declared,
    Fields,
    Kind,
    Ownership,
    ServerObject,
)
from deployments.kinds.blocks import Blocks
from deployments.paging import every_page
from deployments.spec import SpecError

BLOCK_REF = "block"
_PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"
ACTION_LISTS = ("actions", "actions_on_trigger", "actions_on_resolve")


def _strip_ids(trigger: dict[str, Any]) -> None:
    """Trigger ids are assigned per object; sets come back in no fixed order."""
    trigger.pop("id", None)
    for key in ("after", "expect", "for_each"):
        if isinstance(trigger.get(key), list):
            trigger[key] = sorted(trigger[key])
    for child in trigger.get("triggers") or []:
        _strip_ids(child)


def automation_fields(automation: AutomationCore, block_refs: dict[str, str]) -> Fields:
    """The comparable shape: ids of blocks as `TYPE/NAME` where the block is known."""
    data = AutomationCore.model_validate(automation.model_dump()).model_dump(mode="json")
    data.pop("name")
    data.pop("owner_resource", None)  # the API never returns it (deployments.py)
    _strip_ids(data["trigger"])
    data["tags"] = sorted(data["tags"])
    for actions in ACTION_LISTS:
        for action in data.get(actions) or []:
            block_id = action.get("block_document_id")
            if block_id is not None:
                action.pop("block_document_id")
                action[BLOCK_REF] = block_refs.get(block_id, block_id)
    return data


def _with_block_ids(item: dict[str, Any], block_ids: dict[str, str]) -> dict[str, Any]:
    """`item` with every `block: TYPE/NAME` turned into `block_document_id`."""
    item = copy.deepcopy(item)
    for actions in ACTION_LISTS:
        for action in item.get(actions) or []:
            if isinstance(action, dict) and BLOCK_REF in action:
                action["block_document_id"] = block_ids.get(action.pop(BLOCK_REF), _PLACEHOLDER_ID)
    return item


def block_refs(item: dict[str, Any]) -> list[str]:
    return [
        action[BLOCK_REF]
        for actions in ACTION_LISTS
        for action in item.get(actions) or []
        if isinstance(action, dict) and BLOCK_REF in action
    ]


def _core(fields: Fields, key: str, block_ids: dict[str, str]) -> AutomationCore:
    missing = [ref for ref in block_refs(fields) if ref not in block_ids]
    if missing:
        raise ApplyError(f"automation {key!r}: no block {missing[0]!r} on the server")
    return AutomationCore.model_validate(_with_block_ids({**fields, "name": key}, block_ids))


class Automations(Kind):
    name = "automation"
    ownership = Ownership.TAG_SHARED_NAMES
    section = "automations"

    def declared(self, declarations: Declarations) -> Declared:
        result = Declared()
        blocks = Blocks().declared(declarations)
        unset_blocks = blocks.skipped_keys
        for where, rendered, unset in declarations.items("automations"):
            name = declarations.name(rendered, where)
            if name in result.objects:
                raise SpecError(f"{where}: a second automation named {name!r}")
            waiting = [ref for ref in block_refs(rendered) if ref in unset_blocks]
            if unset or waiting:
                result.skip(self.name, name, unset, [f"block {ref}" for ref in waiting])
                continue
            rendered["tags"] = sorted({declarations.owner_tag, *(rendered.get("tags") or [])})
            try:
                core = AutomationCore.model_validate(_with_block_ids(rendered, {}))
            except ValidationError as exc:
                error = exc.errors()[0]
                location = ".".join(str(part) for part in error["loc"])
                raise SpecError(f"{where} ({name}): {location}: {error['msg']}") from None
            fields = automation_fields(core, {_PLACEHOLDER_ID: None})
            declared_refs = iter(block_refs(rendered))
            for actions in ACTION_LISTS:  # the declared block names back in place
                for action in fields.get(actions) or []:
                    if BLOCK_REF in action:
                        action[BLOCK_REF] = next(declared_refs, action[BLOCK_REF])
            result.objects[name] = fields
        return result

    async def read(self, client: PrefectClient, view) -> list[ServerObject]:
        automations = await read_automations(client)
        refs = {obj.id: obj.key for obj in view.objects.get(Blocks.name, [])}
        return [
            ServerObject(a.name, str(a.id), automation_fields(a, refs), tags=list(a.tags))
            for a in automations
            if str(a.id) not in view.trigger_ids  # a deployment's (deployments.py)
        ]

    def declaration(self, obj: ServerObject, view) -> dict[str, Any]:
        fields = {k: v for k, v in obj.fields.items() if k != "tags" or v}
        return {"name": obj.key, **fields}

    def _block_ids(self, view) -> dict[str, str]:
        return {obj.key: obj.id for obj in view.objects.get(Blocks.name, [])}

    async def create(self, client: PrefectClient, key: str, fields: Fields, view) -> str:
        return str(await client.create_automation(_core(fields, key, self._block_ids(view))))

    async def update(self, client, obj: ServerObject, fields: Fields, changed, view) -> None:
        await client.update_automation(UUID(obj.id), _core(fields, obj.key, self._block_ids(view)))

    async def delete(self, client: PrefectClient, obj: ServerObject) -> None:
        await client.delete_automation(UUID(obj.id))


async def read_automations(client: PrefectClient) -> list[Automation]:
    return await every_page(
        lambda offset, limit: client.read_automations(
            sort=AutomationSort.CREATED_DESC, limit=limit, offset=offset
        ),
        lambda automation: automation.id,
    )
