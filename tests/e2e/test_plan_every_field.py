"""Every field the repository declares, of every object of every kind, edited out of band
through the API: plan names each one (exit 2, drift wherever the field is recorded) and apply
repairs them all (plan exits 0 after).

The edits are generated from the declarations themselves (what plan reads), so a field added
to a kind later is edited here without a new test; `EDITS` holds the few fields whose generic
edit would not be a valid value, and `NOT_EDITABLE` the fields the API cannot change."""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from deployments.declarations import load_declarations
from deployments.kinds import KINDS
from deployments.plan import read_view
from stack.local import LocalStack
from tests.live_stack import stack_client
from tests.plan_cli import WEBHOOK_ENV, applied, cli, plan_json, server_only

# A pool's type cannot change once it exists (apply refuses to, naming the pool).
NOT_EDITABLE = {("work pool", "type")}
SPARE_POOL = "spare-pool-for-edits"

A_TRIGGER = {
    "description": "",
    "enabled": True,
    "tags": [],
    "trigger": {
        "type": "event",
        "posture": "Reactive",
        "after": [],
        "expect": ["tutorial.edited"],
        "for_each": [],
        "match": {},
        "match_related": {},
        "threshold": 1,
        "within": 0.0,
    },
    "actions": [{"type": "run-deployment", "source": "selected", "parameters": None}],
    "actions_on_trigger": [],
    "actions_on_resolve": [],
}


def edited(value: Any) -> Any:
    """Another value of the same shape: the first leaf changed."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + "-edited"
    if isinstance(value, list):
        return [edited(value[0]), *value[1:]] if value else pytest.fail("no generic edit of []")
    if isinstance(value, dict):
        if not value:
            return {"edited": True}
        first = sorted(value)[0]
        return {**value, first: edited(value[first])}
    pytest.fail(f"no generic edit of {value!r}")


def _first_item(change: Callable[[dict], None]) -> Callable[[Any, str], Any]:
    def edit(items: list[dict], key: str = "") -> list[dict]:
        items = copy.deepcopy(items)
        change(items[0])
        return items

    return edit


def _set(key: str, value: Any) -> Callable[[dict], None]:
    return lambda item: item.update({key: value})


def _a_trigger(deployment_key: str) -> dict[str, Any]:
    """A trigger as `prefect deploy` names them (deployments/kinds/deployments.py)."""
    return {"name": f"{deployment_key.split('/', 1)[1]}__automation_1", **A_TRIGGER}


# (kind, field) -> the edit of a value of the object `key`, where the generic edit would be
# no valid value of the field.
EDITS: dict[tuple[str, str], Callable[[Any, str], Any]] = {
    ("work pool", "concurrency_limit"): lambda v, key: 3 if v is None else v + 1,
    ("work pool", "base_job_template"): lambda v, key: {
        **v,
        "variables": {
            **v["variables"],
            "properties": {
                **v["variables"]["properties"],
                "command": {**v["variables"]["properties"]["command"], "default": "edited"},
            },
        },
    },
    ("work queue", "concurrency_limit"): lambda v, key: 3 if v is None else v + 1,
    ("variable", "tags"): lambda v, key: [*v, "edited"],
    ("deployment", "tags"): lambda v, key: [*v, "edited"],
    ("deployment", "work_pool"): lambda v, key: SPARE_POOL,
    ("deployment", "work_queue"): lambda v, key: "scheduled" if v == "default" else "default",
    ("deployment", "concurrency_limit"): lambda v, key: (
        {"limit": 1, "collision_strategy": "ENQUEUE"}
        if v is None
        else {**v, "limit": v["limit"] + 1}
    ),
    ("deployment", "parameters"): lambda v, key: edited(v) if v else {"name": "Drift"},
    ("deployment", "schedules"): lambda v, key: (
        [{**v[0], "parameters": {"name": "Drift"}}, *v[1:]]
        if v
        else [
            {
                "slug": "edited",
                "schedule": {"interval": 3600.0},
                "active": True,
                "parameters": {},
                "max_scheduled_runs": None,
            }
        ]
    ),
    ("deployment", "triggers"): lambda v, key: (
        _first_item(_set("enabled", not v[0]["enabled"]))(v, key) if v else [_a_trigger(key)]
    ),
    ("automation", "tags"): lambda v, key: [*v, "edited"],
    ("automation", "trigger"): lambda v, key: {**v, "within": v["within"] + 1},
    ("automation", "actions"): _first_item(
        lambda action: action.update(
            {key: action[key] + " (edited)" for key in ("message", "subject") if key in action}
            or {"force": not action.get("force")}
        )
    ),
    ("automation", "actions_on_trigger"): lambda v, key: [*v, {"type": "do-nothing"}],
    ("automation", "actions_on_resolve"): lambda v, key: [*v, {"type": "do-nothing"}],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalStack]:
    with server_only(tmp_path_factory, "every-field") as stack:
        yield stack


@pytest.fixture
def stack_environment(server, monkeypatch) -> None:
    """This process reads the declarations as the CLI does: the stack's variables and the
    webhook's, so that every kind declares its objects."""
    for name, value in {**server.env, **WEBHOOK_ENV}.items():
        monkeypatch.setenv(name, value)


async def _edit_everything(server: LocalStack) -> set[tuple[str, str, str]]:
    """Edit every declared field through the API; return (kind, object, field) of each."""
    updates = {PREFECT_API_URL: server.api_url}
    if server.auth_string:
        updates[PREFECT_API_AUTH_STRING] = server.auth_string
    made = set()
    with temporary_settings(updates):
        async with get_client() as client:
            view = await read_view(client, load_declarations())
            for kind in KINDS:
                objects = {obj.key: obj for obj in view.objects[kind.name]}
                for key, fields in view.declared[kind.name].objects.items():
                    obj, current = objects[key], dict(fields)
                    for field, value in fields.items():
                        if (kind.name, field) in NOT_EDITABLE:
                            continue
                        edit = EDITS.get((kind.name, field), lambda v, key: edited(v))
                        current[field] = edit(value, key)
                        # Some kinds write every field at once: the edits so far go along.
                        await kind.update(client, obj, dict(current), {field}, view)
                        made.add((kind.name, key, field))
    return made


def test_every_declared_field_edited_out_of_band_is_named_and_repaired(
    server, stack_environment
) -> None:
    with stack_client(server) as api:  # another pool, with the queues the deployments name
        api.create_work_pool(WorkPoolCreate(name=SPARE_POOL, type="process"))
        api.create_work_queue(name="scheduled", work_pool_name=SPARE_POOL)
    applied(server)
    assert cli(server, "plan").returncode == 0

    made = asyncio.run(_edit_everything(server))
    kinds = {kind for kind, _, _ in made}
    assert kinds == {kind.name for kind in KINDS}, "every kind declares an object"

    code, plan = plan_json(server)
    assert code == 2
    named = {
        (change["kind"], change["name"], field["field"]): field
        for change in plan["changes"]
        if change["action"] == "update"
        for field in change["fields"]
    }
    missing = sorted(made - set(named))
    assert not missing, f"edits plan did not name: {missing}"
    secret = {("block", "secret/failure-webhook-token", "value")}
    secret.add(("block", "custom-webhook/failure-notifications", "secrets"))
    not_drift = sorted(key for key in made - secret if not named[key]["drift"])
    assert not not_drift, f"edits plan did not call drift: {not_drift}"
    assert all(named[key]["server"] == "(secret)" for key in secret)

    applied(server)
    result = cli(server, "plan")
    assert result.returncode == 0, result.stdout
    assert os.environ["FAILURE_WEBHOOK_TOKEN"] not in result.stdout
