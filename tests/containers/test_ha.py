"""The `ha` profile for real: `docker compose --profile ha up -d --wait` runs two API replicas, one
background-services process, Redis and nginx in front, on a real Docker engine.

The flow runs of these tests come from workers on this machine, as workers on other machines would
run them: `python -m stack.worker_supervisor` (with its warm launcher) against the load balancer's
published port, on a pool of the test's own. The test flows (tests/reliability/flows.py) are
deployed through the API, so they need not be in the image; the marker files they leave count how
often each run really executed."""

from __future__ import annotations

import itertools
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter
from prefect.client.schemas.objects import StateType

from deployments import settings
from stack.processes import ManagedProcess, free_port
from tests.containers.engine import ComposeProject, container_logs, docker, running_stack
from tests.deployed_flows import deployed_test_flow
from tests.live_stack import unique, wait_until
from tests.reliability.conftest import read_markers
from tests.reliability.flows import WORKER_NAME_ENV, leave_marker, sleep_for

HA_API = ("prefect-api-1", "prefect-api-2")
HA_SERVICES = ("redis", *HA_API, "prefect-services", "lb")
BURST_RUNS = 50
RUNS_DONE_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    with running_stack(tmp_path_factory.mktemp("ha"), COMPOSE_PROFILES="ha") as project:
        yield project


@pytest.fixture(scope="module")
def ha_api(ha_stack: ComposeProject) -> Iterator[SyncPrefectClient]:
    with ha_stack.client() as client:
        yield client


@contextmanager
def host_worker(
    stack: ComposeProject, api: SyncPrefectClient, pool: str, state_dir: Path
) -> Iterator[ManagedProcess]:
    """A supervised process worker on this machine, on `pool`, reaching the stack through its
    load balancer; stopped with its flow runs afterwards."""
    name = unique("ha-worker")
    worker = ManagedProcess(name, state_dir)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        **settings.NO_TELEMETRY_ENV,
        "PREFECT_HOME": str(state_dir / "home"),
        **stack.client_env,
        settings.HEALTH_PORT_ENV: str(free_port()),
        WORKER_NAME_ENV: name,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    argv = [sys.executable, "-m", "stack.worker_supervisor", "--pool", pool, "--type", "process"]
    worker.start([*argv, "--limit", "8", "--name", name], env, cwd=settings.REPO_ROOT)
    try:
        wait_until(
            lambda: name in {w.name for w in api.read_workers_for_work_pool(pool)},
            settings.STARTUP_TIMEOUT_S,
            f"worker {name} to poll {pool}",
        )
        yield worker
    finally:
        worker.stop(settings.STOP_TIMEOUT_S)


@pytest.fixture
def pool(ha_api: SyncPrefectClient) -> Iterator[str]:
    """A process work pool of this test's own, deleted afterwards."""
    name = unique("ha-pool")
    ha_api.create_work_pool(WorkPoolCreate(name=name, type="process"))
    try:
        yield name
    finally:
        ha_api.delete_work_pool(name)


def final_runs(api: SyncPrefectClient, run_ids: list, timeout_s: float) -> dict:
    """Each run's final state type, once all are final; fails naming the runs that are not."""
    final: dict = {}

    def all_final() -> bool:
        for run_id in run_ids:
            if run_id not in final:
                state = api.read_flow_run(run_id).state
                if state and state.is_final():
                    final[run_id] = state.type
        return len(final) == len(run_ids)

    wait_until(all_final, timeout_s, f"{len(run_ids) - len(final)} of {len(run_ids)} runs")
    return final


def burst(api: SyncPrefectClient, deployment_id, markers: Path, count: int) -> list:
    return [
        api.create_flow_run_from_deployment(
            deployment_id, parameters={"directory": str(markers), "seconds": 1}
        ).id
        for _ in range(count)
    ]


def assert_each_ran_once(api, run_ids: list, markers: Path) -> None:
    states = final_runs(api, run_ids, RUNS_DONE_TIMEOUT_S)
    assert set(states.values()) == {StateType.COMPLETED}, states
    executions = read_markers(markers)
    assert sorted(executions) == sorted(str(run_id) for run_id in run_ids)
    assert all(len(workers) == 1 for workers in executions.values()), executions


def test_ha_profile_is_healthy_and_published_only_through_the_load_balancer(ha_stack) -> None:
    services = ha_stack.services()
    for name in HA_SERVICES:
        (container,) = services[name]
        assert container["State"] == "running", (name, container)
        if name != "prefect-services":  # a process without a port to check
            assert container["Health"] == "healthy", (name, container)
    assert "prefect-server" not in services, "the single server runs in profile single only"
    for job in ("migrate", "deploy"):
        assert [c["ExitCode"] for c in services[job]] == [0], job
    published = {
        name
        for name, containers in services.items()
        for c in containers
        if c.get("Publishers") and any(p.get("PublishedPort") for p in c["Publishers"])
    }
    assert published == {"lb"}
    ui = ha_stack.http("GET", "/", auth=ha_stack.auth)
    assert ui.status_code == 200 and "<html" in ui.text.lower()


def replica_addresses(stack: ComposeProject) -> dict[str, str]:
    """Each API replica's address on the stack's network, by service."""
    addresses = {}
    for replica in HA_API:
        (container,) = stack.container_ids(replica)
        networks = stack.inspect(container)["NetworkSettings"]["Networks"]
        (address,) = [n["IPAddress"] for name, n in networks.items() if name.endswith("_default")]
        addresses[replica] = address
    return addresses


def served_by(stack: ComposeProject, requests: int) -> set[str]:
    """The replica addresses that answered `requests` health checks sent through the load
    balancer's published (HTTPS) port, from its access log: docker/nginx/prefect-ha.conf logs
    $upstream_addr as `upstream=`, on the plain listener behind the TLS one."""
    marker = unique("probe")
    for _ in range(requests):
        stack.http("GET", f"/api/health?{marker}")
    (lb,) = stack.container_ids("lb")
    log = container_logs(lb)
    lines = [line for line in log.splitlines() if marker in line and "upstream=" in line]
    assert len(lines) == requests, log[-2000:]
    return {line.rsplit("upstream=", 1)[1].split(":")[0] for line in lines}


def test_the_load_balancer_spreads_requests_over_both_replicas(ha_stack, ha_api) -> None:
    deployments = ha_api.read_deployments()
    assert {d.name for d in deployments} >= {"compute-squares", "greeting-schedule"}
    assert served_by(ha_stack, 20) == set(replica_addresses(ha_stack).values())


def test_killing_an_api_replica_mid_burst_loses_no_run(ha_stack, ha_api, pool, tmp_path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    (replica,) = ha_stack.container_ids("prefect-api-1")
    try:
        with (
            deployed_test_flow(ha_api, pool, leave_marker, "leave-marker/ha-burst") as deployment,
            host_worker(ha_stack, ha_api, pool, tmp_path),
        ):
            run_ids = burst(ha_api, deployment.id, markers, BURST_RUNS // 2)
            # Mid-burst: some runs done, others running or still to be picked up.
            wait_until(lambda: len(list(markers.iterdir())) >= 5, 180, "the first runs to start")
            docker("kill", replica)
            run_ids += burst(ha_api, deployment.id, markers, BURST_RUNS - len(run_ids))
            assert_each_ran_once(ha_api, run_ids, markers)
    finally:  # as it was, for the tests after this one
        ha_stack.compose("start", "prefect-api-1")
        ha_stack.wait_healthy("prefect-api-1")
    # The load balancer sends traffic to the restarted replica again.
    restarted = replica_addresses(ha_stack)["prefect-api-1"]
    wait_until(lambda: restarted in served_by(ha_stack, 10), 60, "requests on prefect-api-1")


# Before the Redis restart below: after it, this stack's services process no longer turns
# heartbeats into the zombie automation's action (docs/reliability.md, "Known limits").
def test_zombie_automation_crashes_a_killed_run(ha_stack, ha_api, pool, tmp_path) -> None:
    with (
        deployed_test_flow(ha_api, pool, sleep_for, "sleep-for/ha-zombie") as deployment,
        host_worker(ha_stack, ha_api, pool, tmp_path) as worker,
    ):
        flow_run = ha_api.create_flow_run_from_deployment(
            deployment.id, parameters={"seconds": 600}
        )
        wait_until(
            lambda: ha_api.read_flow_run(flow_run.id).state.type == StateType.RUNNING,
            120,
            "the slow run to be RUNNING",
        )
        # The supervisor, its worker, launcher and the run, at once: nobody reports the crash.
        os.killpg(worker.pid, signal.SIGKILL)
        # The window counts from the last heartbeat, plus the event pipeline's delays.
        final = final_runs(ha_api, [flow_run.id], settings.current().zombie_after_s + 120)
        assert final[flow_run.id] == StateType.CRASHED, final
        crashed = ha_api.read_flow_run(flow_run.id).state
        assert "heartbeat" in (crashed.message or ""), crashed.message


def test_restarting_redis_loses_no_run(ha_stack, ha_api, pool, tmp_path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    with (
        deployed_test_flow(ha_api, pool, leave_marker, "leave-marker/ha-redis") as deployment,
        host_worker(ha_stack, ha_api, pool, tmp_path),
    ):
        run_ids = burst(ha_api, deployment.id, markers, 10)
        wait_until(lambda: len(list(markers.iterdir())) >= 3, 180, "the first runs to start")
        try:
            ha_stack.compose("restart", "redis", timeout=180)
            run_ids += burst(ha_api, deployment.id, markers, 10)
            assert_each_ran_once(ha_api, run_ids, markers)
        finally:
            ha_stack.wait_healthy("redis")


def test_the_services_process_schedules_runs_five_minutes_apart(ha_api) -> None:
    (deployment,) = ha_api.read_deployments(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["greeting-schedule"]))
    )

    def scheduled():
        runs = ha_api.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id={"any_": [deployment.id]}), limit=200
        )
        return [r for r in runs if r.auto_scheduled] or None

    runs = wait_until(scheduled, 180, "the scheduler to create greeting-schedule's runs")
    times = sorted(r.expected_start_time for r in runs)
    assert len(times) > 1 and len(times) == len(set(times)), times
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(times)} == {300.0}
