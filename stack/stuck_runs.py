"""Runs left behind, which no worker and no automation would ever end, and the worker supervisor
(stack/worker_supervisor.py) marks CRASHED, each with why:

- **PENDING, never started.** A worker marks a run PENDING before it starts the run's process;
  when it is stopped or killed in between, no worker looks at that run again. prefect.yaml's
  automation crash-stuck-pending-flow-runs crashes such a run from its Pending event, but the
  server keeps events in memory until its triggers service has read them, so a run that turned
  PENDING just before the server stopped (`make down`, a crash) has no event left to act on.
  `sweep_pool` marks a run of the pool PENDING for longer than the zombie window, unless its
  recorded process runs: one that started while its server was away reports once it is back.
- **Its process gone.** A flow-run process killed while its server was away (or stopping) sends
  no final state, and when the server never read a heartbeat of it the zombie rule has nothing
  to act on either. Prefect's process worker records only the bare pid (no machine), so the
  server cannot tell. Each flow-run process therefore records itself on its own machine
  (`record_process`, in FLOW_RUN_PROCESSES_DIR, which the supervisor sets) and removes the
  record when its engine returns; `sweep_processes` marks a RUNNING or PENDING run whose
  recorded process is gone (its pid ended, or now names a process started at another time), and
  forgets the records of processes that are gone.

    crashed = sweep_pool(api_url, auth_string, pool_name, older_than_s, processes_dir)
    crashed = sweep_processes(api_url, auth_string, processes_dir)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from stack.processes import api_trust, csrf_headers, start_time

NEVER_STARTED = (
    "PENDING for {seconds} s and its process never started: the worker that took the run "
    "stopped before starting it."
)
PROCESS_GONE = (
    "Its flow-run process (pid {pid}) ended without reporting a final state: it was killed, or "
    "stopped while its server was away."
)
# Runs whose process may still report; any other state needs no process of this machine.
UNFINISHED = ("RUNNING", "PENDING")


def sweep_pool(
    api_url: str,
    auth_string: str | None,
    pool_name: str,
    older_than_s: float,
    processes_dir: Path | None = None,
) -> list[str]:
    """Mark CRASHED every run of `pool_name` PENDING for longer than `older_than_s`, unless its
    process, recorded in `processes_dir`, runs (it started, and reports once it reaches the
    server); the names of those it marked. Raises httpx.HTTPError when the server does not
    answer."""
    started = _live_runs(processes_dir, api_url.rstrip("/")) if processes_dir else set()
    with _api(api_url, auth_string) as (http, headers):
        response = http.post(
            "/flow_runs/filter",
            json={
                "flow_runs": {"state": {"type": {"any_": ["PENDING"]}}},
                "work_pools": {"name": {"any_": [pool_name]}},
                "limit": 200,
            },
            headers=headers,
        )
        response.raise_for_status()
        now = datetime.now(UTC)
        message = NEVER_STARTED.format(seconds=round(older_than_s))
        return [
            run["name"]
            for run in response.json()
            if run["id"] not in started
            and (now - datetime.fromisoformat(run["state"]["timestamp"])).total_seconds()
            > older_than_s
            and _crash(http, headers, run["id"], message)
        ]


def record_process(directory: Path, flow_run_id: str, api_url: str) -> Path:
    """Record this process as `flow_run_id`'s, for the server at `api_url`: the file to remove
    when the run's process ends."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{flow_run_id}.{os.getpid()}"
    record = {"api_url": api_url.rstrip("/"), "started": start_time(os.getpid())}
    # Written whole, then renamed: a sweep never reads half a record.
    partial = path.with_name(f"{path.name}.partial")
    partial.write_text(json.dumps(record))
    partial.rename(path)
    return path


def sweep_processes(api_url: str, auth_string: str | None, directory: Path) -> list[str]:
    """Mark CRASHED every RUNNING or PENDING run whose process, recorded in `directory` for
    this server, is gone; forget every record whose process is gone and whose run the server
    answered for. The names of the runs it marked. Raises httpx.HTTPError when the server does
    not answer."""
    gone = list(_records_for(directory, api_url.rstrip("/")))
    if not gone:
        return []
    crashed = []
    with _api(api_url, auth_string) as (http, headers):
        for path, run_id, pid in gone:
            response = http.get(f"/flow_runs/{run_id}", headers=headers)
            if response.status_code == 404:
                path.unlink(missing_ok=True)
                continue
            response.raise_for_status()
            run = response.json()
            state = (run.get("state") or {}).get("type")
            if state in UNFINISHED and _crash(http, headers, run_id, PROCESS_GONE.format(pid=pid)):
                crashed.append(run["name"])
            path.unlink(missing_ok=True)
    return crashed


def _records_for(directory: Path, api_url: str) -> Iterator[tuple[Path, str, int]]:
    """The records in `directory` for the server at `api_url` whose process is gone (its pid
    ended, or names a process started at another time), with their run id and pid."""
    for path, run_id, pid, alive in _records(directory, api_url):
        if not alive:
            yield path, run_id, pid


def _live_runs(directory: Path, api_url: str) -> set[str]:
    """The runs whose recorded process for the server at `api_url` is running."""
    return {run_id for _, run_id, _, alive in _records(directory, api_url) if alive}


def _records(directory: Path, api_url: str) -> Iterator[tuple[Path, str, int, bool]]:
    """Each whole record in `directory` for the server at `api_url`: its path, run id, pid, and
    whether that process still runs (the pid names a process started when the record says)."""
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        run_id, _, pid = path.name.partition(".")
        if not pid.isdigit():
            continue  # a record being written
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("api_url") == api_url:
            yield path, run_id, int(pid), start_time(int(pid)) == record.get("started")


@contextmanager
def _api(api_url: str, auth_string: str | None) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """A client of the server's API with basic auth (when given) and its CSRF headers."""
    user, _, password = (auth_string or "").partition(":")
    with httpx.Client(
        base_url=api_url.rstrip("/"),
        auth=(user, password) if auth_string else None,
        timeout=10,
        verify=api_trust(),
    ) as http:
        yield http, csrf_headers(http, "worker-supervisor")


def _crash(http: httpx.Client, headers: dict[str, str], run_id: str, message: str) -> bool:
    """Propose CRASHED with `message`; whether the server accepted it."""
    state = {"type": "CRASHED", "name": "Crashed", "message": message}
    answer = http.post(f"/flow_runs/{run_id}/set_state", json={"state": state}, headers=headers)
    return answer.status_code < 300 and answer.json().get("status") == "ACCEPT"
