"""The stacks `make bench` measures: the same LocalStack that `make up` runs, with Prefect's
default settings, with this repository's tuned ones (deployments/settings.py), and with the tuned
ones on PostgreSQL (a throwaway cluster) as the compose stack runs them."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from deployments import settings
from stack.local import LocalStack
from stack.postgres import POSTGRES_INSTALL_HINT, PostgresCluster, postgres_binaries_found
from stack.processes import free_port, tree_cpu_seconds

# The server logs every request at INFO (uvicorn's access log): that is how 503s are counted.
ACCESS_LOG_ENV = {"PREFECT_SERVER_LOGGING_LEVEL": "INFO"}

# The stacks running_stack has up, from any thread.
LIVE_STACKS: set[LocalStack] = set()

VARIANTS = {
    "default": settings.PREFECT_DEFAULTS_ENV,
    "tuned": {},  # LocalStack applies the settings' server_env() and worker_env() itself
    "postgres": {},  # tuned, with the database of _database_env
}


def postgres_binaries_missing() -> str | None:
    """What is missing to run the PostgreSQL variant, or None."""
    if postgres_binaries_found():
        return None
    return (
        f"the PostgreSQL server binaries (initdb, pg_ctl) are not on PATH: {POSTGRES_INSTALL_HINT}"
        " (`make bench` adds the bin directory)"
    )


@contextlib.contextmanager
def _database_env(variant: str) -> Iterator[dict[str, str]]:
    """The server's database settings: embedded SQLite, or a fresh PostgreSQL cluster."""
    if variant != "postgres":
        yield {}
        return
    cluster = PostgresCluster().start()
    try:
        yield {"PREFECT_SERVER_DATABASE_CONNECTION_URL": cluster.async_url}
    finally:
        cluster.stop()


@contextlib.contextmanager
def running_stack(variant: str, root: Path) -> Iterator[tuple[LocalStack, float]]:
    """A fresh stack (server, pool, deployments, supervised worker) and the seconds `up` took,
    which is what `make up` does once `.venv` exists."""
    with _database_env(variant) as database_env:
        stack = LocalStack(
            state_dir=root / variant,
            port=free_port(),
            pool_name=f"bench-{variant}-{uuid.uuid4().hex[:6]}",
            worker_health_port=free_port(),
            extra_env={**ACCESS_LOG_ENV, **VARIANTS[variant], **database_env},
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


def stack_cpu_seconds(stack: LocalStack) -> float:
    """CPU seconds used so far by the stack's server and worker supervisor, their live
    descendants (worker, flow-run processes) and the children they have already reaped."""
    return tree_cpu_seconds(*(pid for pid in (stack.server.pid, stack.worker.pid) if pid))
