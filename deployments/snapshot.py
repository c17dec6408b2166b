"""The server as plan reads it, in a file: what a pull request's plan compares the repository
with, so that no credential ever reaches a pull request's code (.github/workflows/plan.yml).

    python -m deployments snapshot --output server-snapshot.json   # reads the server
    python -m deployments plan --snapshot server-snapshot.json      # reads the file only

A snapshot holds every object of every kind with its fields, except the values of secret
fields (withheld: a plan from a snapshot never shows them as changed), and every owner's applied
record (ids and digests, no secret), so that a plan from it equals a plan against the server for
any prefect file that the server was read for. Objects read only for what the file declares
(the queues of declared pools, the automations of declared deployment triggers, schedule anchors
a declaration pins) are the ones of the file the snapshot was taken with: the main branch's. A
plan from a snapshot reads nothing from a server, so a deployment whose values come from the
server's blocks or variables (`{{ prefect.blocks.* }}`, `{{ prefect.variables.* }}`) is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prefect.client.orchestration import PrefectClient, get_client

from deployments import settings
from deployments.apply import read_server
from deployments.check import check_spec
from deployments.declarations import Declarations, load_declarations
from deployments.kinds import KINDS
from deployments.kinds.base import WITHHELD, ServerObject
from deployments.plan import Plan, declared_view, make_plan
from deployments.record import Applied, read_record, record_ids, record_owners
from deployments.spec import SpecError
from deployments.view import ServerView

FORMAT = 1


class SnapshotError(SpecError):
    """A file that is not a snapshot plan can read; the message names the file."""


@dataclass(frozen=True)
class Snapshot:
    server: str  # the API URL it was read from
    taken: str  # when, ISO 8601 in UTC
    records: dict[str, dict[str, Any]]  # owner slug -> {"record": ..., "source": ...}
    objects: dict[str, list[dict[str, Any]]]  # kind name -> objects (ServerObject fields)
    trigger_ids: list[str]  # automations that deployments' triggers own

    @property
    def label(self) -> str:
        """How plan names what it compared with."""
        return f"snapshot of {self.server} taken {self.taken}"

    def applied(self, owner_slug: str) -> Applied:
        entry = self.records.get(owner_slug) or {}
        return Applied(entry.get("record") or {}, entry.get("source"))

    def others_ids(self, owner_slug: str) -> set[str]:
        """The ids every other owner's record lists (record.other_projects_ids, from the file)."""
        ids: set[str] = set()
        for slug, applied in self.records.items():
            if slug != owner_slug:
                ids |= record_ids(applied.get("record") or {})
        return ids

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1)

    @classmethod
    def load(cls, path: Path) -> Snapshot:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"cannot read the snapshot {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SnapshotError(
                f"{path} is not a snapshot of format {FORMAT}: take it again with "
                "`python -m deployments snapshot`"
            )
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except KeyError as exc:
            raise SnapshotError(f"{path}: the snapshot lacks {exc}") from exc


def _withheld(kind, obj: ServerObject) -> dict[str, Any]:
    secrets = kind.secret_fields(obj.key, obj.fields)
    fields = {
        name: WITHHELD if name in secrets and value is not None else value
        for name, value in obj.fields.items()
    }
    return {**asdict(obj), "fields": fields}


def without_credentials(url: str) -> str:
    """The server's address as a snapshot may show it: no user, password or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def take_snapshot(client: PrefectClient, view: ServerView) -> Snapshot:
    """The snapshot of the server `view` was read from (deployments.plan.read_view)."""
    records = {}
    for slug in await record_owners(client):
        applied = await read_record(client, slug)
        records[slug] = {"record": applied.record, "source": applied.source}
    return Snapshot(
        server=without_credentials(str(client.api_url)),
        taken=datetime.now(UTC).isoformat(timespec="seconds"),
        records=records,
        objects={
            kind.name: [_withheld(kind, obj) for obj in view.objects.get(kind.name, [])]
            for kind in KINDS
        },
        trigger_ids=sorted(view.trigger_ids),
    )


async def snapshot_view(snapshot: Snapshot, declarations: Declarations) -> ServerView:
    """What read_view would return for `declarations`, from the snapshot alone."""
    slug = declarations.owner_slug
    applied, others = snapshot.applied(slug), snapshot.others_ids(slug)
    view = await declared_view(None, declarations, applied, others)
    for kind in KINDS:
        view.objects[kind.name] = [
            ServerObject(**obj) for obj in snapshot.objects.get(kind.name, [])
        ]
    view.trigger_ids = set(snapshot.trigger_ids)
    return view


async def snapshot(path: Path = settings.PREFECT_YAML, wait_s: float = 0) -> Snapshot:
    """Read the server for the prefect file at `path` (waiting up to `wait_s` for it)."""
    async with get_client() as client:
        return await take_snapshot(client, await read_server(client, path, wait_s))


async def plan_from_snapshot(path: Path, snapshot_path: Path, prune: bool = False) -> Plan:
    """The plan of the prefect file at `path` against a snapshot: reads no server."""
    check_spec(path)
    saved = Snapshot.load(snapshot_path)
    view = await snapshot_view(saved, load_declarations(path))
    return make_plan(view, saved.label, prune)
