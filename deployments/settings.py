"""The single source of truth for names, ports, paths and worker tuning.

Every entry point (the stack runner behind `make up`, the pool and registration scripts, the
tests) reads these values; prefect.yaml gets the pool name from prefect.toml, which this
module reads too.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path


def _whole_number_env(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {raw!r}")
    return int(raw)


REPO_ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = REPO_ROOT / "prefect.yaml"
PREFECT_TOML = REPO_ROOT / "prefect.toml"

# Git-ignored: PREFECT_HOME with the embedded SQLite database, logs and process ids of `make up`.
LOCAL_STATE_DIR = Path(os.environ.get("LOCAL_STATE_DIR", REPO_ROOT / ".prefect-local"))

# The same environment variable Prefect's own `deploy` reads, so one override moves everything.
POOL_NAME_ENV = "PREFECT_DEPLOYMENTS_DEFAULT_WORK_POOL_NAME"
WORK_POOL_NAME = (
    os.environ.get(POOL_NAME_ENV)
    or tomllib.loads(PREFECT_TOML.read_text())["deployments"]["default_work_pool_name"]
)
WORK_POOL_TYPE = "process"

SERVER_HOST = os.environ.get("PREFECT_SERVER_API_HOST", "127.0.0.1")
SERVER_PORT = int(os.environ.get("PREFECT_SERVER_API_PORT", "4200"))

# Where the worker finds the flow code: prefect.yaml's pull step changes into this directory at
# run time, so neither the deploying machine's path nor the worker's start directory matters.
FLOW_CODE_DIR_ENV = "FLOW_CODE_DIR"

# `PREFECT_AUTH=1 make up` turns on basic auth for the local stack as in docker-compose.yml.
AUTH_ENV = "PREFECT_AUTH"

# Nothing may call out: the SDK honours DO_NOT_TRACK, the server its analytics setting.
NO_TELEMETRY_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
}

# Zombie detection (deployments/automations.py). Every flow-run process sends a heartbeat event
# this often (Prefect's minimum is 30 s, its default 180 s); a run that sends none for
# ZOMBIE_AFTER_S, three missed heartbeats so one late beat is not a crash, is marked CRASHED.
FLOW_HEARTBEAT_S = 30
ZOMBIE_AFTER_S = 3 * FLOW_HEARTBEAT_S

# Server tuning. A run held back by a deployment concurrency limit (collision strategy ENQUEUE)
# is rescheduled this far ahead; Prefect's default of 30 s leaves a freed slot idle for up to 30 s.
SERVER_ENV = {
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
}

# Worker tuning. Prefect's default polls every 10 s; 2 s keeps pickup fast without making the
# embedded SQLite server busy. The flow-run processes inherit the worker's environment, so the
# heartbeat setting goes here too.
WORKER_ENV = {
    "PREFECT_WORKER_QUERY_SECONDS": "2",
    "PREFECT_WORKER_PREFETCH_SECONDS": "10",
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(FLOW_HEARTBEAT_S),
}

# Prefect's own values of the settings above, for `make bench` to compare against.
PREFECT_DEFAULTS_ENV = {
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "30",
    "PREFECT_WORKER_QUERY_SECONDS": "10",
    "PREFECT_WORKER_PREFETCH_SECONDS": "10",
}

# How many flow runs one worker runs at once. Prefect's default is no limit: a worker then takes
# every scheduled run it sees, leaving none to the pool's other workers, and a burst makes a small
# machine thrash. Each run is a process of its own (importing Prefect alone takes 2.5 s of CPU).
WORKER_LIMIT = _whole_number_env("WORKER_LIMIT", 4)

# Optional: at most this many runs at once across the whole pool, whatever the number of workers.
# Unset, the pool has no limit; `python -m deployments.pool` applies it.
POOL_CONCURRENCY_LIMIT_ENV = "POOL_CONCURRENCY_LIMIT"
POOL_CONCURRENCY_LIMIT = _whole_number_env(POOL_CONCURRENCY_LIMIT_ENV, None)

# The worker's health endpoint (Prefect's `--with-healthcheck`), on loopback, polled by
# deployments/worker_supervisor.py, which restarts a worker that stays unhealthy.
WORKER_HEALTH_PORT = _whole_number_env("WORKER_HEALTH_PORT", 4201)

# How long `make up` and the tests wait for a process to become healthy or to stop.
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
