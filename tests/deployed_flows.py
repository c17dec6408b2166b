"""Shared by tests/e2e and tests/reliability: the flows of tests/reliability/flows.py deployed by a
test on a stack's pool (never by prefect.yaml), the worker a stack's supervisor runs, and the
heartbeats a flow run sends. A plugin of tests/conftest.py, so its fixtures serve every folder."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from prefect import Flow
from prefect.client.orchestration import SyncPrefectClient

from deployments.register import deploy_flow
from stack.local import LocalStack
from stack.processes import live_children, proc_cmdline
from tests.reliability.flows import sleep_for

SLOW_DEPLOYMENT = "sleep-for/reliability-slow"


@contextmanager
def deployed_test_flow(
    api: SyncPrefectClient,
    pool_name: str,
    flow: Flow,
    full_name: str,
    job_variables: dict | None = None,
):
    """`flow` from tests/reliability/flows.py deployed on `pool_name` as prefect.yaml deploys its
    flows (deployments.register.deploy_flow); deleted afterwards, so shared stacks keep only
    prefect.yaml's deployments."""
    name = full_name.split("/", 1)[1]
    deployment_id = deploy_flow(api, flow, name, pool_name, job_variables)
    try:
        yield api.read_deployment(deployment_id)
    finally:
        api.delete_deployment(deployment_id)


@pytest.fixture
def slow_deployment(live_stack: LocalStack, api: SyncPrefectClient):
    """sleep_for on the live stack's pool: a run that stays RUNNING as long as asked, and whose
    one parameter is required."""
    with deployed_test_flow(api, live_stack.pool_name, sleep_for, SLOW_DEPLOYMENT) as deployment:
        yield deployment


def flow_run_heartbeats(api: SyncPrefectClient, flow_run_id) -> list[dict]:
    """The `prefect.flow-run.heartbeat` events the server has stored for the flow run."""
    response = api._client.post(
        "/events/filter",
        json={
            "filter": {
                "event": {"name": ["prefect.flow-run.heartbeat"]},
                "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
            }
        },
    )
    response.raise_for_status()
    return response.json()["events"]


def automation_firings(api: SyncPrefectClient, automation_name: str) -> list[str]:
    """The resources (`prefect.resource.id` of the bucket, e.g. a flow run) each firing of the
    named automations acted for, every page of the server's events."""
    ids = {str(automation.id) for automation in api.read_automations_by_name(automation_name)}
    response = api._client.post(
        "/events/filter",
        json={
            "filter": {
                "event": {"name": ["prefect.automation.triggered"]},
                "resource": {"id": [f"prefect.automation.{i}" for i in ids]},
            },
            "limit": 50,
        },
    )
    fired = []
    while True:
        response.raise_for_status()
        page = response.json()
        fired += [
            event["payload"].get("triggering_labels", {}).get("prefect.resource.id", "")
            for event in page["events"]
        ]
        if not page.get("next_page"):
            return fired
        response = api._client.get(page["next_page"])


def supervised_worker_pid(stack: LocalStack) -> int | None:
    """The worker that the stack's supervisor (its recorded worker process) runs as its child,
    beside the warm launcher."""
    return _supervised_child(stack, "worker start")


def supervised_launcher_pid(stack: LocalStack) -> int | None:
    """The warm launcher that the stack's supervisor runs beside the worker."""
    return _supervised_child(stack, "stack.launcher")


def _supervised_child(stack: LocalStack, word: str) -> int | None:
    for pid in live_children(stack.worker.pid):
        if word in proc_cmdline(pid):
            return pid
    return None
