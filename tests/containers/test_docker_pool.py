"""The Docker work pool for real: `docker compose --profile single --profile docker-pool up -d
--wait` builds the flow image with prefect-docker's steps, pushes it to the stack's loopback
registry and registers the deployments of prefect.yaml's target docker; its prefect-docker worker
runs each flow run in a container of its own, on the compose network, with auth on. A stack of its
own (project name, registry port), taken down in finally with the images it built."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Cancelling
from prefect.utilities.callables import parameter_schema

from deployments import settings
from deployments.image_tag import image_tag
from stack.processes import free_port
from tests.containers.engine import ComposeProject, docker, running_stack
from tests.live_stack import (
    run_deployment_and_wait,
    unique,
    wait_for_completed_task_runs,
    wait_for_final_state,
    wait_until,
)
from tests.reliability.flows import sleep_for
from tests.repository import image_copy

pytestmark = pytest.mark.timeout(1800)

POOL = "docker-pool"
HELLO = "say-hello/say-hello-docker"
SQUARES = "compute-squares/compute-squares-docker"
REPOSITORY = "prefect-deployments"


@pytest.fixture(scope="module")
def pool_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    registry = f"127.0.0.1:{free_port()}"
    try:
        with running_stack(
            tmp_path_factory.mktemp("docker-pool"),
            COMPOSE_PROFILES="single,docker-pool",
            REGISTRY_PORT=registry.rsplit(":", 1)[1],
        ) as project:
            yield project
    finally:  # the flow images its builds pushed
        built = docker("image", "ls", "-q", f"{registry}/{REPOSITORY}").split()
        if built:
            docker("image", "rm", "-f", *sorted(set(built)), check=False)


@pytest.fixture(scope="module")
def pool_api(pool_stack: ComposeProject) -> Iterator[SyncPrefectClient]:
    with pool_stack.client() as client:
        yield client


def flow_container(run: FlowRun) -> str:
    """The container id in prefect-docker's infrastructure_pid (`<docker url>:<container id>`)."""
    assert run.infrastructure_pid, f"flow run {run.id} names no container"
    return run.infrastructure_pid.rsplit(":", 1)[1]


def container_exists(container_id: str) -> bool:
    return bool(docker("ps", "-aq", "--no-trunc", "--filter", f"id={container_id}").strip())


def run_logs(api: SyncPrefectClient, run: FlowRun) -> list[str]:
    logs = api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    return [log.message for log in logs]


def test_profile_up_builds_pushes_and_deploys_then_the_worker_is_healthy(pool_stack) -> None:
    services = pool_stack.services()
    (deploy,) = services["deploy-docker"]
    assert (deploy["State"], deploy["ExitCode"]) == ("exited", 0)
    assert {c["Health"] for c in services["docker-worker"]} == {"healthy"}
    assert {c["State"] for c in services["registry"]} == {"running"}
    tags = pool_stack.registry_api(f"/v2/{REPOSITORY}/tags/list")
    assert tags.json()["tags"] == [image_tag()], "pushed under the code's tag, nothing else"


def test_the_registry_refuses_a_client_that_does_not_log_in(pool_stack, tmp_path) -> None:
    """HTTPS with the stack's certificate, and no push or pull without the login: the API
    answers 401, and Docker on this machine, with no login of its own, cannot push."""
    assert pool_stack.registry_api("/v2/", login=False).status_code == 401
    assert pool_stack.registry_api("/v2/").status_code == 200
    image = f"{pool_stack.registry}/{REPOSITORY}"
    intruder = f"{image}:{unique('unauthenticated')}"
    docker("image", "tag", f"{image}:{image_tag()}", intruder)
    try:
        pushed = subprocess.run(
            ["docker", "push", intruder],
            env={**os.environ, "DOCKER_CONFIG": str(tmp_path)},  # no login stored there
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        docker("image", "rm", intruder)
    assert pushed.returncode != 0, pushed.stdout
    refusals = ("no basic auth credentials", "unauthorized", "authentication required")
    assert any(refusal in pushed.stderr for refusal in refusals), pushed.stderr
    tags = pool_stack.registry_api(f"/v2/{REPOSITORY}/tags/list").json()["tags"]
    assert intruder.rsplit(":", 1)[1] not in tags


def test_docker_deployments_name_the_pushed_image_and_the_compose_network(
    pool_stack, pool_api
) -> None:
    deployments = {d.name: d for d in pool_api.read_deployments() if d.work_pool_name == POOL}
    assert set(deployments) == {"say-hello-docker", "compute-squares-docker"}
    for deployment in deployments.values():
        variables = deployment.job_variables
        assert variables["image"] == f"{pool_stack.registry}/{REPOSITORY}:{image_tag()}"
        assert variables["networks"] == [f"{pool_stack.name}_default"]
        assert variables["auto_remove"] is True
        assert "env" not in variables  # the worker passes on its own credentials
    assert pool_api.read_work_pool(POOL).type == "docker"


def test_say_hello_runs_in_a_container_of_its_own_that_is_removed(pool_stack, pool_api) -> None:
    name = unique("Docker")
    run = run_deployment_and_wait(pool_api, HELLO, {"name": name})
    assert run.state.type == StateType.COMPLETED, run.state.message
    container_id = flow_container(run)
    project_containers = {
        c["ID"] for containers in pool_stack.services().values() for c in containers
    }
    assert not any(container_id.startswith(c) for c in project_containers)
    wait_until(lambda: not container_exists(container_id), 60, "the flow container's removal")
    greeting = f"Hello, {name}!"
    wait_until(lambda: greeting in run_logs(pool_api, run), 60, "the greeting on the server")


def test_compute_squares_records_its_task_runs_through_the_container(pool_api) -> None:
    run = run_deployment_and_wait(pool_api, SQUARES, {"numbers": [1, 2, 3]})
    assert run.state.type == StateType.COMPLETED, run.state.message

    wait_for_completed_task_runs(pool_api, run.id, 3, timeout_s=60)


@contextmanager
def sleeping_deployment(stack: ComposeProject, api: SyncPrefectClient) -> Iterator[str]:
    """tests/reliability/flows.py:sleep_for on the Docker pool, in the pushed image, with the
    repository's tests/ mounted read-only: a run that stays RUNNING as long as asked."""
    hello = api.read_deployment_by_name(HELLO)
    name = unique("sleep-docker")
    deployment_id = api.create_deployment(
        flow_id=api.create_flow_from_name(sleep_for.name),
        name=name,
        entrypoint="tests/reliability/flows.py:sleep_for",
        work_pool_name=POOL,
        pull_steps=hello.pull_steps,
        job_variables={
            **hello.job_variables,
            "volumes": [f"{settings.REPO_ROOT / 'tests'}:/opt/flows/tests:ro"],
        },
        parameter_openapi_schema=parameter_schema(sleep_for).model_dump(exclude_unset=True),
    )
    try:
        yield f"{sleep_for.name}/{name}"
    finally:
        api.delete_deployment(deployment_id)


def running_in_container(api: SyncPrefectClient, full_name: str) -> FlowRun:
    deployment = api.read_deployment_by_name(full_name)
    run = api.create_flow_run_from_deployment(deployment.id, parameters={"seconds": 600})

    def running():
        current = api.read_flow_run(run.id)
        ok = current.state.type == StateType.RUNNING and current.infrastructure_pid
        return current if ok else None

    running_run = wait_until(running, 180, f"flow run {run.id} RUNNING in a container")
    assert container_exists(flow_container(running_run))
    return running_run


def test_a_run_cancelled_from_the_api_stops_its_container(pool_stack, pool_api) -> None:
    with sleeping_deployment(pool_stack, pool_api) as full_name:
        run = running_in_container(pool_api, full_name)
        pool_api.set_flow_run_state(run.id, Cancelling(message="cancelled by the test"))
        final = wait_for_final_state(pool_api, run.id, timeout_s=120)
        assert final.state.type == StateType.CANCELLED, final.state
        container_id = flow_container(run)
        wait_until(lambda: not container_exists(container_id), 60, "the container to stop")


def test_a_killed_flow_container_ends_crashed(pool_stack, pool_api) -> None:
    """The worker sees its container exit with 137 and reports the run CRASHED."""
    with sleeping_deployment(pool_stack, pool_api) as full_name:
        run = running_in_container(pool_api, full_name)
        docker("kill", flow_container(run))
        final = wait_for_final_state(pool_api, run.id, timeout_s=240)
        assert final.state.type == StateType.CRASHED, final.state


def test_a_flow_container_killed_with_its_worker_ends_crashed_by_the_zombie_automation(
    pool_stack, pool_api
) -> None:
    """With its worker gone too, nothing reports the run: the zombie automation (no heartbeat
    for 90 s, prefect.yaml) marks it CRASHED. Its window opens as the run enters RUNNING, so the
    container is killed at once, before the server may have read a heartbeat."""
    with sleeping_deployment(pool_stack, pool_api) as full_name:
        run = running_in_container(pool_api, full_name)
        try:
            for worker in pool_stack.container_ids("docker-worker"):
                docker("kill", worker)
            docker("kill", flow_container(run))
            final = wait_for_final_state(pool_api, run.id, timeout_s=300)
        finally:
            pool_stack.compose("start", "docker-worker")
            pool_stack.wait_healthy("docker-worker")
        assert final.state.type == StateType.CRASHED, final.state
        assert "No heartbeat" in final.state.message


def test_a_code_change_and_a_redeploy_run_the_new_image(pool_stack, pool_api, tmp_path) -> None:
    """`python -m deployments apply --target docker` from a clone whose greeting changed, with
    the target's server in PROD_PREFECT_API_URL and the registry's login: a new tag is built,
    pushed and deployed, and the next run pulls and uses it."""
    clone = image_copy(tmp_path / "clone")
    greetings = clone / "flows" / "greetings.py"
    greetings.write_text(greetings.read_text().replace('f"Hello, {name}!"', 'f"Howdy, {name}!"'))
    new_tag = image_tag(clone)
    assert new_tag != image_tag()
    env = {
        **os.environ,
        **pool_stack.client_env,
        "FLOW_IMAGE_REPOSITORY": f"{pool_stack.registry}/{REPOSITORY}",
        "FLOW_NETWORK": f"{pool_stack.name}_default",
        "FLOW_REGISTRY": pool_stack.registry,
        "REGISTRY_USER": pool_stack.registry_login[0],
        "REGISTRY_PASSWORD": pool_stack.registry_login[1],
        "PROD_PREFECT_API_URL": pool_stack.client_env["PREFECT_API_URL"],
        "PROD_PREFECT_API_AUTH_STRING": pool_stack.client_env["PREFECT_API_AUTH_STRING"],
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    applied = subprocess.run(
        [sys.executable, "-m", "deployments", "apply", "--target", "docker"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-3000:]
    image = pool_api.read_deployment_by_name(HELLO).job_variables["image"]
    assert image == f"{pool_stack.registry}/{REPOSITORY}:{new_tag}"

    name = unique("Changed")
    # The first container of the new image: on the vfs storage driver a full copy of it, slow
    # while make long's other stacks write to the same disk.
    run = run_deployment_and_wait(pool_api, HELLO, {"name": name}, timeout_s=300)
    assert run.state.type == StateType.COMPLETED, run.state.message
    greeting = f"Howdy, {name}!"
    wait_until(lambda: greeting in run_logs(pool_api, run), 60, "the new greeting on the server")
