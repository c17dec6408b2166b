"""`python -m deployments plan/apply` against a real server: exit codes, create, update and
delete field by field, drift, prune of owned objects only, conflicts, and stable ids."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import DeploymentUpdate, VariableCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import StateType
from prefect.states import Running

from deployments import settings
from deployments.spec import owner_tag
from stack.local import LocalStack
from tests.live_stack import new_stack, stack_client, unique, wait_until

SQUARES = "compute-squares/compute-squares"
HELLO = "say-hello/greeting-schedule"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalStack]:
    """A fresh server and nothing else: no pool, no deployment, no worker."""
    stack = new_stack(tmp_path_factory, "plan-apply")
    try:
        stack.start_server()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def api(server: LocalStack) -> Iterator[SyncPrefectClient]:
    with stack_client(server) as client:
        yield client


def cli(stack: LocalStack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m deployments ...` against `stack`, with `env` added to its environment."""
    return subprocess.run(
        [sys.executable, "-m", "deployments", *args],
        env={**stack.env, **env},
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def plan_json(stack: LocalStack, *args: str, **env: str) -> tuple[int, dict]:
    result = cli(stack, "plan", "--json", *args, **env)
    assert result.returncode in (0, 1, 2), result.stderr
    return result.returncode, json.loads(result.stdout)


def applied(stack: LocalStack, *args: str) -> str:
    result = cli(stack, "apply", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def changes(plan: dict, action: str) -> dict[str, dict]:
    return {c["name"]: c for c in plan["changes"] if c["action"] == action}


def edited_prefect_yaml(tmp_path: Path, edit) -> Path:
    """A copy of prefect.yaml with `edit(raw)` applied, as a user's working copy would be."""
    raw = yaml.safe_load(settings.PREFECT_YAML.read_text())
    edit(raw)
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def ids(api: SyncPrefectClient) -> dict[str, tuple]:
    flows = {flow.id: flow.name for flow in api.read_flows()}
    return {
        f"{flows[d.flow_id]}/{d.name}": (d.id, sorted((s.slug, s.id) for s in d.schedules))
        for d in api.read_deployments()
    }


def test_fresh_server_plan_apply_plan_and_a_second_apply_keeps_ids(server, api) -> None:
    code, plan = plan_json(server)
    assert code == 2
    assert plan["pools_to_create"] == [server.pool_name]
    created = changes(plan, "create")
    assert set(created) == {SQUARES, HELLO, "crash-zombie-flow-runs"}
    fields = {f["field"]: f for f in created[HELLO]["fields"]}
    assert fields["schedules"]["declared"] == [
        {"slug": "every-5-minutes", "active": True, "interval_s": 300.0}
    ]
    assert fields["work_pool"] == {
        "field": "work_pool",
        "server": None,
        "declared": server.pool_name,
        "drift": False,
    }

    applied(server)
    assert cli(server, "plan").returncode == 0
    first = ids(api)
    assert set(first) == {SQUARES, HELLO}
    assert all(owner_tag() in d.tags for d in api.read_deployments())

    assert "deployed" not in applied(server)  # nothing to deploy: the plan was empty
    assert ids(api) == first


def test_out_of_band_edit_is_drift_and_apply_undoes_it(server, api) -> None:
    applied(server)
    squares = api.read_deployment_by_name(SQUARES)
    api.update_deployment(squares.id, DeploymentUpdate(parameters={"numbers": [7]}))
    hello = api.read_deployment_by_name(HELLO)
    (schedule,) = hello.schedules
    api.update_deployment_schedule(hello.id, schedule.id, active=False)

    code, plan = plan_json(server)
    assert code == 2
    updates = changes(plan, "update")
    (parameters,) = updates[SQUARES]["fields"]
    assert parameters == {
        "field": "parameters",
        "server": {"numbers": [7]},
        "declared": {"numbers": [2, 4, 6]},
        "drift": True,
    }
    (schedules,) = updates[HELLO]["fields"]
    assert schedules["field"] == "schedules" and schedules["drift"]
    assert [s["active"] for s in schedules["server"]] == [False]
    text = cli(server, "plan").stdout
    assert 'parameters (drift): server {"numbers": [7]} -> declared' in text

    applied(server)
    assert api.read_deployment_by_name(SQUARES).parameters == {"numbers": [2, 4, 6]}
    assert [s.active for s in api.read_deployment_by_name(HELLO).schedules] == [True]
    assert cli(server, "plan").returncode == 0


def test_repository_change_is_an_update_field_by_field(server, api, tmp_path) -> None:
    """Templated as `prefect deploy` templates: a Prefect variable and an environment variable."""
    applied(server)
    variable = unique("squares_description").replace("-", "_")
    api.create_variable(VariableCreate(name=variable, value="Squares, described anew."))

    def edit(raw: dict) -> None:
        squares = next(d for d in raw["deployments"] if d["name"] == "compute-squares")
        squares["description"] = "{{ prefect.variables." + variable + " }}"
        squares["version"] = "{{ $SQUARES_VERSION }}"
        squares["parameters"] = {"numbers": [1, 2]}

    path = edited_prefect_yaml(tmp_path, edit)
    code, plan = plan_json(server, "--prefect-file", str(path), SQUARES_VERSION="9.9.9")
    assert code == 2
    fields = {f["field"]: f for f in changes(plan, "update")[SQUARES]["fields"]}
    assert set(fields) == {"description", "version", "parameters"}
    assert fields["description"]["declared"] == "Squares, described anew."
    assert fields["version"]["declared"] == "9.9.9"
    assert fields["parameters"]["server"] == {"numbers": [2, 4, 6]}
    assert not any(f["drift"] for f in fields.values())  # the repository changed, not the server


def test_prune_deletes_only_owned_undeclared_deployments_and_their_scheduled_runs(
    server, api, tmp_path
) -> None:
    applied(server)
    hello = api.read_deployment_by_name(HELLO)
    foreign_id = api.create_deployment(
        flow_id=hello.flow_id,
        name="made-elsewhere",
        entrypoint="flows/greetings.py:say_hello",
        tags=["someone-else"],
    )
    in_flight = api.create_flow_run_from_deployment(hello.id, parameters={"name": "in flight"})
    api.set_flow_run_state(in_flight.id, Running(), force=True)

    def scheduled_runs() -> list:
        runs = api.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[hello.id]))
        )
        return [r for r in runs if r.state and r.state.type == StateType.SCHEDULED]

    wait_until(scheduled_runs, 120, "the schedule's upcoming runs")
    without_hello = edited_prefect_yaml(
        tmp_path,
        lambda raw: raw.update(
            deployments=[d for d in raw["deployments"] if d["name"] != "greeting-schedule"]
        ),
    )
    try:
        code, plan = plan_json(server, "--prefect-file", str(without_hello))
        assert code == 0, "without --prune a delete is shown but is not a change"
        assert set(changes(plan, "delete")) == {HELLO}
        code, plan = plan_json(server, "--prune", "--prefect-file", str(without_hello))
        assert code == 2
        deleted = changes(plan, "delete")
        assert set(deleted) == {HELLO}
        fields = {f["field"]: f["server"] for f in deleted[HELLO]["fields"]}
        assert fields["entrypoint"] == "flows/greetings.py:say_hello"
        assert plan["foreign"] == 1

        applied(server, "--prune", "--prefect-file", str(without_hello))
        remaining = ids(api)
        assert HELLO not in remaining
        assert "say-hello/made-elsewhere" in remaining
        assert scheduled_runs() == []
        assert api.read_flow_run(in_flight.id).state.type == StateType.RUNNING
        assert cli(server, "plan", "--prune", "--prefect-file", str(without_hello)).returncode == 0
    finally:
        api.delete_deployment(foreign_id)
        applied(server)  # the declared deployments back, for the other tests
    assert HELLO in ids(api)


def test_declared_name_without_the_tag_is_a_conflict_until_adopted(server, api) -> None:
    applied(server)
    hello = api.read_deployment_by_name(HELLO)
    api.delete_deployment(hello.id)
    api.create_deployment(
        flow_id=hello.flow_id,
        name=hello.name,
        entrypoint="flows/greetings.py:say_hello",
        description="made by hand",
    )
    before = api.read_deployment_by_name(HELLO)

    code, plan = plan_json(server)
    assert code == 1
    assert set(changes(plan, "conflict")) == {HELLO}
    refused = cli(server, "apply")
    assert refused.returncode == 1
    assert f"deployment {HELLO}: on the server without the tag {owner_tag()!r}" in refused.stderr
    unchanged = api.read_deployment_by_name(HELLO)
    assert (unchanged.id, unchanged.updated, unchanged.tags) == (before.id, before.updated, [])

    applied(server, "--adopt")
    adopted = api.read_deployment_by_name(HELLO)
    assert adopted.id == before.id and owner_tag() in adopted.tags
    assert cli(server, "plan").returncode == 0
