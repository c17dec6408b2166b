"""One read of the server, shared by every kind during a plan or an apply: the applied record,
what the repository declares and the objects each kind read."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect.client.orchestration import PrefectClient

from deployments.declarations import Declarations
from deployments.kinds.base import Declared, Kind, Ownership, ServerObject
from deployments.record import Record
from deployments.spec import OWNER_TAG_PREFIX


@dataclass
class ServerView:
    client: PrefectClient | None  # None for a plan from a snapshot (deployments/snapshot.py)
    declarations: Declarations
    record: Record
    applied_from: str | None = None  # the repository the record was applied from
    source: str | None = None  # this repository (deployments/source.py)
    declared: dict[str, Declared] = field(default_factory=dict)  # by kind name
    objects: dict[str, list[ServerObject]] = field(default_factory=dict)  # by kind name
    created: set[str] = field(default_factory=set)  # ids apply created or took over
    others: set[str] = field(default_factory=set)  # ids other projects' records list
    adopt: bool = False  # apply --adopt: take over objects of declared names not owned
    trigger_ids: set[str] = field(default_factory=set)  # automations deployments own

    @property
    def owner_taken(self) -> bool:
        """Whether the record in force was applied from another repository under this owner."""
        return bool(self.applied_from and self.source and self.applied_from != self.source)

    def recorded_ids(self, kind: str) -> set[str]:
        return {entry["id"] for entry in self.record.get(kind, {}).values() if entry.get("id")}

    def may_take(self, obj: ServerObject) -> bool:
        """Whether `obj` may be taken over at all: no other project owns it (by its tag or its
        record)."""
        tagged = any(tag.startswith(OWNER_TAG_PREFIX) for tag in obj.tags or [])
        return not tagged and obj.id not in self.others

    def owns(self, kind: Kind, obj: ServerObject) -> bool:
        """Whether the repository owns `obj`: it carries the owner tag, or, for kinds without
        tags, the record lists its id (or the kind vouches for it)."""
        if obj.id in self.created:
            return True
        if kind.ownership is Ownership.RECORD:
            return obj.id in self.recorded_ids(kind.name) or kind.owned_without_record(obj, self)
        return self.declarations.owner_tag in (obj.tags or [])
