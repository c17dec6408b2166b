"""The difference between prefect.yaml and the server, as Terraform's plan shows it.

For deployments and automations: what `apply` would create, update field by field, and delete
(`--prune`: owned and no longer declared). A field the server changed since the last `apply`
(an edit made in the UI or the API) is drift, shown with both values. What the server has
without the repository's ownership tag is foreign: never changed or deleted, and reported as a
conflict when it carries a declared name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from deployments.state import Declared, Fields, ServerState, digest

DEPLOYMENT = "deployment"
AUTOMATION = "automation"


@dataclass(frozen=True)
class FieldChange:
    field: str
    server: Any
    declared: Any
    drift: bool  # the server's value changed since the last apply


@dataclass(frozen=True)
class Change:
    kind: str  # DEPLOYMENT or AUTOMATION
    name: str
    action: str  # create, update, delete, conflict
    fields: list[FieldChange] = field(default_factory=list)
    server_id: str | None = None  # of the object on the server, when there is one

    @property
    def drifted(self) -> bool:
        return any(change.drift for change in self.fields)


@dataclass(frozen=True)
class Plan:
    server: str
    owner_tag: str
    pools_to_create: list[str]
    changes: list[Change]
    foreign: int  # objects on the server this repository does not own, left alone
    prune: bool  # deletes count as changes only when they would be applied

    def of(self, action: str) -> list[Change]:
        return [change for change in self.changes if change.action == action]

    @property
    def conflicts(self) -> list[Change]:
        return self.of("conflict")

    @property
    def has_changes(self) -> bool:
        pending = [c for c in self.changes if c.action != "delete" or self.prune]
        return bool(self.pools_to_create or pending)

    def to_json(self) -> str:
        summary = {action: len(self.of(action)) for action in ("create", "update", "delete")}
        summary["drift"] = sum(change.drifted for change in self.changes)
        summary["conflict"] = len(self.conflicts)
        return json.dumps(
            {**asdict(self), "summary": summary, "has_changes": self.has_changes}, indent=2
        )


def _field_changes(
    declared: Fields, server: Fields, applied: dict[str, str] | None
) -> list[FieldChange]:
    changes = []
    for name, value in declared.items():
        if server.get(name) == value:
            continue
        recorded = (applied or {}).get(name)
        drift = recorded is not None and digest(server.get(name)) != recorded
        changes.append(FieldChange(name, server.get(name), value, drift))
    return changes


def _compare(
    kind: str,
    declared: dict[str, Fields],
    server: dict[str, tuple[Any, Fields]],
    applied: dict[str, dict[str, str]],
    owner_tag: str,
) -> tuple[list[Change], int]:
    changes, foreign = [], 0
    for name, fields in declared.items():
        if name not in server:
            created = [FieldChange(f, None, value, drift=False) for f, value in fields.items()]
            changes.append(Change(kind, name, "create", created))
            continue
        obj, server_fields = server[name]
        if owner_tag not in server_fields["tags"]:
            changes.append(Change(kind, name, "conflict", server_id=str(obj.id)))
            continue
        field_changes = _field_changes(fields, server_fields, applied.get(name))
        if field_changes:
            changes.append(Change(kind, name, "update", field_changes, str(obj.id)))
    for name, (obj, server_fields) in server.items():
        if name in declared:
            continue
        if owner_tag in server_fields["tags"]:
            deleted = [
                FieldChange(f, value, None, drift=False) for f, value in server_fields.items()
            ]
            changes.append(Change(kind, name, "delete", deleted, str(obj.id)))
        else:
            foreign += 1
    return changes, foreign


def make_plan(declared: Declared, server: ServerState, api_url: str, prune: bool) -> Plan:
    deployments, foreign_deployments = _compare(
        DEPLOYMENT,
        declared.deployments,
        server.deployments,
        server.applied.get(DEPLOYMENT, {}),
        declared.owner_tag,
    )
    automations, foreign_automations = _compare(
        AUTOMATION,
        declared.automations,
        server.automations,
        server.applied.get(AUTOMATION, {}),
        declared.owner_tag,
    )
    return Plan(
        server=api_url,
        owner_tag=declared.owner_tag,
        pools_to_create=sorted(server.missing_pools),
        changes=deployments + automations,
        foreign=foreign_deployments + foreign_automations,
        prune=prune,
    )


def _value(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."


def _field_line(action: str, item: FieldChange) -> str:
    if action == "create":
        return f"      {item.field}: {_value(item.declared)}"
    if action == "delete":
        return f"      {item.field}: {_value(item.server)}"
    label = "drift" if item.drift else "change"
    return (
        f"      {item.field} ({label}): server {_value(item.server)} -> declared "
        f"{_value(item.declared)}"
    )


def render(plan: Plan) -> str:
    """The plan for a person: one line per object, indented lines per changed field."""
    lines = [f"Plan against {plan.server} (owned: tag {plan.owner_tag!r})"]
    lines += [f"  + create work pool {name}" for name in plan.pools_to_create]
    symbols = {"create": "+", "update": "~", "delete": "-", "conflict": "!"}
    for change in plan.changes:
        what = f"{change.kind} {change.name}"
        if change.action == "delete":
            note = "no longer declared" + (
                "; its scheduled runs are deleted too" if change.kind == DEPLOYMENT else ""
            )
            if not plan.prune:
                note += "; kept without --prune"
        elif change.action == "conflict":
            note = (
                f"exists on the server without the tag {plan.owner_tag!r}: apply leaves it alone "
                "and stops (apply --adopt takes it over)"
            )
        elif change.action == "update" and change.drifted:
            note = "changed on the server since the last apply (drift)"
        else:
            note = ""
        lines.append(
            f"  {symbols[change.action]} {change.action} {what}" + (f": {note}" if note else "")
        )
        for item in change.fields:
            lines.append(_field_line(change.action, item))
    if plan.foreign:
        lines.append(f"  = {plan.foreign} object(s) not owned by this repository, left alone")
    summary = ", ".join(
        f"{len(plan.of(action))} to {action}" for action in ("create", "update", "delete")
    )
    drift = sum(change.drifted for change in plan.changes)
    if plan.has_changes:
        lines.append(f"Plan: {summary}; {drift} drifted; {len(plan.conflicts)} conflict(s).")
    elif plan.of("delete"):
        lines.append("No changes without --prune: the declared objects match prefect.yaml.")
    else:
        lines.append("No changes: the server matches prefect.yaml.")
    return "\n".join(lines)
