"""Runs a worker took and never started: a worker marks a run PENDING before it starts the run's
process, and when it is stopped or killed in between, no worker looks at that run again.

prefect.yaml's automation crash-stuck-pending-flow-runs crashes such a run from its Pending
event. The server keeps events in memory until its triggers service has read them, so a run that
turned PENDING just before the server stopped (`make down`, a crash) has no event left to act
on. The worker supervisor (stack/worker_supervisor.py) therefore also sweeps its process pool: a
run PENDING for longer than the zombie window is marked CRASHED with the same explanation.

A RUNNING run whose process died while its server was away is not swept: Prefect's process worker
records only the bare pid (no machine), so from here it cannot tell a dead process of this
machine from a live one on another.

    crashed = sweep_pool(api_url, auth_string, pool_name, older_than_s)
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from stack.processes import csrf_headers

MESSAGE = (
    "PENDING for {seconds} s and its process never started: the worker that took the run "
    "stopped before starting it."
)


def sweep_pool(
    api_url: str, auth_string: str | None, pool_name: str, older_than_s: float
) -> list[str]:
    """Mark CRASHED every run of `pool_name` PENDING for longer than `older_than_s`; the names of
    those it marked. Raises httpx.HTTPError when the server does not answer."""
    user, _, password = (auth_string or "").partition(":")
    with httpx.Client(
        base_url=api_url.rstrip("/"), auth=(user, password) if auth_string else None, timeout=10
    ) as http:
        headers = csrf_headers(http, "worker-supervisor")
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
        crashed = []
        for run in response.json():
            since = datetime.fromisoformat(run["state"]["timestamp"])
            if (now - since).total_seconds() <= older_than_s:
                continue
            state = {
                "type": "CRASHED",
                "name": "Crashed",
                "message": MESSAGE.format(seconds=round(older_than_s)),
            }
            answer = http.post(
                f"/flow_runs/{run['id']}/set_state", json={"state": state}, headers=headers
            )
            if answer.status_code < 300 and answer.json().get("status") == "ACCEPT":
                crashed.append(run["name"])
        return crashed
