"""Work queues, declared in their pool's `queues`: description, priority (1 is served first),
concurrency limit and paused. Keyed `pool/queue`.

    queues:
      - name: default
        priority: 1
      - name: scheduled
        priority: 2
        concurrency_limit: 1

Queues carry no tags, and belong to their pool: the queues of a pool the repository owns are its
own (the server makes a pool's `default` queue, and a deployment's queue, by itself). A pool that
declares no queues leaves its queues alone.
"""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import WorkQueue
from prefect.exceptions import ObjectNotFound

from deployments.declarations import Declarations
from deployments.kinds.base import Declared, Fields, Kind, Ownership, ServerObject
from deployments.kinds.pools import WorkPools, declared_pools
from deployments.paging import every_page
from deployments.spec import SpecError, reject_unknown

DEFAULT_QUEUE = "default"
FIELDS = {"name", "description", "priority", "concurrency_limit", "paused"}


def queue_fields(item: dict[str, Any], where: str) -> Fields:
    reject_unknown(item, FIELDS, where)
    for name in ("priority", "concurrency_limit"):
        value = item.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise SpecError(f"{where}.{name}: a whole number, not {value!r}")
    fields = {
        "description": item.get("description") or "",
        "concurrency_limit": item.get("concurrency_limit"),
        "paused": bool(item.get("paused", False)),
    }
    if item.get("priority") is not None:  # else the server's choice (after the last queue)
        fields["priority"] = item["priority"]
    return fields


def _server_fields(queue: WorkQueue) -> Fields:
    return {
        "description": queue.description or "",
        "priority": queue.priority,
        "concurrency_limit": queue.concurrency_limit,
        "paused": queue.is_paused,
    }


async def pool_queues(client: PrefectClient, pool: str) -> list[ServerObject]:
    queues = await every_page(
        lambda offset, limit: client.read_work_queues(
            work_pool_name=pool, limit=limit, offset=offset
        ),
        lambda queue: queue.id,
    )
    return [
        ServerObject(f"{pool}/{queue.name}", str(queue.id), _server_fields(queue))
        for queue in queues
    ]


class WorkQueues(Kind):
    name = "work queue"
    ownership = Ownership.RECORD

    def declared(self, declarations: Declarations) -> Declared:
        result = Declared()
        for pool, (item, unset) in declared_pools(declarations).items():
            for index, queue in enumerate(item.get("queues") or []):
                where = f"{declarations.path.name}: work_pools[{pool}].queues[{index}]"
                if not isinstance(queue, dict) or not queue.get("name"):
                    raise SpecError(f"{where}: a mapping with a `name`")
                key = f"{pool}/{queue['name']}"
                if unset:
                    result.skip(self.name, key, unset)
                else:
                    result.objects[key] = queue_fields(queue, where)
        return result

    async def read(self, client: PrefectClient, view) -> list[ServerObject]:
        existing = {obj.key for obj in view.objects.get(WorkPools.name, [])}
        objects = []
        for pool, (item, _) in sorted(declared_pools(view.declarations).items()):
            if pool in existing and item.get("queues"):
                objects += await pool_queues(client, pool)
        # A pool's default queue cannot be deleted: left alone unless declared.
        declared = view.declared[self.name].objects
        return [
            obj
            for obj in objects
            if obj.key.split("/", 1)[1] != DEFAULT_QUEUE or obj.key in declared
        ]

    def owned_without_record(self, obj: ServerObject, view) -> bool:
        pool = obj.key.split("/", 1)[0]
        pools = [p for p in view.objects.get(WorkPools.name, []) if p.key == pool]
        return any(view.owns(WorkPools(), p) or (p.pristine and view.may_take(p)) for p in pools)

    async def create(self, client: PrefectClient, key: str, fields: Fields, view) -> str:
        pool, name = key.split("/", 1)
        try:  # a pool's default queue exists once the pool does
            queue = await client.read_work_queue_by_name(name, work_pool_name=pool)
        except ObjectNotFound:
            queue = await client.create_work_queue(
                name=name,
                work_pool_name=pool,
                description=fields["description"],
                priority=fields.get("priority"),
                concurrency_limit=fields["concurrency_limit"],
                is_paused=fields["paused"],
            )
            return str(queue.id)
        obj = ServerObject(key, str(queue.id), _server_fields(queue))
        await self.update(client, obj, fields, set(fields), view)
        return obj.id

    async def update(self, client, obj: ServerObject, fields: Fields, changed, view) -> None:
        updates = {
            "description": fields["description"],
            "concurrency_limit": fields["concurrency_limit"],
            "is_paused": fields["paused"],
        }
        if "priority" in fields:
            updates["priority"] = fields["priority"]
        await client.update_work_queue(obj.id, **updates)

    async def delete(self, client: PrefectClient, obj: ServerObject) -> None:
        await client.delete_work_queue_by_id(obj.id)
