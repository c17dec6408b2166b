"""Make the server match prefect.yaml: the pool, `prefect deploy --all`, then the strict
parameter schemas and the automations; with `prune`, delete what the repository owns and no
longer declares. Started by `python -m deployments apply` (see deployments/__main__.py).

Nothing changes on the server until prefect.yaml has been read and checked, the server answered,
and the plan has no conflict (or `adopt` takes the conflicting objects over).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate

from deployments import settings
from deployments.automations import apply_automations
from deployments.check import check_spec
from deployments.plan import AUTOMATION, DEPLOYMENT, Plan, make_plan, render
from deployments.pool import ensure_pool
from deployments.state import Declared, ServerState, digests, load_declared, read_server
from deployments.strict_parameters import apply_strict_parameters

PREFECT = str(Path(sys.executable).with_name("prefect"))  # the CLI of this environment
MAX_VARIABLE_CHARS = 5000  # Prefect's limit on a variable's value
SERVER_POLL_S = 1.0  # how often --wait-for-server asks again


class ApplyError(RuntimeError):
    """A step failed or was refused; the message says which and what to do."""


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


async def _plan(
    client: PrefectClient, path: Path, prune: bool, wait_s: float = 0
) -> tuple[Declared, Plan]:
    await _wait_for_server(client, wait_s)
    declared = await load_declared(client, path)
    server = await read_server(client, declared)
    return declared, make_plan(declared, server, str(client.api_url), prune)


async def plan(path: Path = settings.PREFECT_YAML, prune: bool = False, wait_s: float = 0) -> Plan:
    """Check prefect.yaml, read the server (waiting up to `wait_s` for it to answer) and
    compare; changes nothing."""
    check_spec(path)
    async with get_client() as client:
        return (await _plan(client, path, prune, wait_s))[1]


def _deploy(path: Path) -> None:
    """Prefect's own deploy machinery, as users run it, from the repository root."""
    # Build steps run commands as `python ...`: this environment's, as if it were activated.
    path_env = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run(
        [PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", str(path)],
        cwd=settings.REPO_ROOT,
        env={**os.environ, "PATH": path_env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise ApplyError(
            f"`prefect deploy --all` failed (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )


async def _prune(client: PrefectClient, plan: Plan) -> list[str]:
    """Delete the owned objects no longer declared. The server deletes a deployment's scheduled
    runs with it; runs already pending or running keep going and finish."""
    deleted = []
    for change in plan.of("delete"):
        if change.kind == DEPLOYMENT:
            await client.delete_deployment(UUID(change.server_id))
        else:
            await client.delete_automation(UUID(change.server_id))
        deleted.append(f"{change.kind} {change.name}")
    return deleted


async def _record_applied(client: PrefectClient, declared: Declared, server: ServerState) -> bool:
    """Digests of every owned object's fields as the server now has them (see state.py);
    False when the record would exceed Prefect's variable size (drift then shows as update)."""
    record = {
        DEPLOYMENT: {
            name: digests(fields)
            for name, (_, fields) in server.deployments.items()
            if name in declared.deployments
        },
        AUTOMATION: {
            name: digests(fields)
            for name, (_, fields) in server.automations.items()
            if name in declared.automations
        },
    }
    if len(json.dumps(record)) > MAX_VARIABLE_CHARS:
        return False
    name = declared.applied_variable
    if await client.read_variable_by_name(name) is None:
        await client.create_variable(
            VariableCreate(name=name, value=record, tags=[declared.owner_tag])
        )
    else:
        await client.update_variable(VariableUpdate(name=name, value=record))
    return True


async def apply(
    path: Path = settings.PREFECT_YAML, prune: bool = False, adopt: bool = False, wait_s: float = 0
) -> tuple[Plan, list[str]]:
    """Apply prefect.yaml, once the server answers (waiting up to `wait_s`); return the plan it
    started from and what it did, step by step."""
    check_spec(path)
    pool_limit = settings.current().pool_concurrency_limit
    async with get_client() as client:
        declared, before = await _plan(client, path, prune, wait_s)
        if before.conflicts and not adopt:
            names = ", ".join(f"{c.kind} {c.name}" for c in before.conflicts)
            raise ApplyError(
                f"{names}: on the server without the tag {declared.owner_tag!r}, so not owned by "
                "this repository; nothing was changed. Rename it in prefect.yaml, delete it on "
                "the server, or run `python -m deployments apply --adopt` to take it over."
            )
        done = [
            f"work pool {name} {await ensure_pool(name, pool_limit, pool_type)}"
            for name, pool_type in sorted(declared.pools.items())
        ]
        if any(c.kind == DEPLOYMENT and c.action != "delete" for c in before.changes):
            _deploy(path)
            done.append(f"deployed {', '.join(sorted(declared.deployments))}")
        strict = await apply_strict_parameters(path)
        if strict:
            done.append(f"unknown parameters now refused by {', '.join(strict)}")
        done.append(f"automations applied: {', '.join(await apply_automations(path))}")
        if prune:
            done += [f"deleted {what}" for what in await _prune(client, before)]
        server = await read_server(client, declared)
        if not await _record_applied(client, declared, server):
            done.append("too many objects to record what was applied: drift shows as update")
        after = make_plan(declared, server, str(client.api_url), prune)
        if after.has_changes:
            raise ApplyError(
                "apply finished but the server still differs from prefect.yaml:\n" + render(after)
            )
    return before, done
