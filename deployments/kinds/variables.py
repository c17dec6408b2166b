"""Variables: non-secret configuration the flows read (`Variable.get(name)`), with tags.

    variables:
      - name: squares_chunk_size
        value: 50000
        tags: [tutorial]

They carry the owner tag (added here), and names are unique: a declared name held by a variable
without the tag is a conflict. The applied record's own variables (deployments/record.py) are not
objects of this kind.
"""

from __future__ import annotations

import re
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate

from deployments.declarations import Declarations
from deployments.kinds.base import Declared, Fields, Kind, Ownership, ServerObject
from deployments.paging import every_page
from deployments.record import is_record_variable
from deployments.spec import OWNER_TAG_PREFIX, SpecError, reject_unknown

FIELDS = {"name", "value", "tags"}
NAME = re.compile(r"^[a-z0-9_-]+$")  # Prefect's rule for variable names


class Variables(Kind):
    name = "variable"
    ownership = Ownership.TAG
    section = "variables"

    def declared(self, declarations: Declarations) -> Declared:
        result = Declared()
        for where, rendered, unset in declarations.items("variables"):
            reject_unknown(rendered, FIELDS, where)
            name = declarations.name(rendered, where)
            if not NAME.match(name) or is_record_variable(name):
                raise SpecError(
                    f"{where}.name: lowercase letters, digits, - and _ (not starting with "
                    f"'applied-', the record's), not {name!r}"
                )
            if "value" not in rendered:
                raise SpecError(f"{where}: needs a `value`")
            if unset:
                result.skip(self.name, name, unset)
                continue
            tags = {declarations.owner_tag, *(rendered.get("tags") or [])}
            result.objects[name] = {"value": rendered["value"], "tags": sorted(tags)}
        return result

    async def read(self, client: PrefectClient, view) -> list[ServerObject]:
        async def page(offset: int, limit: int) -> list[dict]:
            response = await client.request(
                "POST",
                "/variables/filter",
                json={"sort": "NAME_ASC", "offset": offset, "limit": limit},
            )
            return response.json()

        objects = []
        for variable in await every_page(page, lambda v: v["id"]):
            tags = variable.get("tags") or []
            if is_record_variable(variable["name"]) and any(
                tag.startswith(OWNER_TAG_PREFIX) for tag in tags
            ):
                continue  # a project's applied record
            objects.append(
                ServerObject(
                    variable["name"],
                    variable["id"],
                    {"value": variable["value"], "tags": sorted(tags)},
                    tags=tags,
                )
            )
        return objects

    def declaration(self, obj: ServerObject, view) -> dict[str, Any]:
        tags = [tag for tag in obj.fields["tags"] if not tag.startswith(OWNER_TAG_PREFIX)]
        return {"name": obj.key, "value": obj.fields["value"], **({"tags": tags} if tags else {})}

    async def create(self, client: PrefectClient, key: str, fields: Fields, view) -> None:
        await client.create_variable(
            VariableCreate(name=key, value=fields["value"], tags=fields["tags"])
        )

    async def update(self, client, obj: ServerObject, fields: Fields, changed, view) -> None:
        await client.update_variable(
            VariableUpdate(name=obj.key, value=fields["value"], tags=fields["tags"])
        )

    async def delete(self, client: PrefectClient, obj: ServerObject) -> None:
        await client.delete_variable_by_name(obj.key)
