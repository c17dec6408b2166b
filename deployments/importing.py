"""`python -m deployments import`: write the declarations of the server objects the repository
does not own into its prefect file, as Terraform's `import` with generated configuration does;
`python -m deployments apply --adopt` then takes them over.

Left out: objects another project owns (its owner tag, or its applied record), objects of
declared names (plan shows them as conflicts), deployments whose entrypoint is not a flow of this
repository (their code belongs to another), and pools whose job template differs from their
type's in more than its variables' defaults. A secret's value is never written: the file gets a
`{{ $VARIABLE }}` placeholder, and the command names the variables to set before apply.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.utilities.templating import PlaceholderType, find_placeholders
from ruamel.yaml import YAML  # Prefect's own dependency, which `prefect deploy` edits with

from deployments.declarations import load_declarations
from deployments.kinds import KINDS
from deployments.kinds.pools import WorkPools
from deployments.kinds.queues import WorkQueues, pool_queues
from deployments.plan import read_view


@dataclass
class Imported:
    objects: list[str] = field(default_factory=list)  # "kind key"
    environment: set[str] = field(default_factory=set)  # variables the secrets now need
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


async def import_objects(path: Path) -> Imported:
    declarations = load_declarations(path)
    imported = Imported()
    async with get_client() as client:
        view = await read_view(client, declarations)
        for pool in view.objects[WorkPools.name]:  # queues are imported with their pool
            if (
                not view.owns(WorkPools(), pool)
                and pool.key not in view.declared[WorkPools.name].objects
            ):
                view.objects[WorkQueues.name] += await pool_queues(client, pool.key)
        for kind in KINDS:
            if kind.section is None:
                continue
            declared = view.declared[kind.name]
            for obj in view.objects[kind.name]:
                if (
                    view.owns(kind, obj)
                    or obj.key in declared.objects
                    or obj.key in declared.skipped_keys
                    or not view.may_take(obj)
                ):
                    continue
                item = kind.declaration(obj, view)
                if item is None:
                    continue
                imported.sections.setdefault(kind.section, []).append(item)
                imported.objects.append(f"{kind.name} {obj.key}")
                imported.environment |= {
                    p.name.lstrip("$")
                    for p in find_placeholders(item)
                    if p.type is PlaceholderType.ENV_VAR
                }
    if imported.sections:
        _append(path, imported.sections)
    return imported


def _yaml() -> YAML:
    """A round trip that leaves the rest of the file as it was: comments, anchors, quotes."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def _append(path: Path, sections: dict[str, list[dict[str, Any]]]) -> None:
    yaml = _yaml()
    document = yaml.load(path.read_text())
    for section, items in sections.items():
        if document.get(section) is None:
            document[section] = []
        document[section].extend(items)
    text = io.StringIO()
    yaml.dump(document, text)
    path.write_text(text.getvalue())
