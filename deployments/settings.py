"""The single source of truth for names, ports, paths and worker tuning.

Every entry point (the stack runner behind `make up`, the pool and registration scripts, the
tests) reads these values; prefect.yaml gets the pool name from prefect.toml, which this
module reads too.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

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

# Worker tuning. Prefect's default polls every 10 s; 2 s keeps pickup fast without making the
# embedded SQLite server busy.
WORKER_ENV = {
    "PREFECT_WORKER_QUERY_SECONDS": "2",
    "PREFECT_WORKER_PREFETCH_SECONDS": "10",
}

# How long `make up` and the tests wait for a process to become healthy or to stop.
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
