"""The applied record: per kind, object and field, a digest of what `apply` applied, and the ids
of the objects it created or adopted. Kept on the server itself, in Prefect variables tagged with
the owner tag, so that every clone and CI job reading the same server agrees.

A server value that no longer matches its digest was edited out of band (drift), not changed in
the repository; for kinds without tags, an id the record lists is the repository's own.

A Prefect variable holds at most 5,000 characters, so the record is compressed and split over
numbered parts `applied-<owner>-<generation>-<n>`; the variable `applied-<owner>` names the
generation in force. A new record is written under a new generation, then the pointer is turned,
then the old parts are deleted: a reader sees either the whole old record or the whole new one.
Secret fields are never recorded (not even as digests). The pointer also names the repository
the record was applied from (deployments/source.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.client.schemas.filters import VariableFilter, VariableFilterName

from deployments.paging import every_page

RECORD_PREFIX = "applied-"
PART_CHARS = 4800  # a part's text, below Prefect's 5,000 characters per variable value
FORMAT = 2

# kind name -> object key -> {"id": str | None, "fields": {field: digest}}
Record = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Applied:
    """The record in force and the repository it was applied from (None: not known)."""

    record: Record = field(default_factory=dict)
    source: str | None = None


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def pointer_name(owner_slug: str) -> str:
    return f"{RECORD_PREFIX}{owner_slug}"


def is_record_variable(name: str) -> bool:
    return name.startswith(RECORD_PREFIX)


async def read_record(client: PrefectClient, owner_slug: str) -> Applied:
    """The record in force; empty when there is none, or one of another format (then drift
    shows as an update, and the objects it listed need --adopt once)."""
    pointer = await client.read_variable_by_name(pointer_name(owner_slug))
    value = pointer.value if pointer else None
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        return Applied()
    source = value.get("source")
    text = ""
    for part in range(value["parts"]):
        variable = await client.read_variable_by_name(
            _part_name(owner_slug, value["generation"], part)
        )
        if variable is None or not isinstance(variable.value, str):
            return Applied(source=source)
        text += variable.value
    return Applied(json.loads(zlib.decompress(base64.b64decode(text))), source)


def _part_name(owner_slug: str, generation: str, part: int) -> str:
    return f"{RECORD_PREFIX}{owner_slug}-{generation}-{part}"


async def write_record(
    client: PrefectClient, owner_slug: str, owner_tag: str, record: Record, source: str | None
) -> None:
    """Write `record` as the one in force, applied from `source` (None keeps the source the
    record in force names: a checkout that cannot tell its source does not erase it)."""
    text = base64.b64encode(zlib.compress(json.dumps(record, sort_keys=True).encode(), 9)).decode()
    parts = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
    generation = uuid.uuid4().hex[:8]
    for number, part in enumerate(parts):
        name = _part_name(owner_slug, generation, number)
        await client.create_variable(VariableCreate(name=name, value=part, tags=[owner_tag]))
    name = pointer_name(owner_slug)
    current = await client.read_variable_by_name(name)
    replaced = current.value if current and isinstance(current.value, dict) else {}
    pointer = {"format": FORMAT, "generation": generation, "parts": len(parts)}
    if source or replaced.get("source"):
        pointer["source"] = source or replaced["source"]
    if current is None:
        await client.create_variable(VariableCreate(name=name, value=pointer, tags=[owner_tag]))
    else:
        await client.update_variable(VariableUpdate(name=name, value=pointer, tags=[owner_tag]))
    # Only the parts of the record this one replaced: another apply writing at the same time
    # keeps its own (at worst its parts stay behind unused).
    if replaced.get("generation"):
        for number in range(replaced.get("parts", 0)):
            part = _part_name(owner_slug, replaced["generation"], number)
            await client.delete_variable_by_name(part)


async def _record_variables(client: PrefectClient) -> list[dict]:
    """Every variable whose name marks it as part of an applied record, page by page."""

    async def page(offset: int, limit: int) -> list[dict]:
        response = await client.request(
            "POST",
            "/variables/filter",
            json={
                "variables": VariableFilter(
                    name=VariableFilterName(like_=RECORD_PREFIX)
                ).model_dump(mode="json"),
                "sort": "NAME_ASC",
                "offset": offset,
                "limit": limit,
            },
        )
        return response.json()

    return await every_page(page, lambda variable: variable["id"])


async def record_owners(client: PrefectClient) -> list[str]:
    """The owner slugs that have a record on the server (its pointer; parts are skipped)."""
    owners = []
    for variable in await _record_variables(client):
        value = variable["value"]
        if isinstance(value, dict) and value.get("format") == FORMAT:
            owners.append(variable["name"][len(RECORD_PREFIX) :])
    return owners


def record_ids(record: Record) -> set[str]:
    """The ids a record lists."""
    return {entry["id"] for kind in record.values() for entry in kind.values() if entry.get("id")}


async def other_projects_ids(client: PrefectClient, owner_slug: str) -> set[str]:
    """The ids every other project's applied record lists: theirs, never this project's to take
    over."""
    ids: set[str] = set()
    for slug in await record_owners(client):
        if slug != owner_slug:
            ids |= record_ids((await read_record(client, slug)).record)
    return ids
