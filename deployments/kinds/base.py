"""What every kind of server object shares: how it is owned, its comparable shape, and the
five things a kind says about itself (declared, read, created, updated, deleted).

A kind turns what the repository declares and what the server holds into the same shape: a key
that names the object (unique per kind) and a flat mapping of field name to plain JSON data. plan
compares the two mappings field by field; apply calls the kind to create, update or delete. A new
kind is one subclass in deployments/kinds/ and one entry in `deployments.kinds.KINDS`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

    from deployments.declarations import Declarations
    from deployments.view import ServerView

Fields = dict[str, Any]

SECRET = "(secret)"  # what plan, --json and logs show in place of a secret value
WITHHELD = "(withheld)"  # a secret value in a snapshot (deployments/snapshot.py): not known


class Ownership(enum.Enum):
    """How the repository knows an object on the server is its own."""

    # The object carries the owner tag; names are unique, so a declared name on an object
    # without the tag is a conflict (deployments, variables).
    TAG = "tag"
    # The object carries the owner tag; names are not unique, so an object without the tag is
    # simply another object, whatever its name (automations).
    TAG_SHARED_NAMES = "tag, names not unique"
    # No tags: the applied record lists the ids the repository created or adopted; a declared
    # name held by another id is a conflict (work pools, work queues, concurrency limits, blocks).
    RECORD = "applied record"


@dataclass
class ServerObject:
    key: str
    id: str
    fields: Fields
    tags: list[str] | None = None  # for the tag-owned kinds
    # Holds nothing anyone configured (a pool a worker created for a declared name with its
    # type's defaults): taken over without --adopt.
    pristine: bool = False


@dataclass
class Skipped:
    """A declared object left out because an environment variable it needs is unset."""

    kind: str
    key: str
    reason: str


@dataclass
class Declared:
    """What one kind declares: fields by key, and the objects left out for now."""

    objects: dict[str, Fields] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    def skip(self, kind: str, key: str, unset: list[str], waits_for: list[str] = ()) -> None:
        """Leave `key` out: the environment variables `unset` are not set, or it needs the
        objects `waits_for`, which are left out too."""
        reasons = [f"{', '.join(unset)} not set"] if unset else []
        reasons += [f"needs {what}, left out" for what in waits_for]
        self.skipped.append(Skipped(kind, key, "; ".join(reasons)))

    @property
    def skipped_keys(self) -> set[str]:
        return {skipped.key for skipped in self.skipped}


class ApplyError(RuntimeError):
    """A step failed or was refused; the message says which and what to do."""


class Kind:
    """One kind of server object. Subclasses set the class attributes and the methods."""

    name: str  # "work pool", as plan prints it
    ownership: Ownership
    section: str | None = None  # where the prefect file declares it, when at the top level

    def declared(self, declarations: Declarations) -> Declared:
        raise NotImplementedError

    async def declare(self, client: PrefectClient, declarations: Declarations) -> Declared:
        """What the repository declares; a kind whose declaration needs the server (templating
        against its variables and blocks) overrides this instead of `declared`."""
        return self.declared(declarations)

    async def read(self, client: PrefectClient, view: ServerView) -> list[ServerObject]:
        """Every object of this kind on the server, read page by page in a stable order."""
        raise NotImplementedError

    def secret_fields(self, key: str, fields: Fields) -> set[str]:
        """Fields whose values are never shown or recorded."""
        return set()

    def unappliable(self, obj: ServerObject, fields: Fields) -> str | None:
        """Why `obj` cannot be made to match `fields` in place (plan shows a conflict), if so."""
        return None

    def owned_without_record(self, obj: ServerObject, view: ServerView) -> bool:
        """For RECORD kinds: owned although the record does not list it (for example a pool's
        default queue, which the server creates with the pool)."""
        return False

    async def create(
        self, client: PrefectClient, key: str, fields: Fields, view: ServerView
    ) -> str | None:
        """Create the object; return its id when the kind records ids."""
        raise NotImplementedError

    async def update(
        self,
        client: PrefectClient,
        obj: ServerObject,
        fields: Fields,
        changed: set[str],
        view: ServerView,
    ) -> None:
        raise NotImplementedError

    async def delete(self, client: PrefectClient, obj: ServerObject) -> None:
        raise NotImplementedError

    def declaration(self, obj: ServerObject, view: ServerView) -> dict[str, Any] | None:
        """How the repository would declare `obj` (`python -m deployments import`), its secret
        values as `{{ $VARIABLE }}` placeholders; None for an object declared with another
        (a pool's queues) or that cannot be declared."""
        return None

    async def apply_changes(
        self, client: PrefectClient, changes: list, view: ServerView
    ) -> list[str]:
        """Create or update what the plan's `changes` (of this kind) say; return what was done.
        Ids of objects created are added to `view.created`."""
        done = []
        by_id = {obj.id: obj for obj in view.objects.get(self.name, [])}
        for change in changes:
            fields = view.declared[self.name].objects[change.name]
            obj = by_id.get(change.server_id)
            if change.action == "create" and not view.adopt:
                obj = None  # another object of the same name stays as it is
            if obj is None:
                created = await self.create(client, change.name, fields, view)
                if created:
                    view.created.add(created)
                done.append(f"created {self.name} {change.name}")
            else:
                await self.update(client, obj, fields, {f.field for f in change.fields}, view)
                view.created.add(obj.id)  # owned from now on (adopted, or taken over)
                done.append(f"updated {self.name} {change.name}")
        return done
