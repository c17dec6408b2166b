"""Blocks: configuration documents of a block type the server knows, keyed `type/name`; each key
of `data` is a field. Values usually come from the environment:

    blocks:
      - type: secret
        name: failure-webhook-token
        data:
          value: "{{ $FAILURE_WEBHOOK_TOKEN }}"

The block type's secret fields (a Secret's `value`, a custom webhook's `secrets`) are compared
but never shown, written to --json or recorded. No tags: the applied record lists the blocks the
repository created; a declared name held by another block is a conflict.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any
from uuid import UUID

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import BlockDocumentCreate, BlockDocumentUpdate
from prefect.exceptions import PrefectException
from prefect.utilities.dispatch import lookup_type
from pydantic import ValidationError

from deployments.declarations import Declarations
from deployments.kinds.base import ApplyError, Declared, Fields, Kind, Ownership, ServerObject
from deployments.paging import every_page
from deployments.spec import SpecError, valid_name

FIELDS = {"type", "name", "data"}


@cache
def block_class(type_slug: str) -> type[Block]:
    import prefect.blocks.notifications  # noqa: F401  (registers Prefect's own block types)
    import prefect.blocks.system  # noqa: F401
    import prefect.blocks.webhook  # noqa: F401

    return lookup_type(Block, type_slug)


def _env_placeholder(*parts: str) -> str:
    return "{{ $" + re.sub(r"[^A-Z0-9]+", "_", "_".join(parts).upper()).strip("_") + " }}"


@contextmanager
def _refused(key: str) -> Iterator[None]:
    """A refused block write as an ApplyError that names the block and the status, never the
    server's answer, which may echo the request's secret values."""
    try:
        yield
    except (httpx.HTTPStatusError, PrefectException) as exc:
        response = getattr(exc, "response", None) or getattr(exc.__cause__, "response", None)
        status = f" ({response.status_code})" if response is not None else ""
        raise ApplyError(f"block {key}: the server refused it{status}") from None


class Blocks(Kind):
    name = "block"
    ownership = Ownership.RECORD
    section = "blocks"

    def declared(self, declarations: Declarations) -> Declared:
        result = Declared()
        for index, item in enumerate(declarations.section("blocks")):
            where = f"{declarations.path.name}: blocks[{index}]"
            unknown = set(item) - FIELDS
            if unknown or not item.get("type") or not item.get("name"):
                raise SpecError(f"{where}: needs `type`, `name` and `data`, and nothing else")
            name = declarations.name(item, where)
            nil = uuid.UUID(int=0)
            valid_name(
                BlockDocumentCreate, where, name=name, block_type_id=nil, block_schema_id=nil
            )
            try:
                cls = block_class(item["type"])
            except KeyError:
                raise SpecError(
                    f"{where}.type: no block type {item['type']!r} in Prefect"
                ) from None
            key = f"{item['type']}/{item['name']}"
            data, unset = declarations.render(item.get("data") or {})
            if unset:
                result.skip(self.name, key, unset)
                continue
            try:
                cls.model_validate(data)
            except ValidationError as exc:
                raise SpecError(
                    f"{where}.data ({key}): {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
                ) from None
            result.objects[key] = dict(data)
        return result

    def secret_fields(self, key: str, fields: Fields) -> set[str]:
        try:
            cls = block_class(key.split("/", 1)[0])
        except KeyError:
            return set(fields)  # an unknown type: show nothing of it
        return {name.split(".", 1)[0] for name in cls.model_json_schema().get("secret_fields", [])}

    async def read(self, client: PrefectClient, view) -> list[ServerObject]:
        documents = await every_page(
            lambda offset, limit: client.read_block_documents(
                offset=offset, limit=limit, include_secrets=True
            ),
            lambda document: document.id,
        )
        return [
            ServerObject(f"{d.block_type.slug}/{d.name}", str(d.id), dict(d.data))
            for d in documents
            if not d.is_anonymous and d.block_type is not None
        ]

    def declaration(self, obj: ServerObject, view) -> dict[str, Any]:
        """Secret values become `{{ $TYPE_NAME_FIELD }}` placeholders (a secret mapping, one
        per key): the environment holds them, never the file."""
        type_slug, name = obj.key.split("/", 1)
        secrets = self.secret_fields(obj.key, obj.fields)
        data = {}
        for field, value in obj.fields.items():
            if field not in secrets:
                data[field] = value
            elif isinstance(value, dict):
                data[field] = {k: _env_placeholder(type_slug, name, field, k) for k in value}
            else:
                data[field] = _env_placeholder(type_slug, name, field)
        return {"type": type_slug, "name": name, "data": data}

    async def create(self, client: PrefectClient, key: str, fields: Fields, view) -> str:
        type_slug, name = key.split("/", 1)
        with _refused(key):
            block_type = await client.read_block_type_by_slug(type_slug)
            schema = await client.get_most_recent_block_schema_for_block_type(block_type.id)
            document = await client.create_block_document(
                BlockDocumentCreate(
                    name=name, data=fields, block_type_id=block_type.id, block_schema_id=schema.id
                )
            )
        return str(document.id)

    async def update(self, client, obj: ServerObject, fields: Fields, changed, view) -> None:
        with _refused(obj.key):
            await client.update_block_document(
                UUID(obj.id), BlockDocumentUpdate(data=fields, merge_existing_data=False)
            )

    async def delete(self, client: PrefectClient, obj: ServerObject) -> None:
        await client.delete_block_document(UUID(obj.id))
