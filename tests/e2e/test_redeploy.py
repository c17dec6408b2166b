"""Redeploying is idempotent: same ids, one schedule, and the Python path gives the same state."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from deployments.spec import load_deployments
from stack.local import PREFECT, LocalStack
from tests.live_stack import new_stack, stack_client, wait_until

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
        if data["global_concurrency_limit"]:  # its name holds the deployment id
            for key in (*VOLATILE_SCHEDULE, "name"):
                data["global_concurrency_limit"].pop(key, None)
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


def scheduled_runs(api) -> list:
    deployment = api.read_deployment_by_name("say-hello/greeting-schedule")
    return api.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
    )


def test_three_more_deploys_keep_ids_one_schedule_and_no_duplicate_runs(live_stack, api) -> None:
    """Users' own `prefect deploy --all`, each followed by the apply of a second `make up`."""
    before = ids_and_schedules(api)
    for _ in range(3):
        last_deploy = datetime.now(UTC)
        live_stack.run_cli(PREFECT, "--no-prompt", "deploy", "--all")
        live_stack.apply()
    after = ids_and_schedules(api)
    assert after == before
    assert len(after["greeting-schedule"][1]) == 1
    assert set(after) == {spec.name for spec in load_deployments()}

    # Each deploy deletes the upcoming runs it would change and the scheduler creates them again.
    # Once it has done so after the last deploy, every run due after that deploy started must
    # be 300 s from the next: a run the deploys left behind, or created twice, is closer.
    def refilled() -> list:
        runs = scheduled_runs(api)
        return runs if sum(run.created >= last_deploy for run in runs) >= 2 else []

    runs = wait_until(refilled, 90, "two or more runs scheduled after the last deploy")
    starts = sorted(
        run.expected_start_time for run in runs if run.expected_start_time >= last_deploy
    )
    gaps = [(b - a).total_seconds() for a, b in pairwise(starts)]
    assert len(gaps) >= 1 and all(gap >= 300 for gap in gaps), f"runs closer than 300 s: {starts}"


# The two registration paths are compared, not the databases: the fresh server is embedded SQLite
# whatever the live stack runs on, so one backend says it all.
@pytest.mark.parametrize("live_stack", ["sqlite"], indirect=True)
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
        with stack_client(fresh) as client:
            client.create_work_pool(WorkPoolCreate(name=fresh.pool_name, type="process"))
        fresh.run_cli(sys.executable, "-m", "deployments.register")
        registered = snapshot(fresh)
    finally:
        fresh.down()
    deployed = snapshot(live_stack)
    assert set(registered) == {"compute-squares/compute-squares", "say-hello/greeting-schedule"}
    for name, cli_fields in deployed.items():
        for field, value in cli_fields.items():
            assert registered[name][field] == value, f"{name}: {field} differs"
