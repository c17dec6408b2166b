"""`plan --snapshot`: a pull request's plan from a snapshot that main's job took, with no server
credential and no server reachable, says what a plan against the server says (deployments/
snapshot.py). The snapshot holds no secret value."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from deployments.apply import plan
from deployments.snapshot import plan_from_snapshot
from deployments.spec import OWNER_TAG_PREFIX, SpecError
from stack.local import LocalStack
from stack.processes import free_port
from tests.live_stack import stack_client
from tests.plan_cli import WEBHOOK_ENV, applied, cli, edited_prefect_yaml, server_only


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
    """Taken as main's job takes it: the CLI, with the server's credentials."""
    path = tmp_path_factory.mktemp("snapshot") / "server-snapshot.json"
    result = cli(server, "snapshot", "--output", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture
def stack_environment(server, monkeypatch) -> None:
    """This process reads the declarations as the CLI does: the stack's variables (its pool's
    name) and the webhook's."""
    for name, value in {**server.env, **WEBHOOK_ENV}.items():
        monkeypatch.setenv(name, value)


def no_server() -> dict:
    """Settings under which no server answers: a plan that tried one would fail."""
    return {PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api", PREFECT_API_AUTH_STRING: ""}


def live_plan(server: LocalStack, path: Path, prune: bool) -> dict:
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        return asdict(asyncio.run(plan(path, prune)))


def snapshot_plan(path: Path, snapshot: Path, prune: bool) -> dict:
    with temporary_settings(no_server()):
        return asdict(asyncio.run(plan_from_snapshot(path, snapshot, prune)))


def _main(raw: dict) -> None:
    """prefect.yaml as it is."""


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
    [(_main, False), (_main, True), (_edit_declarations, True), (_rename_owner, False)],
    ids=["main", "main-with-prune", "edited-with-prune", "renamed-owner"],
)
def test_a_plan_from_the_snapshot_is_the_plan_against_the_server(
    server, snapshot_file, stack_environment, tmp_path, edit: Callable[[dict], None], prune: bool
) -> None:
    path = edited_prefect_yaml(tmp_path, edit)
    live = live_plan(server, path, prune)
    planned = snapshot_plan(path, snapshot_file, prune)
    assert planned["server"].startswith(f"snapshot of {server.api_url}")
    assert {**planned, "server": None} == {**live, "server": None}
    assert live["changes"], live  # the pause at least: a plan with something to compare


def test_the_snapshot_holds_no_secret_and_plans_none_as_changed(
    snapshot_file, stack_environment, tmp_path
) -> None:
    assert WEBHOOK_ENV["FAILURE_WEBHOOK_TOKEN"] not in snapshot_file.read_text()
    declared = json.loads(snapshot_file.read_text())["objects"]["block"]
    assert declared, "the snapshot holds the blocks"
    planned = snapshot_plan(edited_prefect_yaml(tmp_path, _main), snapshot_file, False)
    assert not [c for c in planned["changes"] if c["kind"] == "block"], planned["changes"]


def test_the_cli_plans_from_the_snapshot_with_no_server_to_reach(server, snapshot_file) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/api"
    result = cli(server, "plan", "--snapshot", str(snapshot_file), PREFECT_API_URL=unreachable)
    assert result.returncode == 2, result.stdout + result.stderr  # the paused deployment
    assert f"Plan against snapshot of {server.api_url}" in result.stdout, result.stdout
    assert "paused (drift)" in result.stdout, result.stdout


def test_a_deployment_that_reads_the_server_cannot_be_planned_from_a_snapshot(
    snapshot_file, tmp_path
) -> None:
    def read_a_variable(raw: dict) -> None:
        raw["deployments"][0]["description"] = "{{ prefect.variables.squares_chunk_size }}"

    with pytest.raises(SpecError, match=r"prefect\.variables\.squares_chunk_size.*against the"):
        snapshot_plan(edited_prefect_yaml(tmp_path, read_a_variable), snapshot_file, False)
