"""Work pools: type, description, concurrency limit, paused, and the base job template (the
worker type's default template with the declared `job_variable_defaults` set as defaults).

    work_pools:
      - name: "{{ work_pool_name }}"      # prefect.toml's pool name (or its variable)
        type: process
        description: ...
        concurrency_limit: null           # runs at once across the pool; null: no limit
        paused: false
        job_variable_defaults: {command: python -m stack.launch}
        queues: [...]                     # deployments/kinds/queues.py

Pools carry no tags: the applied record lists the ones the repository created. A pool a worker
created for a declared name before the first apply (its type's defaults, no description) holds
nothing anyone configured and is taken over; any other pool of a declared name is a conflict.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.objects import WorkPool
from prefect.exceptions import ObjectAlreadyExists

from deployments.declarations import Declarations
from deployments.kinds.base import (
    ApplyError,
    Declared,
    Fields,
    Kind,
    Ownership,
    ServerObject,
)
from deployments.paging import every_page
from deployments.spec import SpecError, reject_unknown, valid_name

POOL_TYPES = ("process", "docker")
FIELDS = {
    "type",
    "description",
    "concurrency_limit",
    "paused",
    "job_variable_defaults",
    "queues",
    "name",
}


@cache
def default_base_job_template(pool_type: str) -> dict[str, Any]:
    if pool_type == "docker":
        from prefect_docker.worker import DockerWorker  # imports docker-py: only when needed

        return DockerWorker.get_default_base_job_template()
    from prefect.workers.process import ProcessWorker

    return ProcessWorker.get_default_base_job_template()


def base_job_template(pool_type: str, defaults: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(default_base_job_template(pool_type))
    properties = template["variables"]["properties"]
    for variable, value in defaults.items():
        if variable not in properties:
            raise SpecError(
                f"work pool job_variable_defaults: {variable!r} is not a job variable of a "
                f"{pool_type} pool (known: {', '.join(sorted(properties))})"
            )
        properties[variable]["default"] = value
    return template


def pool_fields(item: dict[str, Any], where: str) -> Fields:
    reject_unknown(item, FIELDS, where)
    pool_type = item.get("type", "process")
    if pool_type not in POOL_TYPES:
        raise SpecError(f"{where}.type: one of {', '.join(POOL_TYPES)}, not {pool_type!r}")
    limit = item.get("concurrency_limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise SpecError(f"{where}.concurrency_limit: a whole number or null, not {limit!r}")
    return {
        "type": pool_type,
        "description": item.get("description") or None,
        "concurrency_limit": limit,
        "paused": bool(item.get("paused", False)),
        "base_job_template": base_job_template(pool_type, item.get("job_variable_defaults") or {}),
    }


def declared_pools(declarations: Declarations) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Each declared pool's rendered item and its unset environment variables, by name."""
    pools = {}
    for where, rendered, unset in declarations.items("work_pools"):
        name = declarations.name(rendered, where)
        valid_name(WorkPoolCreate, where, name=name, type=str(rendered.get("type", "process")))
        pools[name] = (rendered, unset)
    return pools


def server_fields(pool: WorkPool) -> Fields:
    return {
        "type": pool.type,
        "description": pool.description or None,
        "concurrency_limit": pool.concurrency_limit,
        "paused": pool.is_paused,
        "base_job_template": pool.base_job_template,
    }


class WorkPools(Kind):
    name = "work pool"
    ownership = Ownership.RECORD
    section = "work_pools"

    def declared(self, declarations: Declarations) -> Declared:
        result = Declared()
        for index, (name, (item, unset)) in enumerate(declared_pools(declarations).items()):
            if unset:
                result.skip(self.name, name, unset)
                continue
            result.objects[name] = pool_fields(
                item, f"{declarations.path.name}: work_pools[{index}]"
            )
        return result

    async def read(self, client: PrefectClient, view) -> list[ServerObject]:
        pools = await every_page(
            lambda offset, limit: client.read_work_pools(limit=limit, offset=offset),
            lambda pool: pool.id,
        )
        return [self._object(pool) for pool in pools]

    def _object(self, pool: WorkPool) -> ServerObject:
        fields = server_fields(pool)
        pristine = (
            pool.type in POOL_TYPES
            and fields["description"] is None
            and fields["concurrency_limit"] is None
            and not fields["paused"]
            and fields["base_job_template"] == default_base_job_template(pool.type)
        )
        return ServerObject(pool.name, str(pool.id), fields, pristine=pristine)

    def declaration(self, obj: ServerObject, view) -> dict[str, Any] | None:
        fields = obj.fields
        if fields["type"] not in POOL_TYPES:
            return None
        default = default_base_job_template(fields["type"])
        template = fields["base_job_template"] or default  # empty: a worker fills in its own
        if template.get("job_configuration") != default["job_configuration"]:
            return None  # more than variable defaults changed: not expressible here
        properties = template["variables"]["properties"]
        defaults = {
            name: spec["default"]
            for name, spec in properties.items()
            if "default" in spec
            and spec["default"] != default["variables"]["properties"].get(name, {}).get("default")
        }
        from deployments.kinds.queues import WorkQueues

        queues = [
            {"name": q.key.split("/", 1)[1], **q.fields}
            for q in view.objects.get(WorkQueues.name, [])
            if q.key.split("/", 1)[0] == obj.key
        ]
        item = {
            "name": obj.key,
            "type": fields["type"],
            "description": fields["description"],
            "concurrency_limit": fields["concurrency_limit"],
            "paused": fields["paused"],
        }
        return {
            **item,
            **({"job_variable_defaults": defaults} if defaults else {}),
            **({"queues": queues} if queues else {}),
        }

    def unappliable(self, obj: ServerObject, fields: Fields) -> str | None:
        if obj.fields["type"] == fields["type"]:
            return None
        return (
            f"a pool of type {obj.fields['type']!r}, declared {fields['type']!r}: a pool's type "
            "cannot change; declare another name, or delete the pool on the server first"
        )

    async def create(self, client: PrefectClient, key: str, fields: Fields, view) -> str:
        try:
            pool = await client.create_work_pool(
                WorkPoolCreate(
                    name=key,
                    type=fields["type"],
                    description=fields["description"],
                    base_job_template=fields["base_job_template"],
                    concurrency_limit=fields["concurrency_limit"],
                    is_paused=fields["paused"],
                )
            )
        except ObjectAlreadyExists:  # a worker created it since the plan: take it if pristine
            existing = self._object(await client.read_work_pool(key))
            if not existing.pristine:
                raise
            await self.update(client, existing, fields, set(fields), view)
            return existing.id
        return str(pool.id)

    async def update(self, client, obj: ServerObject, fields: Fields, changed, view) -> None:
        problem = self.unappliable(obj, fields)
        if problem:
            raise ApplyError(f"work pool {obj.key!r} is {problem}")
        await client.update_work_pool(
            obj.key,
            WorkPoolUpdate(
                description=fields["description"],
                is_paused=fields["paused"],
                base_job_template=fields["base_job_template"],
                concurrency_limit=fields["concurrency_limit"],
            ),
        )

    async def delete(self, client: PrefectClient, obj: ServerObject) -> None:
        await client.delete_work_pool(obj.key)
