"""docker-compose.yml's own commands and environments, run as local processes against a real
PostgreSQL: migrate, prefect-server, deploy, worker, each checked by its own healthcheck.
What is rewritten for running outside containers is listed in tests/compose/compose.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from cryptography.fernet import Fernet
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType

from deployments import settings
from stack.postgres import PostgresCluster
from stack.processes import ManagedProcess, free_port
from tests.compose.compose import NativeRewrites, resolved_services, write_env_file
from tests.live_stack import run_deployment_and_wait, unique, wait_until
from tests.requirements import require_postgres_binaries


@dataclass
class NativeCompose:
    services: dict[str, dict]
    api_url: str
    auth: tuple[str, str]
    server: ManagedProcess
    worker: ManagedProcess


def run_one_shot(name: str, service: dict, rewrites: NativeRewrites) -> None:
    result = subprocess.run(
        rewrites.argv(service["command"]),
        env=rewrites.env(service),
        cwd=settings.REPO_ROOT,  # the image's WORKDIR holds this repository
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


def healthy(service: dict, rewrites: NativeRewrites) -> bool:
    check = subprocess.run(
        rewrites.healthcheck(service), env=rewrites.env(service), capture_output=True, timeout=30
    )
    return check.returncode == 0


def start_long_running(
    name: str, services: dict, rewrites: NativeRewrites, state_dir
) -> ManagedProcess:
    process = ManagedProcess(name, state_dir)
    service = services[name]
    process.start(rewrites.argv(service["command"]), rewrites.env(service), settings.REPO_ROOT)
    wait_until(
        lambda: healthy(service, rewrites) or not process.is_running(),
        120,
        f"the {name} healthcheck",
        interval_s=1,
    )
    assert process.is_running(), f"{name} exited:\n{process.log_tail()}"
    return process


@pytest.fixture(scope="module")
def native_compose(tmp_path_factory) -> Iterator[NativeCompose]:
    require_postgres_binaries()
    tmp = tmp_path_factory.mktemp("compose")
    auth = ("admin", unique("pw"))
    env_file = write_env_file(
        tmp / ".env",
        POSTGRES_PASSWORD=unique("pg"),
        API_AUTH_STRING=":".join(auth),
        ENCRYPTION_KEY=Fernet.generate_key().decode(),
    )
    services = resolved_services(env_file)
    cluster = PostgresCluster(password=services["postgres"]["environment"]["POSTGRES_PASSWORD"])
    rewrites = NativeRewrites(
        postgres_port=cluster.port,
        server_port=free_port(),
        worker_port=free_port(),
        home=tmp / "prefect-home",
    )
    processes: list[ManagedProcess] = []
    try:
        cluster.start()
        run_one_shot("migrate", services["migrate"], rewrites)
        processes.append(start_long_running("prefect-server", services, rewrites, tmp))
        run_one_shot("deploy", services["deploy"], rewrites)
        processes.append(start_long_running("worker", services, rewrites, tmp))
        api_url = rewrites.text(services["worker"]["environment"]["PREFECT_API_URL"])
        yield NativeCompose(services, api_url, auth, processes[0], processes[-1])
    finally:
        for process in reversed(processes):  # the worker before the server
            process.stop(settings.STOP_TIMEOUT_S)
        cluster.stop()


@pytest.fixture(scope="module")
def compose_api(native_compose):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates = {
        PREFECT_API_URL: native_compose.api_url,
        PREFECT_API_AUTH_STRING: ":".join(native_compose.auth),
    }
    with temporary_settings(updates), get_client(sync_client=True) as client:
        yield client


def test_runs_complete_through_the_compose_worker_with_task_runs(compose_api) -> None:
    run = run_deployment_and_wait(compose_api, "compute-squares/compute-squares")
    assert run.state.type == StateType.COMPLETED, run.state.message
    assert run.state.result() == [4, 16, 36]

    # Task runs must still be recorded with basic auth on (a Prefect regression once lost them).
    def task_runs():
        found = compose_api.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
        return found if len(found) >= 3 else None

    assert len(wait_until(task_runs, 30, "the task runs of the compose run")) == 3


def test_deploy_service_registered_both_deployments_on_the_pool(compose_api) -> None:
    names = {d.name: d.work_pool_name for d in compose_api.read_deployments()}
    assert names == {
        "compute-squares": settings.current().work_pool_name,
        "greeting-schedule": settings.current().work_pool_name,
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/deployments/name/compute-squares/compute-squares", None),
        ("POST", "/flow_runs/filter", {}),
        ("POST", "/flows/", {"name": "created-without-credentials"}),
        ("POST", "/work_pools/", {"name": "pool-without-credentials", "type": "process"}),
    ],
)
def test_api_refuses_requests_without_credentials(
    native_compose, compose_api, method, path, body
) -> None:
    # A POST without a CSRF token meets the CSRF check first (403); reads meet basic auth (401).
    refused = {401} if method == "GET" else {401, 403}
    response = httpx.request(method, native_compose.api_url + path, json=body, timeout=10)
    assert response.status_code in refused
    wrong = httpx.request(
        method, native_compose.api_url + path, json=body, auth=("admin", "wrong"), timeout=10
    )
    assert wrong.status_code in refused
    assert "created-without-credentials" not in {f.name for f in compose_api.read_flows()}
    assert "pool-without-credentials" not in {p.name for p in compose_api.read_work_pools()}


def test_no_csrf_token_without_credentials(native_compose) -> None:
    url = f"{native_compose.api_url}/csrf-token?client={unique('client')}"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, auth=native_compose.auth, timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_only_health_endpoints_answer_without_credentials(native_compose, path) -> None:
    assert httpx.get(native_compose.api_url + path, timeout=10).status_code == 200


def test_ui_is_told_the_configured_api_url_and_auth(native_compose) -> None:
    settings_url = native_compose.api_url.removesuffix("/api") + "/ui-settings"
    ui = httpx.get(settings_url, timeout=10).json()
    expected = native_compose.services["prefect-server"]["environment"]["PREFECT_SERVER_UI_API_URL"]
    assert ui["api_url"] == expected
    assert ui["auth"] == "BASIC"


def test_no_traceback_in_server_or_worker_logs(native_compose) -> None:
    for process in (native_compose.server, native_compose.worker):
        log = process.log_path.read_text(errors="replace")
        assert "Traceback" not in log, process.log_tail(60)
