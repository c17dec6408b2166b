"""Global concurrency limits: `concurrency(name)` in a flow or task holds one of `limit` slots.

    concurrency_limits:
      - name: squares-chunks
        limit: 2
        active: true
        slot_decay_per_second: 0     # > 0 makes it a rate limit

No tags: the applied record lists the ones the repository created. The limits Prefect keeps for
deployments' own concurrency (`deployment:<id>`) belong to their deployments, not to this kind.
"""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)

from deployments.declarations import Declarations
from deployments.kinds.base import Declared, Fields, Kind, Ownership, ServerObject
from deployments.paging import every_page
from deployments.spec import SpecError, reject_unknown, valid_name

FIELDS = {"name", "limit", "active", "slot_decay_per_second"}
DEPLOYMENT_LIMIT_PREFIX = "deployment:"


class ConcurrencyLimits(Kind):
    name = "concurrency limit"
    ownership = Ownership.RECORD
    section = "concurrency_limits"

    def declared(self, declarations: Declarations) -> Declared:
        result = Declared()
        for where, rendered, unset in declarations.items("concurrency_limits"):
            reject_unknown(rendered, FIELDS, where)
            name, limit = declarations.name(rendered, where), rendered.get("limit")
            valid_name(GlobalConcurrencyLimitCreate, where, name=name, limit=1)
            if name.startswith(DEPLOYMENT_LIMIT_PREFIX):
                raise SpecError(
                    f"{where}.name: a name not starting with 'deployment:', not {name!r}"
                )
            if unset:
                result.skip(self.name, name, unset)
                continue
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise SpecError(f"{where}.limit: a whole number, not {limit!r}")
            result.objects[name] = {
                "limit": limit,
                "active": bool(rendered.get("active", True)),
                "slot_decay_per_second": float(rendered.get("slot_decay_per_second", 0)),
            }
        return result

    async def read(self, client: PrefectClient, view) -> list[ServerObject]:
        limits = await every_page(
            lambda offset, limit: client.read_global_concurrency_limits(limit=limit, offset=offset),
            lambda item: item.id,
        )
        return [
            ServerObject(
                item.name,
                str(item.id),
                {
                    "limit": item.limit,
                    "active": item.active,
                    "slot_decay_per_second": float(item.slot_decay_per_second or 0),
                },
            )
            for item in limits
            if not item.name.startswith(DEPLOYMENT_LIMIT_PREFIX)
        ]

    def declaration(self, obj: ServerObject, view) -> dict[str, Any]:
        return {"name": obj.key, **obj.fields}

    async def create(self, client: PrefectClient, key: str, fields: Fields, view) -> str:
        return str(
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=key, **fields)
            )
        )

    async def update(self, client, obj: ServerObject, fields: Fields, changed, view) -> None:
        await client.update_global_concurrency_limit(
            obj.key, GlobalConcurrencyLimitUpdate(**fields)
        )

    async def delete(self, client: PrefectClient, obj: ServerObject) -> None:
        await client.delete_global_concurrency_limit_by_name(obj.key)
