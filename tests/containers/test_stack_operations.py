"""Operating the compose stack as the README says: restart the server, scale the workers, back the
database up with pg_dump and restore it into a fresh stack. Runs after test_stack.py (name order)
on the same session stack; the restored stack is a project of its own, taken down in finally."""

from __future__ import annotations

import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType

from tests.containers.engine import ComposeProject
from tests.containers.test_stack import executed_by
from tests.live_stack import run_deployment_and_wait, unique, wait_for_final_state

pytestmark = pytest.mark.timeout(1200)

BURST = 12  # say-hello runs at once: 3 workers with --limit 4 each can hold them all
SCALED_WORKERS = 3


def server_state(api, scheduled: bool = True) -> tuple[dict, set]:
    """Deployments with their ids and schedules, and the ids of the flow runs (the API's default
    page of 200: the scheduler adds upcoming runs of its own); `scheduled=False` leaves out the
    runs still waiting in SCHEDULED."""
    deployments = {
        d.name: (d.id, sorted((str(s.id), s.active) for s in d.schedules))
        for d in api.read_deployments()
    }
    runs = api.read_flow_runs()
    if not scheduled:
        runs = [run for run in runs if run.state_type != StateType.SCHEDULED]
    return deployments, {run.id for run in runs}


def still_listed(api, run_ids: set) -> set:
    """Which of `run_ids` the server lists."""
    found = api.read_flow_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=sorted(run_ids))), limit=200
    )
    return {run.id for run in found}


def test_restarting_the_server_loses_no_deployment_schedule_or_run(stack) -> None:
    with stack.client() as api:
        run = run_deployment_and_wait(api, "say-hello/greeting-schedule", {"name": unique("Pre")})
        assert run.state.type == StateType.COMPLETED, run.state.message
        deployments, runs = server_state(api)
    assert run.id in runs
    assert deployments["greeting-schedule"][1], "say-hello has its schedule"

    stack.compose("restart", "prefect-server", timeout=180)
    stack.wait_healthy("prefect-server")

    with stack.client() as api:  # a new connection: the old one ended with the server
        assert server_state(api)[0] == deployments
        assert still_listed(api, runs) == runs
        # The worker reconnects by itself and runs new work.
        again = run_deployment_and_wait(
            api, "say-hello/greeting-schedule", {"name": unique("Post")}
        )
        assert again.state.type == StateType.COMPLETED, again.state.message
    assert executed_by(stack, again.id)


def test_scaled_workers_share_a_burst(stack) -> None:
    scale = ("up", "-d", "--wait", "--no-deps", "--scale")
    stack.compose(*scale, f"worker={SCALED_WORKERS}", "worker", timeout=420)
    try:
        workers = stack.container_ids("worker")
        assert len(workers) == SCALED_WORKERS
        with stack.client() as api:
            deployment = api.read_deployment_by_name("say-hello/greeting-schedule")
            created = [
                api.create_flow_run_from_deployment(
                    deployment.id, parameters={"name": unique(f"Burst{i}")}
                )
                for i in range(BURST)
            ]
            finished = [wait_for_final_state(api, run.id, timeout_s=420) for run in created]
        assert [r.state.type for r in finished] == [StateType.COMPLETED] * BURST
        by_container: dict[str, int] = {}
        for run in finished:
            submitted_by = executed_by(stack, run.id)
            assert len(submitted_by) == 1, f"run {run.id} submitted by {submitted_by}"
            by_container[submitted_by[0]] = by_container.get(submitted_by[0], 0) + 1
        assert set(by_container) == set(workers), f"runs per worker container: {by_container}"
    finally:
        stack.compose(*scale, "worker=1", "worker", timeout=420)


def test_backup_restores_into_a_fresh_stack_with_the_runs_listed(stack, tmp_path) -> None:
    """README: pg_dump from a running stack, `up -d postgres` of a fresh one, pg_restore into
    it, then `up -d`; the same ENCRYPTION_KEY."""
    with stack.client() as api:
        run = run_deployment_and_wait(api, "say-hello/greeting-schedule", {"name": unique("Dump")})
        assert run.state.type == StateType.COMPLETED, run.state.message
        # The fresh stack's `deploy` runs `prefect deploy --all` again, and Prefect replaces a
        # deployment's upcoming auto-scheduled runs when it is deployed (same times, new ids).
        deployments, runs = server_state(api, scheduled=False)
    assert run.id in runs
    dump = stack.compose(
        "exec", "-T", "postgres", "pg_dump", "-U", "prefect", "-Fc", "prefect", binary=True
    ).stdout
    assert dump.startswith(b"PGDMP"), "a custom-format dump"

    fresh = ComposeProject(tmp_path, image=stack.image, ENCRYPTION_KEY=stack.env["ENCRYPTION_KEY"])
    try:
        fresh.up("postgres")
        fresh.compose(
            "exec", "-T", "postgres",
            "pg_restore", "-U", "prefect", "-d", "prefect", "--clean", "--if-exists",
            stdin=dump, binary=True,
        )  # fmt: skip
        fresh.up()
        with fresh.client() as api:
            assert server_state(api)[0] == deployments
            assert still_listed(api, runs) == runs
            assert api.read_flow_run(run.id).state.type == StateType.COMPLETED
    finally:
        fresh.down()
        left = fresh.leftovers()
        assert not any(left.values()), f"down -v left {left}"
