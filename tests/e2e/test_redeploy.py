"""Redeploying is idempotent: same ids, one schedule, and the Python path gives the same state."""

from __future__ import annotations

import sys

import pytest

from deployments.spec import load_deployments
from deployments.stack import LocalStack
from tests.live_stack import new_stack, stack_client

pytestmark = pytest.mark.e2e

# Fields the server sets itself, or that legitimately differ between two servers.
VOLATILE = {"id", "created", "updated", "flow_id", "last_polled", "status", "work_queue_id"}
VOLATILE_SCHEDULE = {"id", "created", "updated", "deployment_id"}


def snapshot(stack: LocalStack) -> dict[str, dict]:
    """Every deployment on the stack's server as plain data, minus server-assigned fields."""
    with stack_client(stack) as client:
        deployments = client.read_deployments()
        flows = {f.id: f.name for f in client.read_flows()}
    result = {}
    for deployment in deployments:
        data = deployment.model_dump(mode="json", exclude=VOLATILE)
        data["flow_name"] = flows[deployment.flow_id]
        data["labels"].pop("prefect.flow.id")  # server-assigned, like flow_id
        for schedule in data["schedules"]:
            for key in VOLATILE_SCHEDULE:
                schedule.pop(key)
            schedule["schedule"].pop("anchor_date")  # "now" at every deploy, CLI and Python alike
        result[f"{data['flow_name']}/{deployment.name}"] = data
    return result


def ids_and_schedules(api) -> dict[str, tuple]:
    result = {}
    for deployment in api.read_deployments():
        result[deployment.name] = (deployment.id, [(s.id, s.slug) for s in deployment.schedules])
    return result


def test_second_deploy_keeps_ids_and_a_single_schedule(live_stack, api) -> None:
    before = ids_and_schedules(api)
    live_stack.deploy()
    after = ids_and_schedules(api)
    assert after == before
    assert len(after["greeting-schedule"][1]) == 1
    assert set(after) == {spec.name for spec in load_deployments()}


def test_python_registration_gives_the_same_state_as_the_cli(live_stack, tmp_path_factory) -> None:
    """A fresh server, the pool, then `python -m deployments.register`: compared field by field
    with what `prefect deploy --all` produced on the live stack."""
    fresh = new_stack(
        tmp_path_factory,
        "register",
        pool_name=live_stack.pool_name,
        auth_string=live_stack.auth_string,
        extra_env={},  # a fresh embedded database, even when the live stack uses PostgreSQL
    )
    try:
        fresh.start_server()
        fresh.create_pool()
        fresh.run_cli(sys.executable, "-m", "deployments.register")
        registered = snapshot(fresh)
    finally:
        fresh.down()
    deployed = snapshot(live_stack)
    assert set(registered) == {"compute-squares/compute-squares", "say-hello/greeting-schedule"}
    for name, cli_fields in deployed.items():
        for field, value in cli_fields.items():
            assert registered[name][field] == value, f"{name}: {field} differs"
