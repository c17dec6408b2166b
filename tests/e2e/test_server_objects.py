"""The objects prefect.yaml declares beside its deployments, doing their jobs on a live stack
(`make up`'s way, with the webhook's environment variables set): a failed run's notification
reaches a real HTTP receiver, an event emitted with `prefect event emit` starts say-hello with
the name it carries, and compute_squares' chunk tasks wait for the global concurrency limit."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import UUID

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import StateType

from flows.squares import CHUNK_LIMIT
from stack.local import PREFECT, LocalStack
from stack.processes import free_port
from tests.live_stack import new_stack, stack_client, unique, wait_for_final_state, wait_until

TOKEN = "webhook-token-for-the-receiver"


class Receiver(ThreadingHTTPServer):
    """An HTTP endpoint on loopback that keeps every request it is sent."""

    def __init__(self) -> None:
        self.received: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler) -> None:  # noqa: N802 (http.server's name)
                body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
                self.received.append({"headers": dict(handler.headers), "body": body.decode()})
                handler.send_response(204)
                handler.end_headers()

            def log_message(handler, *args) -> None:  # quiet
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/failures"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, receiver) -> Iterator[LocalStack]:
    webhook = {"FAILURE_WEBHOOK_URL": receiver.url, "FAILURE_WEBHOOK_TOKEN": TOKEN}
    # PostgreSQL, as `make up` runs by default: embedded SQLite's event consumers drop an event
    # now and then under load ("database is locked", docs/reliability.md), and with it the
    # notification this module waits for.
    stack = new_stack(tmp_path_factory, "server-objects", extra_env=webhook, database="postgres")
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def api(stack) -> Iterator[SyncPrefectClient]:
    with stack_client(stack) as client:
        yield client


def test_a_failed_run_is_reported_to_the_webhook_naming_run_and_deployment(
    stack, api, receiver
) -> None:
    deployment = api.read_deployment_by_name("compute-squares/compute-squares")
    # Both a list and a range: the flow refuses the combination, so the run fails.
    run = api.create_flow_run_from_deployment(
        deployment.id, parameters={"numbers": [1], "start": 0, "stop": 2}
    )
    assert wait_for_final_state(api, run.id).state.type == StateType.FAILED

    def notification() -> dict | None:
        return next((r for r in receiver.received if run.name in r["body"]), None)

    message = wait_until(notification, 120, f"the failure notification of run {run.name}")
    assert message["headers"]["Authorization"] == f"Bearer {TOKEN}"
    body = json.loads(message["body"])
    assert run.name in body["subject"] and "compute-squares" in body["subject"]
    assert f"{run.id}" in body["body"] and "Failed" in body["body"]


def test_an_emitted_event_starts_say_hello_with_its_name(stack, api) -> None:
    deployment = api.read_deployment_by_name("say-hello/greeting-schedule")
    name = unique("Ada")
    emitted = subprocess.run(
        [PREFECT, "event", "emit", "tutorial.greeting.requested"]
        + ["--resource-id", f"tutorial.greeting.{name}", "--payload", json.dumps({"name": name})],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert emitted.returncode == 0, emitted.stdout + emitted.stderr

    def triggered_run():
        runs = api.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
        return next((r for r in runs if r.parameters.get("name") == name), None)

    run = wait_until(triggered_run, 120, f"a say-hello run for the event naming {name}")
    final = wait_for_final_state(api, run.id)
    assert final.state.type == StateType.COMPLETED, final.state.message
    assert final.state.result() == f"Hello, {name}!"


def test_chunk_tasks_wait_for_the_concurrency_limit(stack, api) -> None:
    """With the limit's only slot held by this test (a lease taken through the API), a range
    run's chunk tasks start and wait: none completes until the slot is free, then all do."""
    limit = api.read_global_concurrency_limit_by_name(CHUNK_LIMIT)
    api.update_global_concurrency_limit(CHUNK_LIMIT, GlobalConcurrencyLimitUpdate(limit=1))
    deployment = api.read_deployment_by_name("compute-squares/compute-squares")
    held = api.increment_concurrency_slots_with_lease(
        names=[CHUNK_LIMIT], slots=1, mode="concurrency", lease_duration=300
    ).json()
    assert held["limits"], "the slot was granted"
    try:
        four_chunks = {"numbers": None, "start": 0, "stop": 40, "chunk_size": 10}
        run = api.create_flow_run_from_deployment(deployment.id, parameters=four_chunks)

        def chunk_tasks(state: StateType):
            task_runs = api.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            return [t for t in task_runs if t.state and t.state.type == state]

        wait_until(lambda: len(chunk_tasks(StateType.RUNNING)) == 4, 120, "4 waiting chunks")
        assert chunk_tasks(StateType.COMPLETED) == []
        assert api.read_flow_run(run.id).state.type == StateType.RUNNING
        api.release_concurrency_slots_with_lease(UUID(held["lease_id"]))
        final = wait_for_final_state(api, run.id)
        assert final.state.type == StateType.COMPLETED, final.state.message
        assert final.state.result() == [n * n for n in range(40)]
    finally:
        restored = GlobalConcurrencyLimitUpdate(limit=limit.limit)
        api.update_global_concurrency_limit(CHUNK_LIMIT, restored)
