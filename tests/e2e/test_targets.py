"""Named targets (deployments/targets.py) on two real servers: one prefect file, a `dev` and a
`prod` target, each applied by the CLI to its own server, and each server holding what its
target declares: the schedule active on one and inactive on the other, a different pool on each,
a different owner. The prod server is reached through the variables its target names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.local import LocalStack
from tests.live_stack import stack_client, unique
from tests.plan_cli import applied, cli, edited_prefect_yaml, plan_json, server_only

PROD_POOL = unique("prod-pool")
PROD_URL_ENV, PROD_AUTH_ENV = "PROD_PREFECT_API_URL", "PROD_PREFECT_API_AUTH_STRING"


def with_targets(raw: dict) -> None:
    raw["targets"] = {
        "dev": {"description": "the first server, the file as declared"},
        "prod": {
            "description": "the second server",
            "server": {"url": PROD_URL_ENV, "auth_string": PROD_AUTH_ENV},
            "overrides": {
                "deployments": {
                    "greeting-schedule": {
                        "work_pool": {"name": PROD_POOL},
                        "schedules": {"every-5-minutes": {"active": False}},
                    },
                    "compute-squares": {"work_pool": {"name": PROD_POOL}},
                },
                "work_pools": {
                    PROD_POOL: {
                        "type": "process",
                        "description": "prod's own pool",
                        "concurrency_limit": 3,
                        "paused": False,
                    }
                },
            },
        },
    }


@pytest.fixture(scope="module")
def prefect_file(tmp_path_factory) -> Path:
    return edited_prefect_yaml(tmp_path_factory.mktemp("targets"), with_targets)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[tuple[LocalStack, LocalStack]]:
    with server_only(tmp_path_factory, "dev") as dev, server_only(tmp_path_factory, "prod") as prod:
        yield dev, prod


def prod_env(prod: LocalStack) -> dict[str, str]:
    """The prod target's variables, as CI's production environment would set them; the shell's
    own PREFECT_API_URL stays the dev server's."""
    return {PROD_URL_ENV: prod.api_url, PROD_AUTH_ENV: prod.auth_string or ""}


@pytest.fixture(scope="module")
def applied_targets(servers, prefect_file) -> tuple[LocalStack, LocalStack]:
    dev, prod = servers
    applied(dev, "--prefect-file", str(prefect_file))  # no --target: the first, dev
    applied(dev, "--prefect-file", str(prefect_file), "--target", "prod", **prod_env(prod))
    return dev, prod


def greeting(stack: LocalStack):
    with stack_client(stack) as api:
        return api.read_deployment_by_name("say-hello/greeting-schedule")


def test_each_server_holds_what_its_target_declares(applied_targets) -> None:
    dev, prod = applied_targets
    on_dev, on_prod = greeting(dev), greeting(prod)
    assert [s.active for s in on_dev.schedules] == [True]
    assert [s.active for s in on_prod.schedules] == [False]
    assert on_dev.work_pool_name == dev.pool_name
    assert on_prod.work_pool_name == PROD_POOL
    with stack_client(prod) as api:
        assert api.read_work_pool(PROD_POOL).concurrency_limit == 3
        squares = api.read_deployment_by_name("compute-squares/compute-squares")
        assert squares.work_pool_name == PROD_POOL
    with stack_client(dev) as api:
        assert PROD_POOL not in {pool.name for pool in api.read_work_pools()}
    # two owners: neither target's apply may touch the other's objects on a shared server
    assert "managed-by:prefect-deployments" in on_dev.tags
    assert "managed-by:prefect-deployments-prod" in on_prod.tags


def test_plan_per_target_shows_no_change_on_its_own_server_and_a_conflict_on_the_other(
    applied_targets, prefect_file
) -> None:
    dev, prod = applied_targets
    file = ("--prefect-file", str(prefect_file))
    assert plan_json(dev, *file, "--target", "dev")[0] == 0
    assert plan_json(dev, *file, "--target", "prod", **prod_env(prod))[0] == 0
    # prod's declaration against the dev server: prod's pool is missing there, and its
    # deployments are dev's, which prod does not own: a conflict, and apply would stop
    code, plan = plan_json(dev, *file, "--target", "prod", **prod_env(dev))
    assert code == 1
    assert plan["owner_tag"] == "managed-by:prefect-deployments-prod"
    created = {c["name"] for c in plan["changes"] if c["action"] == "create"}
    conflicts = {c["name"] for c in plan["changes"] if c["action"] == "conflict"}
    assert any(PROD_POOL in name for name in created), plan
    assert any("greeting-schedule" in name for name in conflicts), plan


def test_a_pull_request_plans_each_target_from_its_snapshot_without_its_credentials(
    applied_targets, prefect_file, tmp_path
) -> None:
    """As plan.yml does: main's job took prod's snapshot with prod's variables; the pull
    request's plan of prod reads only that file, and no PROD_ variable is set."""
    dev, prod = applied_targets
    file = ("--prefect-file", str(prefect_file), "--target", "prod")
    snapshot = tmp_path / "server-snapshot-prod.json"
    taken = cli(dev, "snapshot", *file, "--output", str(snapshot), **prod_env(prod))
    assert taken.returncode == 0, taken.stdout + taken.stderr
    code, plan = plan_json(dev, *file, "--snapshot", str(snapshot))
    assert code == 0, plan
    assert plan["owner_tag"] == "managed-by:prefect-deployments-prod"
    assert plan["server"].startswith(f"snapshot of {prod.api_url}"), plan["server"]


def test_a_target_without_its_server_variable_is_refused_by_name(servers, prefect_file) -> None:
    dev, prod = servers
    before = {d.name for d in _deployments(prod)}
    result = cli(dev, "apply", "--prefect-file", str(prefect_file), "--target", "prod")
    assert result.returncode == 1
    assert f"target 'prod': set {PROD_URL_ENV}" in result.stderr
    assert {d.name for d in _deployments(prod)} == before


def test_an_unknown_target_is_refused_naming_the_declared_ones(servers, prefect_file) -> None:
    dev, _ = servers
    result = cli(dev, "plan", "--prefect-file", str(prefect_file), "--target", "staging")
    assert result.returncode == 1
    assert "no target 'staging' (the file declares: dev, prod)" in result.stderr


def test_check_checks_every_target(servers, tmp_path) -> None:
    dev, _ = servers

    def broken_prod(raw: dict) -> None:
        with_targets(raw)
        raw["targets"]["prod"]["overrides"]["deployments"]["compute-squares"]["entrypoint"] = (
            "flows/nowhere.py:compute_squares"
        )

    good = edited_prefect_yaml(tmp_path, with_targets, "good.yaml")
    result = cli(dev, "check", "--prefect-file", str(good))
    assert result.returncode == 0, result.stderr
    assert "(target dev) OK" in result.stdout and "(target prod) OK" in result.stdout
    broken = edited_prefect_yaml(tmp_path, broken_prod, "broken.yaml")
    result = cli(dev, "check", "--prefect-file", str(broken))
    assert result.returncode == 1
    assert "target prod: " in result.stderr and "flows/nowhere.py" in result.stderr


def _deployments(stack: LocalStack) -> list:
    with stack_client(stack) as api:
        return api.read_deployments()
