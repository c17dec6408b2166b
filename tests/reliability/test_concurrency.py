"""A burst of compute-squares triggers: the deployment concurrency limit from prefect.yaml holds
at every moment, and every run still completes (collision strategy ENQUEUE: none is dropped)."""

from __future__ import annotations

import time

import pytest
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import StateType

from deployments.spec import load_deployments
from tests.live_stack import wait_until
from tests.reports import report

pytestmark = pytest.mark.parametrize("live_stack", ["postgres"], indirect=True)

BURST = 20
# A slot is held from PENDING (the worker is starting the process) until a final state.
HOLDING_A_SLOT = {StateType.PENDING, StateType.RUNNING}


def test_burst_respects_the_deployment_concurrency_limit(api) -> None:
    (spec,) = [s for s in load_deployments() if s.name == "compute-squares"]
    assert spec.concurrency and spec.concurrency.collision_strategy == "ENQUEUE"
    deployment = api.read_deployment_by_name("compute-squares/compute-squares")
    assert deployment.global_concurrency_limit.limit == spec.concurrency.limit

    ids = [
        api.create_flow_run_from_deployment(deployment.id, parameters={"numbers": [i]}).id
        for i in range(BURST)
    ]
    only_these = FlowRunFilter(id=FlowRunFilterId(any_=ids))
    peak, samples = 0, 0

    def all_final_while_sampling():
        nonlocal peak, samples
        runs = api.read_flow_runs(flow_run_filter=only_these, limit=BURST)
        peak = max(peak, sum(run.state.type in HOLDING_A_SLOT for run in runs))
        samples += 1
        return runs if all(run.state.is_final() for run in runs) else None

    started = time.monotonic()
    runs = wait_until(all_final_while_sampling, 600, f"{BURST} runs to finish", interval_s=0.25)
    figures = {"runs": BURST, "limit": spec.concurrency.limit, "peak_running": peak}
    figures |= {"samples": samples, "elapsed_s": round(time.monotonic() - started)}
    report("concurrency-burst", figures)
    assert peak <= spec.concurrency.limit
    assert peak == spec.concurrency.limit, "the burst never reached the limit: not exercised"
    assert sorted(run.state.type for run in runs) == [StateType.COMPLETED] * BURST
