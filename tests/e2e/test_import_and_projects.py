"""Objects made by hand on a fresh server, imported into the repository's file and adopted; and
two projects made from this repository sharing one server without touching each other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import (
    BlockDocumentCreate,
    DeploymentScheduleCreate,
    GlobalConcurrencyLimitCreate,
    VariableCreate,
    WorkPoolCreate,
)
from prefect.client.schemas.schedules import CronSchedule
from prefect.events.actions import DoNothing
from prefect.events.schemas.automations import AutomationCore, EventTrigger

from deployments import settings
from deployments.spec import OWNER_TAG_PREFIX
from stack.local import LocalStack
from tests.live_stack import stack_client, unique
from tests.plan_cli import (
    WEBHOOK_ENV,
    applied,
    changes,
    cli,
    edited_prefect_yaml,
    plan_json,
    server_only,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalStack]:
    with server_only(tmp_path_factory, "import") as stack:
        yield stack


@pytest.fixture(scope="module")
def api(server: LocalStack) -> Iterator[SyncPrefectClient]:
    with stack_client(server) as client:
        yield client


def _by_hand(api: SyncPrefectClient, suffix: str) -> dict[str, object]:
    """Objects made through the API, as someone would in the UI; their ids by kind."""
    pool = f"hand-pool-{suffix}"
    api.create_work_pool(
        WorkPoolCreate(name=pool, type="process", description="made by hand", concurrency_limit=5)
    )
    api.create_work_queue(name="urgent", work_pool_name=pool, priority=1)
    variable = f"hand_variable_{suffix}"
    api.create_variable(VariableCreate(name=variable, value={"retries": 3}, tags=["hand"]))
    limit = api.create_global_concurrency_limit(
        GlobalConcurrencyLimitCreate(name=f"hand-limit-{suffix}", limit=3)
    )
    secret_type = api.read_block_type_by_slug("secret")
    schema = api.get_most_recent_block_schema_for_block_type(secret_type.id)
    block = api.create_block_document(
        BlockDocumentCreate(
            name=f"hand-secret-{suffix}",
            data={"value": "a-secret-made-by-hand"},
            block_type_id=secret_type.id,
            block_schema_id=schema.id,
        )
    )
    automation = api.create_automation(
        AutomationCore(
            name=f"hand-automation-{suffix}",
            trigger=EventTrigger(expect={"hand.made"}, threshold=1),
            actions=[DoNothing()],
        )
    )
    flow_id = api.create_flow_from_name("say-hello")
    deployment = api.create_deployment(
        flow_id,
        f"hand-greeting-{suffix}",
        entrypoint="flows/greetings.py:say_hello",  # this repository's flow
        work_pool_name=pool,
        work_queue_name="urgent",
        parameters={"name": "Hand"},
        tags=["hand"],
        description="greets by hand",
        paused=True,
        schedules=[
            DeploymentScheduleCreate(
                schedule=CronSchedule(cron="0 6 * * 1", timezone="Europe/Paris"),
                parameters={"name": "Monday"},
                max_scheduled_runs=3,
            )
        ],
    )
    elsewhere = api.create_deployment(  # code of another repository: not imported
        flow_id, f"hand-elsewhere-{suffix}", entrypoint="elsewhere/flows.py:say_hello"
    )
    return {
        "deployment": deployment,
        "elsewhere": elsewhere,
        "pool": pool,
        "variable": variable,
        "limit": limit,
        "block": block.id,
        "automation": automation,
    }


def test_objects_made_by_hand_are_imported_then_adopted(server, api, tmp_path) -> None:
    suffix = unique("x").split("-")[1]
    made = _by_hand(api, suffix)
    path = edited_prefect_yaml(tmp_path, lambda raw: None)
    before = path.read_text()

    result = cli(server, "import", "--prefect-file", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    secret_env = f"SECRET_HAND_SECRET_{suffix.upper()}_VALUE"
    assert secret_env in result.stdout
    text = path.read_text()
    assert "a-secret-made-by-hand" not in text
    raw, original = yaml.safe_load(text), yaml.safe_load(before)
    for key, value in original.items():  # what was there stays, the imports come after it
        assert raw[key][: len(value)] == value if isinstance(value, list) else raw[key] == value
    (pool,) = [p for p in raw["work_pools"] if p["name"] == made["pool"]]
    assert pool["concurrency_limit"] == 5
    assert {q["name"] for q in pool["queues"]} == {"default", "urgent"}
    assert f"hand-automation-{suffix}" in {a["name"] for a in raw["automations"]}
    (greeting,) = [d for d in raw["deployments"] if d["name"].startswith("hand-")]
    assert greeting["name"] == f"hand-greeting-{suffix}"
    assert greeting["paused"] is True and greeting["parameters"] == {"name": "Hand"}
    assert greeting["schedules"][0]["cron"] == "0 6 * * 1"

    adopt = cli(
        server,
        "apply",
        "--adopt",
        "--prefect-file",
        str(path),
        **{secret_env: "a-secret-made-by-hand"},
    )
    assert adopt.returncode == 0, adopt.stdout + adopt.stderr
    assert "a-secret-made-by-hand" not in adopt.stdout + adopt.stderr
    code, plan = plan_json(
        server, "--prefect-file", str(path), **{secret_env: "a-secret-made-by-hand"}
    )
    assert code == 0, plan["changes"]
    # Taken over where they are, not made anew.
    assert api.read_work_pool(made["pool"]).concurrency_limit == 5
    assert api.read_global_concurrency_limit_by_name(f"hand-limit-{suffix}").id == made["limit"]
    (automation,) = api.read_automations_by_name(f"hand-automation-{suffix}")
    assert automation.id == made["automation"]
    assert any(t.startswith(OWNER_TAG_PREFIX) for t in automation.tags)
    assert any(
        t.startswith(OWNER_TAG_PREFIX) for t in api.read_variable_by_name(made["variable"]).tags
    )
    deployment = api.read_deployment(made["deployment"])
    assert any(t.startswith(OWNER_TAG_PREFIX) for t in deployment.tags) and deployment.paused
    assert deployment.schedules[0].parameters == {"name": "Monday"}
    assert api.read_deployment(made["elsewhere"]).tags == [], "another repository's, untouched"
    again = cli(server, "import", "--prefect-file", str(path))
    assert "Nothing to import" in again.stdout, again.stdout


def _project(raw: dict, name: str, suffix: str) -> None:
    """prefect.yaml as a second project made from this repository would have it: its own
    name, and its own names for the objects it declares; automations keep theirs, which
    are not unique."""
    old_tag, new_tag = OWNER_TAG_PREFIX + raw["name"], OWNER_TAG_PREFIX + name
    raw["name"] = name
    for deployment in raw["deployments"]:
        deployment["name"] += suffix
        deployment["tags"] = [new_tag if t == old_tag else t for t in deployment["tags"]]
    for section in ("variables", "concurrency_limits", "blocks"):
        for item in raw[section]:
            item["name"] += suffix.replace("-", "_") if section == "variables" else suffix
    for automation in raw["automations"]:
        for action in automation["actions"]:
            if "block" in action:
                action["block"] += suffix


def test_two_projects_share_a_server_without_touching_each_other(server, api, tmp_path) -> None:
    pools = {"a": unique("team-a-pool"), "b": unique("team-b-pool")}
    files = {
        key: edited_prefect_yaml(
            tmp_path, lambda raw, key=key: _project(raw, f"team-{key}", f"-{key}"), f"{key}.yaml"
        )
        for key in pools
    }

    def run(key: str, *args: str):
        env = {**WEBHOOK_ENV, settings.POOL_NAME_ENV: pools[key]}
        return cli(server, *args, "--prefect-file", str(files[key]), **env)

    for key in pools:
        assert run(key, "apply").returncode == 0
    for key in pools:
        result = run(key, "plan", "--prune")
        assert result.returncode == 0, result.stdout
    for key in pools:  # each prunes with the other's objects all around it
        assert run(key, "apply", "--prune").returncode == 0
        for other in pools:
            assert run(other, "plan", "--prune").returncode == 0
    zombies = api.read_automations_by_name("crash-zombie-flow-runs")
    owners = sorted(t for a in zombies for t in a.tags if t.startswith(OWNER_TAG_PREFIX))
    assert owners[-2:] == [OWNER_TAG_PREFIX + "team-a", OWNER_TAG_PREFIX + "team-b"]
    assert applied(server)  # this repository's own project beside them, untouched by them


def test_a_fork_under_the_same_name_is_a_conflict_until_adopted(server, api, tmp_path) -> None:
    """Two repositories that kept the template's project name: the second one's plan and apply
    stop at the owner, naming both sources, until apply --adopt takes the owner over."""
    pool = unique("fork-pool")
    name = unique("kept-name")

    def one_variable(raw: dict) -> None:  # the owner check is the same whatever is declared
        kept = {"name": name, "deployments": []}
        kept["variables"] = [{"name": name.replace("-", "_"), "value": 1}]
        raw.clear()
        raw.update(kept)

    path = edited_prefect_yaml(tmp_path, one_variable)
    ours, same, fork = (
        "https://github.com/Ours/flows.git",
        "git@github.com:Ours/flows",
        "https://user:token@GitHub.com/theirs/flows/",
    )

    def env(source: str) -> dict[str, str]:
        return {**WEBHOOK_ENV, settings.POOL_NAME_ENV: pool, settings.SOURCE_ENV: source}

    def run(source: str, *args: str):
        return cli(server, *args, "--prefect-file", str(path), **env(source))

    assert run(ours, "apply").returncode == 0
    assert run(same, "plan").returncode == 0, "one repository, spelled another way"
    variables = {v.name: v.value for v in api.read_variables()}

    code, plan = plan_json(server, "--prefect-file", str(path), **env(fork))
    assert code == 1
    (owner,) = changes(plan, "conflict", "owner").values()
    assert [(f["field"], f["server"], f["declared"]) for f in owner["fields"]] == [
        ("source", "github.com/Ours/flows", "github.com/theirs/flows")
    ]
    refused = run(fork, "apply", "--prune")
    assert refused.returncode == 1
    assert "github.com/Ours/flows" in refused.stderr, refused.stderr
    assert "a `name` of its own" in refused.stderr
    assert "token" not in refused.stdout + refused.stderr
    assert {v.name: v.value for v in api.read_variables()} == variables, "nothing was changed"

    taken = run(fork, "apply", "--adopt")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "took owner" in taken.stdout
    assert run(fork, "plan").returncode == 0
    assert run(ours, "plan").returncode == 1, "now the first one is the other repository"
