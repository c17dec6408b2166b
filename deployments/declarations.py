"""The server objects a prefect file declares beside its deployments, read once.

prefect.yaml keeps its deployments where `prefect deploy` reads them; the rest of the server sits
in top-level sections that `prefect deploy` ignores: `work_pools` (each with its `queues`),
`variables`, `concurrency_limits`, `blocks` and `automations`. Values may hold Prefect's
`{{ $ENV_VAR }}` placeholders and the repository's own values (`Declarations.repository_values`).
An object whose environment variable is unset is not declared for now: plan names the variable,
and apply leaves the object as it is on the server (never deleted for it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.utilities.templating import PlaceholderType, apply_values, find_placeholders

from deployments import settings
from deployments.spec import OWNER_TAG_PREFIX, SpecError, load_raw, project_name

SECTIONS = ("work_pools", "variables", "concurrency_limits", "blocks", "automations")

# A Prefect variable name: the record of what apply applied is kept under names derived from
# the owner (deployments/record.py).
_NAME_CHARACTERS = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class Declarations:
    """One prefect file: its owner, its raw sections and the values placeholders resolve to."""

    path: Path
    owner: str  # prefect.yaml's `name`
    raw: dict[str, Any]

    @property
    def owner_tag(self) -> str:
        return OWNER_TAG_PREFIX + self.owner

    @property
    def owner_slug(self) -> str:
        """The owner as a Prefect variable name may spell it."""
        return _NAME_CHARACTERS.sub("-", self.owner.lower()).strip("-") or "project"

    def section(self, name: str) -> list[dict[str, Any]]:
        items = self.raw.get(name) or []
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise SpecError(f"{self.path.name}: `{name}` must be a list of mappings")
        return items

    def repository_values(self) -> dict[str, Any]:
        config = settings.current()
        return {
            "owner_tag": self.owner_tag,
            "work_pool_name": config.work_pool_name,
            "pool_concurrency_limit": config.pool_concurrency_limit,
            "heartbeat_seconds": config.flow_heartbeat_seconds,
            "zombie_after_seconds": config.zombie_after_s,
        }

    def items(self, section: str) -> Iterator[tuple[str, dict[str, Any], list[str]]]:
        """Each item of `section`: where it stands (for messages), rendered, and the unset
        environment variables it needs."""
        for index, item in enumerate(self.section(section)):
            rendered, unset = self.render(item)
            yield f"{self.path.name}: {section}[{index}]", rendered, unset

    def name(self, item: dict[str, Any], where: str, key: str = "name") -> str:
        """An object's name: given, and not from the environment (an object left out for an
        unset variable must keep the name of the object on the server it stands for)."""
        name = item.get(key)
        if not isinstance(name, str) or not name:
            raise SpecError(f"{where}: needs a `{key}`")
        if find_placeholders(name):
            raise SpecError(f"{where}.{key}: a name cannot hold a placeholder, not {name!r}")
        return name

    def render(self, value: Any) -> tuple[Any, list[str]]:
        """`value` with its placeholders filled, and the names of the unset (or empty)
        environment variables it needs (then the object is left out)."""
        unset = sorted(
            {
                p.name.lstrip("$")
                for p in find_placeholders(value)
                if p.type is PlaceholderType.ENV_VAR and not os.environ.get(p.name.lstrip("$"))
            }
        )
        rendered = apply_values(value, self.repository_values(), remove_notset=False)
        return rendered, unset


def load_declarations(path: Path = settings.PREFECT_YAML) -> Declarations:
    declarations = Declarations(path=path, owner=project_name(path), raw=load_raw(path))
    for section in SECTIONS:
        declarations.section(section)  # each a list of mappings, or a SpecError now
    return declarations
