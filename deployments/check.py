"""Check prefect.yaml and the server before anything is deployed.

    python -m deployments.check [PREFECT_YAML]   (entrypoints resolve from the repository root)

`prefect deploy --all` skips a prefect.yaml it cannot parse with only a warning, and fails late
on a wrong entrypoint. `make up` and the compose `deploy` service run this first, so a broken
file, an entrypoint that does not exist or a missing work pool stop the deploy with a message
naming the file and field, and nothing on the server changes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import ObjectNotFound
from prefect.utilities.templating import PlaceholderType, find_placeholders

from deployments import settings
from deployments.spec import SpecError, load_declared, load_deployments, load_raw, owner_tag
from deployments.targets import TargetError, choosing, chosen, declared_targets


def _unset_env_placeholders(value: Any, where: str) -> list[tuple[str, str]]:
    """(where, NAME) for every `{{ $NAME }}` in `value` whose variable is not set: `prefect
    deploy` would keep the placeholder as literal text and fail far from its cause."""
    if isinstance(value, dict):
        return [u for k, v in value.items() for u in _unset_env_placeholders(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [u for i, v in enumerate(value) for u in _unset_env_placeholders(v, f"{where}[{i}]")]
    if not isinstance(value, str):
        return []
    names = [
        p.name.lstrip("$") for p in find_placeholders(value) if p.type is PlaceholderType.ENV_VAR
    ]
    return [(where, name) for name in names if name not in os.environ]


def check_environment(path: Path = settings.PREFECT_YAML) -> None:
    raw = load_raw(path)
    for section in ("build", "push", "pull", "deployments"):
        unset = _unset_env_placeholders(raw.get(section) or [], section)
        if unset:
            where, name = unset[0]
            raise SpecError(f"{path.name}: {where} uses {{{{ ${name} }}}}, but {name} is not set")


def check_declarations(path: Path = settings.PREFECT_YAML) -> None:
    """The server objects declared beside the deployments are well formed (SpecError naming the
    section, index and field otherwise); their environment variables may be unset."""
    from deployments.declarations import load_declarations
    from deployments.kinds import KINDS
    from deployments.kinds.deployments import Deployments

    declarations = load_declarations(path)
    for kind in KINDS:
        if not isinstance(kind, Deployments):  # read against the server, checked below
            kind.declared(declarations)


def check_spec(path: Path = settings.PREFECT_YAML, environment: bool = True) -> list[str]:
    """Every deployment's entrypoint exists and names a flow, and every deployment carries the
    ownership tag, and the other declarations are well formed; return the deployment names.
    `environment`: also every `{{ $VAR }}` the deploy reads is set (here, for this deploy)."""
    names = []
    tag = owner_tag(path)
    if environment:
        check_environment(path)
    check_declarations(path)
    for index, spec in enumerate(load_deployments(path)):
        if tag not in spec.tags:
            raise SpecError(
                f"{path.name}: deployments[{index}].tags ({spec.name!r}): add {tag!r}, the "
                "marker of what this repository owns on the server (e.g. `tags: [*owner_tag]`)"
            )
        where = f"{path.name}: deployments[{index}].entrypoint ({spec.entrypoint!r})"
        if ":" not in spec.entrypoint:
            raise SpecError(f"{where}: expected 'path/to/file.py:flow_function'")
        if not spec.entrypoint_path.is_file():
            raise SpecError(f"{where}: no such file {spec.entrypoint_path}")
        try:
            spec.load_flow()
        except Exception as exc:
            raise SpecError(f"{where}: cannot be loaded: {exc}") from exc
        names.append(spec.name)
    return names


def check_targets(path: Path = settings.PREFECT_YAML) -> dict[str | None, list[str]]:
    """check_spec for every named target of the file (for the file as declared when it names
    none): the deployment names of each. The environment variables only of the chosen target
    (--target, DEPLOYMENTS_TARGET, else the default): the one a deploy from here would deploy;
    another target's, such as the Docker pool's image repository, belong to where it deploys."""
    try:
        declared = load_declared(path)
        targets = declared_targets(declared, path.name)
        here = chosen(declared, path.name)
    except TargetError as exc:
        raise SpecError(str(exc)) from None
    checked = {}
    for name in targets or [None]:
        with choosing(name):
            try:
                checked[name] = check_spec(path, environment=here is None or here.name == name)
            except SpecError as exc:
                raise SpecError(f"target {name}: {exc}" if name else str(exc)) from None
    return checked


async def require_pool(client: PrefectClient, name: str) -> None:
    """SpecError naming the pool, the server and the fix when the pool does not exist."""
    try:
        await client.read_work_pool(name)
    except ObjectNotFound:
        raise SpecError(
            f"work pool {name!r} does not exist on {client.api_url}: `python -m deployments "
            f"apply` creates the pool prefect.yaml declares (or set {settings.POOL_NAME_ENV})"
        ) from None


async def check_pool(name: str) -> None:
    async with get_client() as client:
        await require_pool(client, name)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else settings.PREFECT_YAML
    try:
        pool_name = settings.current().work_pool_name
        names = check_spec(path)
        asyncio.run(check_pool(pool_name))
    except (SpecError, settings.SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{path.name} OK: {', '.join(names)} on pool {pool_name!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
