"""`plan --snapshot`: a pull request's plan from a snapshot that main's job took, with no server
credential and no server reachable, says what a plan against the server says (deployments/
snapshot.py). The snapshot holds no secret value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.spec import OWNER_TAG_PREFIX
from stack.local import LocalStack
from stack.processes import free_port
from tests.live_stack import stack_client
from tests.plan_cli import WEBHOOK_ENV, applied, cli, edited_prefect_yaml, plan_json, server_only


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalStack]:
    """A server the repository was applied to (with its webhook blocks), then edited in the UI:
    greeting-schedule paused (drift)."""
    with server_only(tmp_path_factory, "snapshot") as stack:
        applied(stack, **WEBHOOK_ENV)
        with stack_client(stack) as api:
            deployment = api.read_deployment_by_name("say-hello/greeting-schedule")
            api.pause_deployment(deployment.id)
        yield stack


@pytest.fixture(scope="module")
def snapshot_file(server, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("snapshot") / "server-snapshot.json"
    result = cli(server, "snapshot", "--output", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def offline() -> dict[str, str]:
    """An environment in which no server answers: a plan that tried one would fail."""
    return {"PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api", "PREFECT_API_AUTH_STRING": ""}


def without_server(plan: dict) -> dict:
    return {key: value for key, value in plan.items() if key != "server"}


def _rename_owner(raw: dict) -> None:
    """Another owner: the file's `name` and its tag wherever the file names it."""
    old, new = f"{OWNER_TAG_PREFIX}{raw['name']}", f"{OWNER_TAG_PREFIX}a-fork-of-the-project"
    raw["name"] = new.removeprefix(OWNER_TAG_PREFIX)
    for deployment in raw["deployments"]:
        deployment["tags"] = [new if tag == old else tag for tag in deployment["tags"]]


def _edit_declarations(raw: dict) -> None:
    """A pull request's edits: a schedule's parameters, a removed deployment, a new variable, a
    limit."""
    hello = next(d for d in raw["deployments"] if d["name"] == "greeting-schedule")
    hello["schedules"][0]["parameters"] = {"name": "Pull request"}
    raw["deployments"] = [d for d in raw["deployments"] if d["name"] != "compute-squares"]
    raw["variables"].append({"name": "added_by_the_pull_request", "value": 1, "tags": []})
    raw["concurrency_limits"][0]["limit"] += 1


@pytest.mark.parametrize(
    ("edit", "prune"),
    [(None, False), (_edit_declarations, True), (_rename_owner, False)],
    ids=["main", "edited-with-prune", "renamed-owner"],
)
def test_a_plan_from_the_snapshot_is_the_plan_against_the_server(
    server, snapshot_file, tmp_path, edit, prune
) -> None:
    args = ["--prefect-file", str(edited_prefect_yaml(tmp_path, edit))] if edit else []
    args += ["--prune"] if prune else []
    live_code, live = plan_json(server, *args, **WEBHOOK_ENV)
    snapshot = ["--snapshot", str(snapshot_file)]
    code, planned = plan_json(server, *args, *snapshot, **offline(), **WEBHOOK_ENV)
    assert (code, without_server(planned)) == (live_code, without_server(live))
    assert planned["server"].startswith(f"snapshot of {server.api_url}")
    assert live_code != 0, live  # the pause, at least


def test_the_snapshot_holds_no_secret_and_plans_none_as_changed(server, snapshot_file) -> None:
    assert WEBHOOK_ENV["FAILURE_WEBHOOK_TOKEN"] not in snapshot_file.read_text()
    _, planned = plan_json(server, "--snapshot", str(snapshot_file), **offline(), **WEBHOOK_ENV)
    assert not [c for c in planned["changes"] if c["kind"] == "block"], planned["changes"]


def test_a_deployment_that_reads_the_server_cannot_be_planned_from_a_snapshot(
    server, snapshot_file, tmp_path
) -> None:
    def read_a_variable(raw: dict) -> None:
        raw["deployments"][0]["description"] = "{{ prefect.variables.squares_chunk_size }}"

    path = edited_prefect_yaml(tmp_path, read_a_variable)
    result = cli(server, "plan", "--prefect-file", str(path), "--snapshot", str(snapshot_file))
    assert result.returncode == 1, result.stdout
    assert "prefect.variables.squares_chunk_size" in result.stderr, result.stderr
    assert "plan against the server" in result.stderr


@pytest.mark.parametrize("content", ["{not json", '{"format": 0}'])
def test_a_file_that_is_no_snapshot_is_named(server, tmp_path, content) -> None:
    path = tmp_path / "snapshot.json"
    path.write_text(content)
    result = cli(server, "plan", "--snapshot", str(path), **offline())
    assert result.returncode == 1, result.stdout
    assert str(path) in result.stderr and "Traceback" not in result.stderr, result.stderr
