"""docker-compose.yml and the Dockerfile run for real: a Docker engine, Compose v2, the project
image built from the work tree. Runs go through the published loopback port with credentials and
must execute in the worker container. The session's stack fixture takes it down and checks that
`down -v` leaves nothing of it (tests/containers/engine.py).
"""

from __future__ import annotations

import re
import shutil

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright
from prefect.client.schemas.filters import (
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType

from deployments import settings
from tests.browser.trust import environment_trusting
from tests.containers.engine import ComposeProject, built_services, container_logs
from tests.live_stack import (
    run_deployment_and_wait,
    unique,
    wait_for_completed_task_runs,
    wait_until,
)
from tests.requirements import require

# Cold, the session fixture builds the project image first (about 2.5 min on vfs).
pytestmark = pytest.mark.timeout(1200)

LONG_RUNNING = ("postgres", "prefect-server", "tls", "worker")
ONE_SHOT = ("migrate", "deploy")
IMAGE_USER_UID = "10001"  # `useradd --uid 10001 prefect` in the Dockerfile


def executed_by(stack: ComposeProject, flow_run_id) -> list[str]:
    """The worker containers that started this flow run. Several workers may try to submit the
    same run; each logs `submitting flow run '<id>'`, and all but the one whose PENDING
    proposal the server accepts then log that they aborted (or failed) the submission."""
    submitting = f"submitting flow run '{flow_run_id}'"
    gave_up = (
        f"Aborted submission of flow run '{flow_run_id}'",
        f"Failed to update state of flow run '{flow_run_id}'",
    )
    started = []
    for cid in stack.container_ids("worker"):
        log = container_logs(cid)
        if submitting in log and not any(line in log for line in gave_up):
            started.append(cid)
    return started


def test_up_wait_leaves_every_service_healthy_and_the_one_shots_exited_0(stack) -> None:
    services = stack.services()
    assert set(services) == set(LONG_RUNNING + ONE_SHOT)
    for name in set(built_services()) & set(services):  # built from the work tree, this session
        assert {c["Image"] for c in services[name]} == {stack.image}, name
    for name in LONG_RUNNING:
        for container in services[name]:
            assert container["State"] == "running", (name, container)
            assert container["Health"] == "healthy", (name, container)
    for name in ONE_SHOT:
        (container,) = services[name]
        assert container["State"] == "exited", (name, container)
        assert container["ExitCode"] == 0, (name, container)


def test_deploy_registered_both_deployments_on_the_pool(api) -> None:
    names = {d.name: d.work_pool_name for d in api.read_deployments()}
    assert names == {
        "compute-squares": settings.current().work_pool_name,
        "greeting-schedule": settings.current().work_pool_name,
    }


def test_say_hello_completes_in_the_worker_container_and_logs_to_the_server(stack, api) -> None:
    name = unique("Container")
    run = run_deployment_and_wait(api, "say-hello/greeting-schedule", {"name": name})
    assert run.state.type == StateType.COMPLETED, run.state.message
    assert executed_by(stack, run.id), "no worker container logged submitting the run"

    def greeting_logged():  # the flow-run process ships its logs in batches
        logs = api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        return [log for log in logs if log.message == f"Hello, {name}!"]

    (log,) = wait_until(greeting_logged, 60, "the greeting log line on the server")
    assert log.task_run_id is not None, "logged by the greet task"


def test_compute_squares_completes_in_the_worker_container_with_its_task_runs(stack, api) -> None:
    run = run_deployment_and_wait(api, "compute-squares/compute-squares")
    assert run.state.type == StateType.COMPLETED, run.state.message
    assert run.parameters == {"numbers": [2, 4, 6]}
    assert executed_by(stack, run.id), "no worker container logged submitting the run"

    task_runs = wait_for_completed_task_runs(api, run.id, 3, timeout_s=60)
    assert sorted(t.task_key.split("-")[0] for t in task_runs) == ["square"] * 3

    def run_logs():
        logs = api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        return logs or None

    assert wait_until(run_logs, 60, "the compute-squares run's logs on the server")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/deployments/name/compute-squares/compute-squares", None),
        ("POST", "/flow_runs/filter", {}),
    ],
)
def test_api_refuses_requests_without_credentials(stack, method, path, body) -> None:
    # A POST without a CSRF token may meet the CSRF check (403) before basic auth (401).
    refused = {401} if method == "GET" else {401, 403}
    path = "/api" + path
    assert stack.http(method, path, json=body).status_code in refused
    wrong = stack.http(method, path, json=body, auth=("admin", "wrong"))
    assert wrong.status_code in refused
    named = "/api/deployments/name/compute-squares/compute-squares"
    assert stack.http("GET", named, auth=stack.auth).status_code == 200


def test_only_the_https_port_is_published_and_on_loopback_only(stack) -> None:
    published = stack.compose("port", "tls", "4443").stdout.strip()
    assert published == f"127.0.0.1:{stack.server_port}"
    for service, containers in stack.services().items():
        for container in containers:
            bindings = stack.inspect(container["ID"])["HostConfig"]["PortBindings"] or {}
            host_ips = {b["HostIp"] for port in bindings.values() for b in port or []}
            if service == "tls":
                assert list(bindings) == ["4443/tcp"]
                assert host_ips == {"127.0.0.1"}
            else:
                assert not bindings, f"{service} publishes {bindings}"


def test_the_published_port_speaks_tls_only_with_the_stacks_certificate(stack) -> None:
    """Plain HTTP on the published port gets no API answer; a client that does not trust the
    stack's CA refuses the certificate; one that does reaches the server."""
    plain = f"http://127.0.0.1:{stack.server_port}/api/health"
    try:
        answer = httpx.get(plain, timeout=10)
    except httpx.HTTPError:
        answer = None
    assert answer is None or answer.status_code == 400, answer  # nginx: "plain HTTP to HTTPS"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(stack.api_url + "/health", timeout=10)
    assert stack.http("GET", "/api/health").json() is True


@pytest.mark.parametrize("service", ["prefect-server", "worker"])
def test_image_runs_as_uid_10001_and_writes_its_prefect_home_but_not_the_code(
    stack, service
) -> None:
    container_id = stack.container_ids(service)[0]
    assert stack.inspect(container_id)["Config"]["User"] == "prefect"
    probe = unique("probe")
    out = stack.exec(
        service,
        f'id -u; mkdir -p "$PREFECT_HOME" && echo {probe} > "$PREFECT_HOME/{probe}"'
        f' && cat "$PREFECT_HOME/{probe}" && rm "$PREFECT_HOME/{probe}"'
        "; touch flows/greetings.py 2>/dev/null && echo code-writable || echo code-read-only",
    )
    assert out.split() == [IMAGE_USER_UID, probe, "code-read-only"]
    # The main process too (PID 1), not only what `exec` starts.
    status = stack.exec(service, "grep '^Uid:' /proc/1/status")
    assert status.split()[1:] == [IMAGE_USER_UID] * 4


def test_the_ui_on_the_published_port_logs_in_and_lists_the_deployments(stack, tmp_path) -> None:
    """The .env of this stack changes SERVER_PORT (a free port) and leaves UI_API_URL unset, as
    .env.example does: the UI must find its API on whatever address, port and scheme (HTTPS) the
    browser used."""
    assert "UI_API_URL" not in stack.env
    chromium = shutil.which("chromium")
    require(chromium is not None, "Chromium", "apt-get install chromium")
    ui_url = stack.ui_url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            env=environment_trusting(stack.ca, tmp_path / "home"),  # the CA, as a user adds it
        )
        try:
            page = browser.new_page(base_url=ui_url)
            page.goto("/deployments", wait_until="domcontentloaded")
            expect(page).to_have_url(re.compile(r"/login"), timeout=30_000)
            page.get_by_placeholder("admin:pass").fill(":".join(stack.auth))
            page.get_by_role("button", name="Login").click()
            rows = page.locator("tr", has_text="greeting-schedule")
            expect(rows).to_be_visible(timeout=30_000)
            expect(page.locator("tr", has_text="compute-squares").first).to_be_visible()
            assert not page.get_by_text("Can't connect to Server API").is_visible()
        finally:
            browser.close()
