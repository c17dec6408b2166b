"""Bad parameters, through the API and through `prefect deployment run`: refused with the field
named, and the flow itself never runs."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
)
from prefect.exceptions import PrefectHTTPStatusError

from deployments import settings
from stack.local import PREFECT
from tests.deployed_flows import SLOW_DEPLOYMENT
from tests.repository import image_copy

pytestmark = pytest.mark.parametrize("live_stack", ["sqlite"], indirect=True)

SQUARES = "compute-squares/compute-squares"


def _run_ids(api, full_name: str) -> set:
    deployment = api.read_deployment_by_name(full_name)
    runs = api.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    )
    return {run.id for run in runs}


@pytest.mark.parametrize(
    ("full_name", "parameters", "named"),
    [
        (SQUARES, {"numbers": ["two", 4]}, "'two' is not of type 'integer'"),
        (SQUARES, {"numbers": "2, 4"}, "field 'numbers'. Failure reason: '2, 4' is not valid"),
        (SQUARES, {"numbers": [1], "chunk_size": 0}, "0 is less than the minimum of 1"),
        (SLOW_DEPLOYMENT, {}, "'seconds' is a required property"),
        # Refused thanks to deployments/strict_parameters.py; Prefect alone would accept it and
        # the run would crash in its process with only an exit code to show.
        (SQUARES, {"numbers": [1], "colour": "red"}, "'colour' was unexpected"),
    ],
    ids=[
        "word-for-number",
        "string-for-list",
        "zero-chunk-size",
        "missing-required",
        "unknown-parameter",
    ],
)
def test_api_refuses_schema_violations_with_409(
    api, slow_deployment, full_name, parameters, named
) -> None:
    deployment = api.read_deployment_by_name(full_name)
    before = _run_ids(api, full_name)
    with pytest.raises(PrefectHTTPStatusError) as refused:
        api.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    assert refused.value.response.status_code == 409
    assert named in refused.value.response.text
    assert _run_ids(api, full_name) == before


@pytest.mark.parametrize(
    ("full_name", "param_args", "named"),
    [
        (SQUARES, ["--param", 'numbers=["two", 4]'], "'two' is not of type 'integer'"),
        (SLOW_DEPLOYMENT, [], "'seconds' is a required property"),
        # The CLI checks parameter names itself, before it asks the server.
        (SQUARES, ["--param", "colour=red"], "not found on the deployment: 'colour'"),
    ],
    ids=["word-for-number", "missing-required", "unknown-parameter"],
)
def test_cli_refuses_schema_violations(
    api, live_stack, slow_deployment, full_name, param_args, named
) -> None:
    before = _run_ids(api, full_name)
    result = live_stack.run_cli(PREFECT, "deployment", "run", full_name, *param_args, check=False)
    assert result.returncode != 0
    assert named in " ".join((result.stdout + result.stderr).split())  # the CLI wraps lines
    assert _run_ids(api, full_name) == before


def _check(live_stack, *args: str, pool: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**live_stack.env, settings.POOL_NAME_ENV: pool or live_stack.pool_name}
    return subprocess.run(
        [sys.executable, "-m", "deployments.check", *args],
        env=env,
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_pool_is_named_before_deploying(live_stack) -> None:
    result = _check(live_stack, pool="no-such-pool")
    assert result.returncode == 2
    assert "work pool 'no-such-pool' does not exist" in result.stderr
    assert _check(live_stack).returncode == 0


def test_broken_prefect_yaml_stops_the_compose_deploy_before_the_server_changes(
    live_stack, api, tmp_path
) -> None:
    """docker-compose.yml's own `deploy` command, run in a copy of the repository whose
    prefect.yaml names a flow that does not exist: it stops at the check, naming the field."""
    copy = image_copy(tmp_path / "repo")  # the image's /opt/flows
    prefect_yaml = copy / "prefect.yaml"
    prefect_yaml.write_text(
        prefect_yaml.read_text().replace("greetings.py:say_hello", "greetings.py:say_goodbye")
    )
    compose = yaml.safe_load((settings.REPO_ROOT / "docker-compose.yml").read_text())
    deploy_command = shlex.split(compose["services"]["deploy"]["command"])
    before = {d.name: (d.id, d.updated) for d in api.read_deployments()}

    # The deploy job's environment: its target's server (x-deploy-env) is the live stack.
    prod_server = {
        "PROD_PREFECT_API_URL": live_stack.api_url,
        "PROD_PREFECT_API_AUTH_STRING": live_stack.auth_string or "",
    }
    result = subprocess.run(
        deploy_command,
        env={
            **live_stack.env,
            **prod_server,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        },
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "deployments[1].entrypoint ('flows/greetings.py:say_goodbye')" in result.stderr
    assert {d.name: (d.id, d.updated) for d in api.read_deployments()} == before
