"""`python -m deployments plan/apply` against a real server: exit codes, create, update and
delete field by field, drift, prune of owned objects only, conflicts for every kind of
ownership, objects left out while their environment variables are unset, secrets never shown,
and stable ids."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import (
    DeploymentUpdate,
    GlobalConcurrencyLimitCreate,
    VariableCreate,
)
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import StateType
from prefect.events.actions import DoNothing
from prefect.events.schemas.automations import AutomationCore, EventTrigger
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Running

from deployments import settings
from deployments.record import Applied, digest, read_record, write_record
from deployments.spec import owner_tag
from stack.local import LocalStack
from tests.live_stack import stack_client, unique, wait_until
from tests.plan_cli import (
    WEBHOOK_ENV,
    applied,
    changes,
    cli,
    edited_prefect_yaml,
    plan_json,
    server_only,
)

SQUARES = "compute-squares/compute-squares"
HELLO = "say-hello/greeting-schedule"
DECLARED = {
    "work pool": lambda pool: {pool},
    "work queue": lambda pool: {f"{pool}/default", f"{pool}/scheduled"},
    "variable": lambda pool: {"squares_chunk_size"},
    "concurrency limit": lambda pool: {"squares-chunks"},
    "deployment": lambda pool: {SQUARES, HELLO},
    "automation": lambda pool: {"crash-zombie-flow-runs", "crash-stuck-pending-flow-runs"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalStack]:
    with server_only(tmp_path_factory, "plan-apply") as stack:
        yield stack


@pytest.fixture(scope="module")
def api(server: LocalStack) -> Iterator[SyncPrefectClient]:
    with stack_client(server) as client:
        yield client


def ids(api: SyncPrefectClient) -> dict[str, tuple]:
    flows = {flow.id: flow.name for flow in api.read_flows()}
    return {
        f"{flows[d.flow_id]}/{d.name}": (d.id, sorted((s.slug, s.id) for s in d.schedules))
        for d in api.read_deployments()
    }


def test_fresh_server_plan_apply_plan_and_a_second_apply_keeps_ids(server, api) -> None:
    """Without the webhook's environment variables, as in a fresh clone: the blocks and the
    notification automation are named as left out, and everything else is applied."""
    code, plan = plan_json(server)
    assert code == 2
    for kind, names in DECLARED.items():
        assert set(changes(plan, "create", kind)) == names(server.pool_name), kind
    fields = {f["field"]: f for f in changes(plan, "create")[HELLO]["fields"]}
    (schedule,) = fields["schedules"]["declared"]
    assert schedule["slug"] == "every-5-minutes" and schedule["schedule"]["interval"] == 300
    assert fields["work_queue"]["declared"] == "scheduled"
    left_out = {(s["kind"], s["key"]): s["reason"] for s in plan["skipped"]}
    assert left_out[("block", "custom-webhook/failure-notifications")] == (
        "FAILURE_WEBHOOK_TOKEN, FAILURE_WEBHOOK_URL not set"
    )
    assert "notify-failed-runs" in {key for _, key in left_out}

    applied(server)
    assert cli(server, "plan").returncode == 0
    first = ids(api)
    assert set(first) == {SQUARES, HELLO}
    assert all(owner_tag() in d.tags for d in api.read_deployments())
    pool = api.read_work_pool(server.pool_name)
    assert pool.base_job_template["variables"]["properties"]["command"]["default"] == (
        "python -m stack.launch"
    )
    queues = {q.name: q.priority for q in api.read_work_queues(work_pool_name=server.pool_name)}
    assert queues == {"default": 1, "scheduled": 2}
    assert api.read_variable_by_name("squares_chunk_size").value == 50000
    (trigger,) = api.read_automations_by_name("greeting-schedule__automation_1")
    assert trigger.trigger.expect == {"tutorial.greeting.requested"}

    assert "deployed" not in applied(server)  # nothing to deploy: the plan was empty
    assert ids(api) == first


def test_out_of_band_edit_is_drift_and_apply_undoes_it(server, api) -> None:
    """As in the UI: pause a deployment, and give its schedule a parameter."""
    applied(server)
    squares = api.read_deployment_by_name(SQUARES)
    api.update_deployment(squares.id, DeploymentUpdate(parameters={"numbers": [7]}))
    hello = api.read_deployment_by_name(HELLO)
    api.update_deployment(hello.id, DeploymentUpdate(paused=True))
    (schedule,) = hello.schedules
    api.request(
        "PATCH",
        "/deployments/{id}/schedules/{schedule_id}",
        path_params={"id": hello.id, "schedule_id": schedule.id},
        json={"parameters": {"name": "Drift"}},
    ).raise_for_status()

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
    fields = {f["field"]: f for f in updates[HELLO]["fields"]}
    assert set(fields) == {"paused", "schedules"} and all(f["drift"] for f in fields.values())
    assert [s["parameters"] for s in fields["schedules"]["server"]] == [{"name": "Drift"}]
    text = cli(server, "plan").stdout
    assert 'parameters (drift): server {"numbers": [7]} -> declared' in text
    assert "paused (drift): server true -> declared false" in text

    applied(server)
    assert api.read_deployment_by_name(SQUARES).parameters == {"numbers": [2, 4, 6]}
    hello = api.read_deployment_by_name(HELLO)
    assert not hello.paused and [s.parameters for s in hello.schedules] == [{}]
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
        raw["concurrency_limits"][0]["limit"] = 1

    path = edited_prefect_yaml(tmp_path, edit)
    try:
        code, plan = plan_json(server, "--prefect-file", str(path), SQUARES_VERSION="9.9.9")
        assert code == 2
        fields = {f["field"]: f for f in changes(plan, "update")[SQUARES]["fields"]}
        assert set(fields) == {"description", "version", "parameters"}
        assert fields["description"]["declared"] == "Squares, described anew."
        assert fields["version"]["declared"] == "9.9.9"
        assert fields["parameters"]["server"] == {"numbers": [2, 4, 6]}
        (limit,) = changes(plan, "update", "concurrency limit")["squares-chunks"]["fields"]
        assert (limit["field"], limit["server"], limit["declared"]) == ("limit", 2, 1)
        assert not any(c["drifted"] for c in plan["changes"] if "drifted" in c)
        assert not any(f["drift"] for c in plan["changes"] for f in c["fields"])
    finally:
        api.delete_variable_by_name(variable)


def test_secrets_never_show_and_a_changed_secret_is_a_change(server, api) -> None:
    applied(server, **WEBHOOK_ENV)
    token = api.read_block_document_by_name("failure-webhook-token", "secret")
    assert token.data["value"] == WEBHOOK_ENV["FAILURE_WEBHOOK_TOKEN"]
    assert cli(server, "plan", **WEBHOOK_ENV).returncode == 0
    rotated = {**WEBHOOK_ENV, "FAILURE_WEBHOOK_TOKEN": "rotated-token-never-shown"}
    code, plan = plan_json(server, **rotated)
    assert code == 2
    updated = changes(plan, "update", "block")
    assert set(updated) == {"secret/failure-webhook-token", "custom-webhook/failure-notifications"}
    (value,) = updated["secret/failure-webhook-token"]["fields"]
    assert value == {"field": "value", "server": "(secret)", "declared": "(secret)", "drift": False}
    outputs = [cli(server, "plan", **rotated), cli(server, "apply", **rotated)]
    outputs.append(cli(server, "plan", "--json", **rotated))
    for result in outputs:
        for secret in (WEBHOOK_ENV["FAILURE_WEBHOOK_TOKEN"], rotated["FAILURE_WEBHOOK_TOKEN"]):
            assert secret not in result.stdout + result.stderr
    # Unset again: left out, and kept on the server even with --prune.
    code, plan = plan_json(server, "--prune")
    assert code == 0 and not changes(plan, "delete")
    assert "secret/failure-webhook-token" in {s["key"] for s in plan["skipped"]}


def test_prune_deletes_only_owned_undeclared_objects_and_their_scheduled_runs(
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
    foreign_limit = unique("foreign-limit")
    api.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=foreign_limit, limit=1))
    in_flight = api.create_flow_run_from_deployment(hello.id, parameters={"name": "in flight"})
    api.set_flow_run_state(in_flight.id, Running(), force=True)

    def scheduled_runs() -> list:
        runs = api.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[hello.id]))
        )
        return [r for r in runs if r.state and r.state.type == StateType.SCHEDULED]

    wait_until(scheduled_runs, 120, "the schedule's upcoming runs")

    def without_hello_and_limit(raw: dict) -> None:
        raw["deployments"] = [d for d in raw["deployments"] if d["name"] != "greeting-schedule"]
        raw["concurrency_limits"] = []

    smaller = edited_prefect_yaml(tmp_path, without_hello_and_limit)
    try:
        code, plan = plan_json(server, "--prefect-file", str(smaller))
        assert code == 0, "without --prune a delete is shown but is not a change"
        assert set(changes(plan, "delete")) == {HELLO, "squares-chunks"}
        code, plan = plan_json(server, "--prune", "--prefect-file", str(smaller))
        assert code == 2
        deleted = changes(plan, "delete")
        assert set(deleted) == {HELLO, "squares-chunks"}
        fields = {f["field"]: f["server"] for f in deleted[HELLO]["fields"]}
        assert fields["entrypoint"] == "flows/greetings.py:say_hello"
        assert plan["foreign"] >= 2

        applied(server, "--prune", "--prefect-file", str(smaller))
        remaining = ids(api)
        assert HELLO not in remaining
        assert "say-hello/made-elsewhere" in remaining
        limits = {limit.name for limit in api.read_global_concurrency_limits(limit=200)}
        assert foreign_limit in limits and "squares-chunks" not in limits
        assert scheduled_runs() == []
        assert api.read_flow_run(in_flight.id).state.type == StateType.RUNNING
        assert cli(server, "plan", "--prune", "--prefect-file", str(smaller)).returncode == 0
    finally:
        api.delete_deployment(foreign_id)
        api.delete_global_concurrency_limit_by_name(foreign_limit)
        applied(server)  # the declared objects back, for the other tests
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
    assert f"deployment {HELLO}: on the server but not owned by this repository" in refused.stderr
    unchanged = api.read_deployment_by_name(HELLO)
    assert (unchanged.id, unchanged.updated, unchanged.tags) == (before.id, before.updated, [])

    applied(server, "--adopt")
    adopted = api.read_deployment_by_name(HELLO)
    assert adopted.id == before.id and owner_tag() in adopted.tags
    assert cli(server, "plan").returncode == 0


def test_a_concurrency_limit_the_record_does_not_list_is_a_conflict_until_adopted(
    server, api
) -> None:
    """Kinds without tags: ownership is the applied record's list of ids."""
    applied(server)
    api.delete_global_concurrency_limit_by_name("squares-chunks")
    api.create_global_concurrency_limit(
        GlobalConcurrencyLimitCreate(name="squares-chunks", limit=9)
    )
    code, plan = plan_json(server)
    assert code == 1
    (conflict,) = changes(plan, "conflict").values()
    assert (conflict["kind"], conflict["name"]) == ("concurrency limit", "squares-chunks")
    assert cli(server, "apply").returncode == 1
    assert api.read_global_concurrency_limit_by_name("squares-chunks").limit == 9
    applied(server, "--adopt")
    assert api.read_global_concurrency_limit_by_name("squares-chunks").limit == 2
    assert cli(server, "plan").returncode == 0


def test_a_foreign_automation_of_a_declared_name_survives_apply_unchanged(server, api) -> None:
    """Automation names are not unique: someone's own `crash-zombie-flow-runs` is another
    object, neither changed, nor deleted, nor a conflict."""
    applied(server)
    foreign = AutomationCore(
        name="crash-zombie-flow-runs",
        description="someone else's",
        trigger=EventTrigger(expect={"someone.else"}, threshold=1),
        actions=[DoNothing()],
    )
    foreign_id = api.create_automation(foreign)
    try:
        before = api.read_automation(foreign_id)
        code, plan = plan_json(server, "--prune")
        assert code == 0 and plan["foreign"] >= 1
        applied(server, "--prune")
        after = api.read_automation(foreign_id)
        assert after.model_dump() == before.model_dump()
        ours = [a for a in api.read_automations_by_name("crash-zombie-flow-runs") if a.tags]
        assert len(ours) == 1 and owner_tag() in ours[0].tags
    finally:
        api.delete_automation(foreign_id)


def test_the_pool_concurrency_limit_is_declared(server, api) -> None:
    """POOL_CONCURRENCY_LIMIT fills the pool's declared limit; unset, the pool has none."""
    limit_env = settings.POOL_CONCURRENCY_LIMIT_ENV
    refused = cli(server, "apply", **{limit_env: "many"})
    assert refused.returncode == 1
    assert f"{limit_env} must be a whole number" in refused.stderr
    applied(server, **{limit_env: "3"})
    assert api.read_work_pool(server.pool_name).concurrency_limit == 3
    code, plan = plan_json(server)
    assert code == 2
    (limit,) = changes(plan, "update", "work pool")[server.pool_name]["fields"]
    assert (limit["field"], limit["server"], limit["declared"]) == ("concurrency_limit", 3, None)
    applied(server)
    assert api.read_work_pool(server.pool_name).concurrency_limit is None


def test_the_applied_record_holds_500_deployments(server, api) -> None:
    """Far past one variable's 5,000 characters: split over parts, read back whole, and the
    parts of the record it replaces are gone."""
    fields = ("entrypoint", "description", "version", "tags", "parameters", "parameter_schema")
    record = {
        "deployment": {
            f"flow-{n % 7}/deployment-{n}": {
                "id": str(uuid.uuid4()),
                "fields": {
                    f"{field}-{i}": digest([field, i, n]) for field in fields for i in (1, 2)
                },
            }
            for n in range(500)
        }
    }
    owner = unique("record-test")

    async def round_trip() -> Applied:
        async with get_client() as client:
            tag = f"managed-by:{owner}"
            await write_record(client, owner, tag, {"deployment": {}}, "example.org/repo")
            await write_record(client, owner, tag, record, None)  # keeps the source
            return await read_record(client, owner)

    with temporary_settings({PREFECT_API_URL: server.api_url}):
        assert asyncio.run(round_trip()) == Applied(record, "example.org/repo")
    parts = [v for v in api.read_variables(limit=200) if v.name.startswith(f"applied-{owner}-")]
    assert len(parts) > 1 and all(len(v.value) <= 5000 for v in parts)
    pointer = api.read_variable_by_name(f"applied-{owner}")
    assert len(parts) == pointer.value["parts"]  # the first record's one part is deleted
