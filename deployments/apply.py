"""Make the server match the repository: one pass over the table of kinds (deployments/kinds/)
that creates and updates, in order, then, with `prune`, one that deletes owned objects no longer
declared, in reverse. Started by `python -m deployments apply` (deployments/__main__.py).

Nothing changes on the server until the prefect file has been read and checked, the server
answered, and the plan has no conflict (or `adopt` takes the conflicting objects over). The
applied record is written however the pass ends, so an object created before a failure stays
the repository's own.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prefect.client.orchestration import PrefectClient, get_client

from deployments import settings
from deployments.check import check_spec
from deployments.declarations import load_declarations
from deployments.kinds import KINDS
from deployments.kinds.base import ApplyError
from deployments.plan import OWNER, Plan, make_plan, read_view, render
from deployments.record import Record, digest, write_record
from deployments.view import ServerView

SERVER_POLL_S = 1.0  # how often --wait-for-server asks again

__all__ = ["ApplyError", "apply", "plan"]


async def _health_error(client: PrefectClient, timeout_s: float | None) -> Exception | None:
    """The health check's error, None when the server answered. Prefect's client retries a 502
    or 503 itself for about a minute; `timeout_s` bounds that too."""
    try:
        return await asyncio.wait_for(client.api_healthcheck(), timeout_s)
    except TimeoutError:
        return TimeoutError(f"no answer within {timeout_s:g} s")


async def _wait_for_server(client: PrefectClient, wait_s: float) -> None:
    """Return once the server answers its health check; after `wait_s` seconds without an
    answer (at once for 0), raise ApplyError naming the server and its last error."""
    deadline = time.monotonic() + wait_s
    while True:
        remaining = deadline - time.monotonic()
        error = await _health_error(client, max(remaining, SERVER_POLL_S) if wait_s else None)
        if error is None:
            return
        if time.monotonic() >= deadline:
            within = f" within {wait_s:g} s" if wait_s else ""
            raise ApplyError(
                f"the Prefect server at {client.api_url} did not answer{within}: {error}"
            )
        await asyncio.sleep(SERVER_POLL_S)


async def read_server(client: PrefectClient, path: Path, wait_s: float) -> ServerView:
    """Check the prefect file, wait up to `wait_s` for the server to answer, and read it."""
    check_spec(path)
    declarations = load_declarations(path)
    await _wait_for_server(client, wait_s)
    return await read_view(client, declarations)


async def _plan(
    client: PrefectClient, path: Path, prune: bool, wait_s: float
) -> tuple[ServerView, Plan]:
    view = await read_server(client, path, wait_s)
    return view, make_plan(view, str(client.api_url), prune)


async def plan(path: Path = settings.PREFECT_YAML, prune: bool = False, wait_s: float = 0) -> Plan:
    """Check the prefect file, read the server (waiting up to `wait_s` for it to answer) and
    compare; changes nothing."""
    async with get_client() as client:
        return (await _plan(client, path, prune, wait_s))[1]


def record_of(view: ServerView) -> Record:
    """Every owned object as the server now has it: its id, and a digest of each field that is
    not secret."""
    record: Record = {}
    for kind in KINDS:
        entries = {}
        for obj in view.objects.get(kind.name, []):
            if not view.owns(kind, obj):
                continue
            secrets = kind.secret_fields(obj.key, obj.fields)
            entries[obj.key] = {
                "id": obj.id,
                "fields": {f: digest(v) for f, v in obj.fields.items() if f not in secrets},
            }
        record[kind.name] = entries
    return record


async def _apply(client: PrefectClient, view: ServerView, before: Plan, done: list[str]) -> None:
    """Carry `before` out, appending each step to `done`; each kind is read again after it
    changed, for the kinds after it (an automation's block, a queue's pool)."""
    for kind in KINDS:
        changes = [
            c
            for c in before.changes
            if c.kind == kind.name and c.action in ("create", "update", "conflict")
        ]
        if changes:
            done += await kind.apply_changes(client, changes, view)
            view.objects[kind.name] = await kind.read(client, view)
    for kind in reversed(KINDS):
        deletes = [c for c in before.of("delete", kind.name) if before.pending(c)]
        for change in deletes:
            obj = next(o for o in view.objects[kind.name] if o.id == change.server_id)
            await kind.delete(client, obj)
            done.append(f"deleted {kind.name} {change.name}")


async def _record(client: PrefectClient, view: ServerView, changed: bool) -> None:
    """The record of what is owned now, written when it differs from the one in force."""
    if changed:
        for kind in KINDS:
            view.objects[kind.name] = await kind.read(client, view)
    record = record_of(view)
    if record != view.record or (view.source and view.source != view.applied_from):
        declarations = view.declarations
        await write_record(
            client, declarations.owner_slug, declarations.owner_tag, record, view.source
        )


async def apply(
    path: Path = settings.PREFECT_YAML, prune: bool = False, adopt: bool = False, wait_s: float = 0
) -> tuple[Plan, list[str]]:
    """Apply the prefect file, once the server answers (waiting up to `wait_s`); return the plan
    it started from and what it did, step by step."""
    async with get_client() as client:
        view, before = await _plan(client, path, prune, wait_s)
        if before.conflicts and not adopt:
            if view.owner_taken:
                raise ApplyError(
                    f"owner {view.declarations.owner_tag!r} was applied to this server from "
                    f"{view.applied_from}, not from this repository ({view.source}); nothing "
                    "was changed. Give prefect.yaml a `name` of its own, or, if this is that "
                    "repository at a new address, run `python -m deployments apply --adopt`."
                )
            names = ", ".join(f"{c.kind} {c.name}" for c in before.conflicts)
            raise ApplyError(
                f"{names}: on the server but not owned by this repository (owner "
                f"{view.declarations.owner_tag!r}); nothing was changed. Rename it in the "
                "repository, delete it on the server, or run `python -m deployments apply "
                "--adopt` to take it over."
            )
        view.adopt = adopt
        done = [
            f"took owner {c.name} over from {view.applied_from}"
            for c in before.of("conflict", OWNER)
        ]
        try:
            await _apply(client, view, before, done)
        finally:
            await _record(client, view, changed=bool(done or view.created))
        if done:
            after = make_plan(
                await read_view(client, view.declarations), str(client.api_url), prune
            )
            if after.has_changes:
                raise ApplyError(
                    "apply finished but the server still differs from the repository:\n"
                    + render(after)
                )
    return before, done
