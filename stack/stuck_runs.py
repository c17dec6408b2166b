"""Runs of a process pool that nothing will ever end: the worker supervisor
(stack/worker_supervisor.py) sweeps its pool for them every SWEEP_EVERY_S and marks them CRASHED,
naming why.

- PENDING for longer than the zombie window: a worker marks a run PENDING before it starts the
  run's process, and when it is stopped or killed in between, no worker looks at that run again.
- RUNNING for longer than the zombie window while the process the worker started for it on this
  machine (its infrastructure pid, `host:pid`) is gone: killed, and its server was away when it
  tried to report.

prefect.yaml's automations (crash-stuck-pending-flow-runs, crash-zombie-flow-runs) end such runs
from their events. But the server keeps events in memory until its triggers service has read
them, so a run whose last events arrived just before the server stopped (`make down`, a crash)
has nothing left for them to act on. Runs of workers on other machines are left to the
automations: their processes cannot be seen from here.

    crashed = sweep_pool(api_url, auth_string, pool_name, older_than_s)
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import httpx
import psutil

from stack.processes import csrf_headers

PENDING_MESSAGE = (
    "PENDING for {seconds} s and its process never started: the worker that took the run "
    "stopped before starting it."
)
GONE_MESSAGE = (
    "RUNNING, but its process {pid} on {host} is gone and reported no final state (found by "
    "the worker supervisor)."
)


def _process_is_gone(infrastructure_pid: str | None, started: datetime) -> bool:
    """Whether the run's process on this machine no longer runs: no process has its pid, or the
    one that has it started well after the run did (the pid was reused). A pid of another
    machine is never judged."""
    host, _, pid = (infrastructure_pid or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        process = psutil.Process(int(pid))
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        return process.create_time() > started.timestamp() + 60
    except psutil.NoSuchProcess:
        return True


def sweep_pool(
    api_url: str, auth_string: str | None, pool_name: str, older_than_s: float
) -> list[str]:
    """Mark CRASHED the runs of `pool_name` described above; the names of those it marked.
    Raises httpx.HTTPError when the server does not answer."""
    user, _, password = (auth_string or "").partition(":")
    with httpx.Client(
        base_url=api_url.rstrip("/"), auth=(user, password) if auth_string else None, timeout=10
    ) as http:
        headers = csrf_headers(http, "worker-supervisor")
        response = http.post(
            "/flow_runs/filter",
            json={
                "flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING"]}}},
                "work_pools": {"name": {"any_": [pool_name]}},
                "limit": 200,
            },
            headers=headers,
        )
        response.raise_for_status()
        now = datetime.now(UTC)
        crashed = []
        for run in response.json():
            since = datetime.fromisoformat(run["state"]["timestamp"])
            if (now - since).total_seconds() <= older_than_s:
                continue
            if run["state"]["type"] == "PENDING":
                message = PENDING_MESSAGE.format(seconds=round(older_than_s))
            elif _process_is_gone(run.get("infrastructure_pid"), since):
                host, _, pid = run["infrastructure_pid"].rpartition(":")
                message = GONE_MESSAGE.format(pid=pid, host=host)
            else:
                continue
            state = {"type": "CRASHED", "name": "Crashed", "message": message}
            answer = http.post(
                f"/flow_runs/{run['id']}/set_state", json={"state": state}, headers=headers
            )
            if answer.status_code < 300 and answer.json().get("status") == "ACCEPT":
                crashed.append(run["name"])
        return crashed
