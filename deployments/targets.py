"""Named targets: one declaration, several servers.

A prefect file's `targets:` names the servers the repository deploys to and says, for each, what
differs from the declaration around it. Choosing a target (`python -m deployments plan|apply
--target NAME`, or DEPLOYMENTS_TARGET=NAME, so `make plan TARGET=prod`) merges its `overrides`
over the file before anything reads it:

    targets:
      dev:                           # the first target is the default: the file as declared
        description: make up's server on this machine
      prod:
        description: the production server
        server: {url: PROD_PREFECT_API_URL, auth_string: PROD_PREFECT_API_AUTH_STRING}
        overrides:
          deployments:
            greeting-schedule:
              schedules:
                every-5-minutes: {active: false}
          work_pools:
            "{{ work_pool_name }}": {concurrency_limit: 8}

Merging: a mapping merges into a mapping key by key; any other value replaces the declared one.
A declared list of named objects (deployments, work_pools, ... by `name`; schedules by `slug`) is
overridden by a mapping from each name, as the file writes it, to that object's overrides; a name
not declared there adds the object.

Ownership: the default target owns what it applies under the file's `name`, every other target
under `<name>-<target>`. The file's owner tag (`managed-by:<name>`) in any `tags` list stands for
the target's, so two targets on one server never touch each other's objects or share an applied
record.

Server: `server.url` and `server.auth_string` name the environment variables that hold the
target's PREFECT_API_URL and PREFECT_API_AUTH_STRING (default: those two names).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from deployments import settings

OWNER_TAG_PREFIX = "managed-by:"
TARGET_FIELDS = {"description", "server", "overrides"}
SERVER_FIELDS = {"url": "PREFECT_API_URL", "auth_string": "PREFECT_API_AUTH_STRING"}


class TargetError(ValueError):
    """A target is unknown or malformed; the message names the file, the target and the field."""


@dataclass(frozen=True)
class Target:
    name: str
    default: bool
    description: str
    url_env: str
    auth_string_env: str
    overrides: dict[str, Any]


def declared_targets(raw: dict[str, Any], where: str) -> dict[str, Target]:
    """The file's targets, in order (the first is the default); none when it declares none."""
    section = raw.get("targets")
    if section is None:
        return {}
    if not isinstance(section, dict) or not section:
        raise TargetError(f"{where}: targets: expected a mapping from each target's name")
    targets = {}
    for index, (name, body) in enumerate(section.items()):
        at = f"{where}: targets.{name}"
        if not isinstance(name, str) or not name.replace("-", "").isalnum():
            raise TargetError(f"{at}: a target's name is letters, digits and dashes")
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise TargetError(f"{at}: expected a mapping ({', '.join(sorted(TARGET_FIELDS))})")
        unknown = set(body) - TARGET_FIELDS
        if unknown:
            raise TargetError(f"{at}: unknown field {sorted(unknown)[0]!r}")
        server = body.get("server") or {}
        if not isinstance(server, dict) or set(server) - set(SERVER_FIELDS):
            raise TargetError(f"{at}.server: expected {{url: VARIABLE, auth_string: VARIABLE}}")
        overrides = body.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise TargetError(f"{at}.overrides: expected a mapping of the file's sections")
        if {"name", "targets"} & set(overrides):
            raise TargetError(f"{at}.overrides: may not change `name` or `targets`")
        targets[name] = Target(
            name=name,
            default=index == 0,
            description=str(body.get("description") or ""),
            url_env=str(server.get("url") or SERVER_FIELDS["url"]),
            auth_string_env=str(server.get("auth_string") or SERVER_FIELDS["auth_string"]),
            overrides=overrides,
        )
    return targets


def chosen_name() -> str | None:
    """The target the environment chooses (DEPLOYMENTS_TARGET), if any."""
    return settings.current().target


def chosen(raw: dict[str, Any], where: str, name: str | None = None) -> Target | None:
    """The target `name` (default: the environment's choice, else the file's default target);
    None for a file without targets, where choosing one is an error."""
    targets = declared_targets(raw, where)
    name = name or chosen_name()
    if not targets:
        if name:
            raise TargetError(f"{where}: declares no targets, so there is no target {name!r}")
        return None
    if name is None:
        return next(iter(targets.values()))
    if name not in targets:
        known = ", ".join(targets)
        raise TargetError(f"{where}: no target {name!r} (the file declares: {known})")
    return targets[name]


def owner_name(project: str, target: Target | None) -> str:
    """Who owns what `target` applies: the project, or `<project>-<target>` for a target that
    is not the default."""
    return project if target is None or target.default else f"{project}-{target.name}"


def with_target(raw: dict[str, Any], target: Target | None, where: str) -> dict[str, Any]:
    """The file as `target` sees it: its overrides merged in, `name` its owner, the file's owner
    tag replaced by the target's."""
    if target is None:
        return raw
    merged = _merge(raw, target.overrides, f"{where}: targets.{target.name}.overrides")
    project = raw.get("name")
    if isinstance(project, str) and not target.default:
        merged["name"] = owner_name(project, target)
        _retag(merged, OWNER_TAG_PREFIX + project, OWNER_TAG_PREFIX + merged["name"])
    return merged


def _identity(items: list[Any]) -> str | None:
    """The key that names a list's objects: `slug` (schedules) or `name`; None for other lists."""
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    for key in ("slug", "name"):
        if all(isinstance(item.get(key), str) for item in items):
            return key
    return None


def _merge(base: Any, overrides: Any, where: str) -> Any:
    if isinstance(base, dict) and isinstance(overrides, dict):
        merged = copy.deepcopy(base)
        for key, value in overrides.items():
            merged[key] = (
                _merge(base[key], value, f"{where}.{key}") if key in base else copy.deepcopy(value)
            )
        return merged
    if isinstance(base, list) and isinstance(overrides, dict):
        key = _identity(base)
        if key is None:
            raise TargetError(f"{where}: the declared list has no named objects to override")
        merged = copy.deepcopy(base)
        positions = {item[key]: index for index, item in enumerate(merged)}
        for name, value in overrides.items():
            if not isinstance(value, dict):
                raise TargetError(f"{where}.{name}: expected the object's overrides (a mapping)")
            if name in positions:
                merged[positions[name]] = _merge(merged[positions[name]], value, f"{where}.{name}")
            else:
                merged.append({key: name, **copy.deepcopy(value)})
        return merged
    return copy.deepcopy(overrides)


def _retag(value: Any, old: str, new: str) -> None:
    """Every `tags` list under `value`: `old` replaced by `new`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "tags" and isinstance(item, list):
                value[key] = [new if tag == old else tag for tag in item]
            else:
                _retag(item, old, new)
    elif isinstance(value, list):
        for item in value:
            _retag(item, old, new)


def server_environment(target: Target | None) -> dict[str, str]:
    """PREFECT_API_URL and PREFECT_API_AUTH_STRING for the target's server, from the variables
    it names (none to change for a target that names Prefect's own); TargetError naming the
    variable when the URL's is unset."""
    if target is None or target.url_env == SERVER_FIELDS["url"]:
        return {}
    url = os.environ.get(target.url_env)
    if not url:
        raise TargetError(
            f"target {target.name!r}: set {target.url_env} to its server's API URL "
            f"(e.g. https://prefect.example.com/api)"
        )
    environment = {"PREFECT_API_URL": url}
    auth = os.environ.get(target.auth_string_env)
    if auth:
        environment["PREFECT_API_AUTH_STRING"] = auth
    return environment


@contextmanager
def target_server(target: Target | None) -> Iterator[None]:
    """Within: Prefect's clients, in this process and in the ones it starts (`prefect deploy`),
    reach the target's server."""
    environment = server_environment(target)
    if not environment:
        yield
        return
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates = {PREFECT_API_URL: environment["PREFECT_API_URL"]}
    if "PREFECT_API_AUTH_STRING" in environment:
        updates[PREFECT_API_AUTH_STRING] = environment["PREFECT_API_AUTH_STRING"]
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        with temporary_settings(updates=updates):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def choosing(name: str | None) -> Iterator[None]:
    """Within: `name` is the chosen target (DEPLOYMENTS_TARGET); None, the file's default."""
    saved = os.environ.get(settings.TARGET_ENV)
    if name is None:
        os.environ.pop(settings.TARGET_ENV, None)
    else:
        os.environ[settings.TARGET_ENV] = name
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(settings.TARGET_ENV, None)
        else:
            os.environ[settings.TARGET_ENV] = saved
