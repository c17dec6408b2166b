"""The difference between the repository and the server, as Terraform's plan shows it: one loop
over the table of kinds (deployments/kinds/).

For each kind: what apply would create, update field by field, and delete (`--prune`: owned and
no longer declared). A field the server changed since the last apply is drift, shown with both
values (secret fields never are). What the repository does not own is never changed or deleted:
for kinds with unique names, an object of a declared name that is not owned is a conflict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from deployments.declarations import Declarations
from deployments.kinds import KINDS
from deployments.kinds.base import SECRET, WITHHELD, Fields, Kind, Ownership, ServerObject, Skipped
from deployments.record import Applied, digest, other_projects_ids, read_record
from deployments.source import repository_source
from deployments.view import ServerView

ACTIONS = ("create", "update", "delete")


@dataclass(frozen=True)
class FieldChange:
    field: str
    server: Any
    declared: Any
    drift: bool  # the server's value changed since the last apply


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: str  # create, update, delete, conflict
    fields: list[FieldChange] = field(default_factory=list)
    server_id: str | None = None  # of the object on the server, when there is one
    note: str | None = None  # why, where the action alone does not say

    @property
    def drifted(self) -> bool:
        return any(change.drift for change in self.fields)


@dataclass(frozen=True)
class Plan:
    server: str
    owner_tag: str
    changes: list[Change]
    foreign: int  # objects on the server this repository does not own, left alone
    prune: bool  # deletes of undeclared objects count as changes only when they would be applied
    skipped: list[Skipped] = field(default_factory=list)

    def of(self, action: str, kind: str | None = None) -> list[Change]:
        return [c for c in self.changes if c.action == action and kind in (None, c.kind)]

    @property
    def conflicts(self) -> list[Change]:
        return self.of("conflict")

    def pending(self, change: Change) -> bool:
        """Whether apply would carry `change` out: a delete of an undeclared object only with
        --prune (a second owned object of a declared name always). A conflict counts: apply
        stops on it, or takes it over with --adopt."""
        return change.action != "delete" or self.prune or change.note == DUPLICATE

    @property
    def has_changes(self) -> bool:
        return any(self.pending(c) for c in self.changes)

    def to_json(self) -> str:
        summary = {action: len(self.of(action)) for action in ACTIONS}
        summary["drift"] = sum(change.drifted for change in self.changes)
        summary["conflict"] = len(self.conflicts)
        summary["skipped"] = len(self.skipped)
        return json.dumps(
            {**asdict(self), "summary": summary, "has_changes": self.has_changes}, indent=2
        )


OWNER = "owner"  # the kind of the one change that is not an object's: the owner itself
OWNER_TAKEN = (
    "the server holds this owner's objects as applied from another repository: give "
    "prefect.yaml a `name` of its own, or, if this is that repository at a new address, "
    "apply --adopt takes the owner over"
)
DUPLICATE = "a second owned object of a declared name"
ADOPTABLE = (
    "one not owned by this repository has this name: apply creates another, apply --adopt "
    "takes that one over"
)


def _shown(value: Any, secret: bool) -> Any:
    return SECRET if secret and value is not None else value


def field_changes(
    kind: Kind, key: str, declared: Fields, server: Fields, applied: dict[str, str] | None
) -> list[FieldChange]:
    secrets = kind.secret_fields(key, declared)
    changes = []
    for name, value in declared.items():
        secret = name in secrets
        if server.get(name) == value or (secret and server.get(name) == WITHHELD):
            continue
        recorded = (applied or {}).get(name)
        drift = recorded is not None and digest(server.get(name)) != recorded
        changes.append(
            FieldChange(
                name, _shown(server.get(name), secret), _shown(value, secret), drift and not secret
            )
        )
    return changes


def _server_fields(kind: Kind, obj: ServerObject) -> list[FieldChange]:
    """Every field of an object about to be deleted, as the server holds it."""
    secrets = kind.secret_fields(obj.key, obj.fields)
    return [
        FieldChange(name, _shown(value, name in secrets), None, False)
        for name, value in obj.fields.items()
    ]


def compare(kind: Kind, view: ServerView) -> tuple[list[Change], int]:
    """The changes of one kind, and how many of its objects are foreign."""
    declared = view.declared[kind.name]
    applied = view.record.get(kind.name, {})
    by_key: dict[str, list[ServerObject]] = {}
    for obj in view.objects.get(kind.name, []):
        by_key.setdefault(obj.key, []).append(obj)
    changes, foreign = [], 0
    for key, fields in declared.objects.items():
        candidates = by_key.pop(key, [])
        owned = [obj for obj in candidates if view.owns(kind, obj)]
        adoptable = None
        if kind.ownership is Ownership.TAG_SHARED_NAMES:
            foreign += len(candidates) - len(owned)
            adoptable = next(
                (obj.id for obj in candidates if obj not in owned and view.may_take(obj)), None
            )
            candidates = owned
        if not candidates:
            secrets = kind.secret_fields(key, fields)
            created = [
                FieldChange(f, None, _shown(v, f in secrets), False) for f, v in fields.items()
            ]
            note = ADOPTABLE if adoptable else None
            changes.append(Change(kind.name, key, "create", created, adoptable, note))
            continue
        obj = (owned or candidates)[0]
        others = owned[1:] if kind.ownership is Ownership.TAG_SHARED_NAMES else []
        differing = field_changes(
            kind, key, fields, obj.fields, (applied.get(key) or {}).get("fields")
        )
        pristine = kind.ownership is Ownership.RECORD and obj.pristine and view.may_take(obj)
        problem = kind.unappliable(obj, fields)
        if (obj in owned or pristine) and not problem:
            if differing:
                changes.append(Change(kind.name, key, "update", differing, obj.id))
        else:
            changes.append(Change(kind.name, key, "conflict", differing, obj.id, problem))
        for other in others:  # only tag-shared kinds keep several objects of one name
            changes.append(
                Change(
                    kind.name,
                    key,
                    "delete",
                    _server_fields(kind, other),
                    other.id,
                    DUPLICATE,
                )
            )
    for key, objects in by_key.items():
        for obj in objects:
            if not view.owns(kind, obj):
                foreign += 1
            elif key not in declared.skipped_keys:
                changes.append(Change(kind.name, key, "delete", _server_fields(kind, obj), obj.id))
    return changes, foreign


async def declared_view(
    client, declarations: Declarations, applied: Applied, others: set[str]
) -> ServerView:
    """A view with the record in force, the ids other projects own and what the repository
    declares, kind by kind; the server's objects are read next (read_view), or come from a
    snapshot (deployments/snapshot.py, without a client)."""
    view = ServerView(client, declarations, applied.record, applied.source, repository_source())
    view.others = others
    for kind in KINDS:
        view.declared[kind.name] = await kind.declare(client, declarations)
    return view


async def read_view(client, declarations: Declarations) -> ServerView:
    """What the repository declares and what the server holds, kind by kind."""
    applied = await read_record(client, declarations.owner_slug)
    others = await other_projects_ids(client, declarations.owner_slug)
    view = await declared_view(client, declarations, applied, others)
    for kind in KINDS:
        view.objects[kind.name] = await kind.read(client, view)
    return view


def owner_change(view: ServerView) -> list[Change]:
    """A conflict when the owner's record was applied from another repository: the two share a
    name, and each apply would prune or rewrite the other's objects."""
    if not view.owner_taken:
        return []
    source = FieldChange("source", view.applied_from, view.source, drift=False)
    return [Change(OWNER, view.declarations.owner_tag, "conflict", [source], note=OWNER_TAKEN)]


def make_plan(view: ServerView, api_url: str, prune: bool) -> Plan:
    changes, foreign = owner_change(view), 0
    for kind in KINDS:
        kind_changes, kind_foreign = compare(kind, view)
        changes += kind_changes
        foreign += kind_foreign
    skipped = [s for kind in KINDS for s in view.declared[kind.name].skipped]
    return Plan(api_url, view.declarations.owner_tag, changes, foreign, prune, skipped)


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


def _note(plan: Plan, change: Change) -> str:
    if change.action == "delete":
        if change.note:
            return change.note
        note = "no longer declared" + (
            "; its scheduled runs are deleted too" if change.kind == "deployment" else ""
        )
        return note if plan.prune else note + "; kept without --prune"
    if change.action == "conflict" and change.note:
        return change.note
    if change.action == "conflict":
        return (
            "exists on the server but is not owned by this repository: apply leaves it alone "
            "and stops (apply --adopt takes it over)"
        )
    if change.note == ADOPTABLE:
        return ADOPTABLE
    if change.action == "update" and change.drifted:
        return "changed on the server since the last apply (drift)"
    return ""


def render(plan: Plan) -> str:
    """The plan for a person: one line per object, indented lines per changed field."""
    lines = [f"Plan against {plan.server} (owner: {plan.owner_tag!r})"]
    symbols = {"create": "+", "update": "~", "delete": "-", "conflict": "!"}
    for change in plan.changes:
        note = _note(plan, change)
        lines.append(
            f"  {symbols[change.action]} {change.action} {change.kind} {change.name}"
            + (f": {note}" if note else "")
        )
        lines += [_field_line(change.action, item) for item in change.fields]
    for skipped in plan.skipped:
        lines.append(f"  ? not declared for now: {skipped.kind} {skipped.key} ({skipped.reason})")
    if plan.foreign:
        lines.append(f"  = {plan.foreign} object(s) not owned by this repository, left alone")
    summary = ", ".join(f"{len(plan.of(action))} to {action}" for action in ACTIONS)
    drift = sum(change.drifted for change in plan.changes)
    if plan.has_changes:
        lines.append(f"Plan: {summary}; {drift} drifted; {len(plan.conflicts)} conflict(s).")
    elif plan.of("delete"):
        lines.append("No changes without --prune: the declared objects match the repository.")
    else:
        lines.append("No changes: the server matches the repository.")
    return "\n".join(lines)
