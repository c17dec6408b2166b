"""Flows for the reliability tests only, deployed by the tests on their own pools, never by
prefect.yaml: one runs as long as asked, so a test can kill it mid-run; one leaves a marker file
per execution, so a test can count how often each run really executed."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from prefect import flow
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
