"""A run a worker took (PENDING) whose process never started, because the worker stopped in
between: prefect.yaml's crash-stuck-pending-flow-runs marks it CRASHED after the zombie window,
naming why. No worker would ever look at it again."""

from __future__ import annotations

from prefect.states import Pending

from deployments import settings
from tests.live_stack import wait_for_final_state


def test_a_run_left_pending_by_its_worker_is_crashed_with_its_cause(
    postgres_stack, postgres_api
) -> None:
    # The stack has no worker: the test proposes PENDING as a worker does when it takes a run,
    # and then, like a worker killed at that moment, starts nothing.
    deployment = postgres_api.read_deployment_by_name("say-hello/greeting-schedule")
    run = postgres_api.create_flow_run_from_deployment(deployment.id, parameters={"name": "x"})
    accepted = postgres_api.set_flow_run_state(run.id, Pending())
    assert accepted.state.is_pending(), accepted

    window_s = settings.current().zombie_after_s
    ended = wait_for_final_state(postgres_api, run.id, timeout_s=window_s + 90)
    assert ended.state.is_crashed(), ended.state
    assert "never started" in ended.state.message, ended.state.message
