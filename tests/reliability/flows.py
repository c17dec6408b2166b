"""Flows for the tests only, deployed by the tests on their stacks' pools, never by prefect.yaml:
one runs as long as asked, so a test can kill it mid-run; one leaves a marker file per execution,
so a test can count how often each run really executed; the rest show what a flow-run process is
(launcher tests): its id, environment and output, its exit code, a failure."""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
import uuid
from pathlib import Path

from prefect import flow, get_run_logger, pause_flow_run
from prefect.runtime import flow_run

# Set by the tests on each worker they start; the flow-run process inherits it.
WORKER_NAME_ENV = "RELIABILITY_WORKER_NAME"


@flow
def sleep_for(seconds: float) -> float:
    """Stay RUNNING for `seconds` (no default: the parameter is required)."""
    time.sleep(seconds)
    return seconds


@flow
def leave_marker(directory: str, seconds: float = 0) -> str:
    """Write one file `<flow run id>.<random>` naming the worker into `directory`, then stay
    RUNNING for `seconds`. A run executed twice leaves two files with its id."""
    marker = Path(directory) / f"{flow_run.get_id()}.{uuid.uuid4().hex}"
    marker.write_text(os.environ.get(WORKER_NAME_ENV, "unknown"))
    time.sleep(seconds)
    return marker.name


# Module state: a flow-run process that shared it with another run would count past 1.
CALLS_IN_THIS_PROCESS = 0


@flow
def describe_process(
    directory: str, env_name: str = "", seconds: float = 0, library: str = ""
) -> None:
    """Print and log a line naming the run, then write `<flow run id>.json` into `directory`: the
    process id, its parent's command line (the warm launcher, or the worker), the value of
    `env_name`, and how often this process ran the flow. Stays RUNNING for `seconds` first.
    With `library`, first loads that shared library by name, as the dynamic loader finds it
    (LD_LIBRARY_PATH), and fails when it cannot."""
    global CALLS_IN_THIS_PROCESS
    CALLS_IN_THIS_PROCESS += 1
    if library:
        ctypes.CDLL(library)
    run_id = flow_run.get_id()
    print(f"stdout of flow run {run_id}", flush=True)
    get_run_logger().info(f"log line of flow run {run_id}")
    (Path(directory) / f"{run_id}.pid").write_text(str(os.getpid()))
    time.sleep(seconds)
    facts = {
        "pid": os.getpid(),
        "parent": Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode(),
        "env": os.environ.get(env_name) if env_name else None,
        "calls": CALLS_IN_THIS_PROCESS,
    }
    (Path(directory) / f"{run_id}.json").write_text(json.dumps(facts))


@flow
def exit_with(code: int) -> None:
    """End the flow-run process at once with exit code `code`, as a crash would."""
    sys.stdout.flush()
    os._exit(code)


@flow
def raise_error(message: str) -> None:
    """Fail the way a flow fails: with an exception."""
    raise ValueError(message)


@flow
def pause_then_finish() -> str:
    """Pause in its process until resumed (or 10 minutes), then complete."""
    pause_flow_run(timeout=600)
    return "resumed"
