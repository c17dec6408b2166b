"""bench/reasons.py on made-up figures: a target met gives no line, one missed names its figure
and the measured reason."""

from __future__ import annotations

import copy

from bench.measures import REFUSED
from bench.reasons import unmet_targets

ALL_MET = {
    "warm": {
        "latency": {"p50": 1.2, "p95": 2.4, "pickup_p50": 0.7, "running_p50": 0.5},
        "throughput": {"runs_per_min": 46, "cpu_s_per_run": 1.4},
        "all_503s": 0,
        "tasks": {"tuned": 1.5, "plain": 0.0001},
        "chunks": {"deployment_s": 4.0, "deployment_run_s": 1.0},
        "deploy_s": 2.5,
        "make_up_s": 19.0,
        "requests": {"per_run": 14.0, "by_path": {"POST /api/flow_runs/{id}/set_state": 4.0}},
    },
    "tuned": {"all_503s": 4, "throughput": {"cpu_s_per_run": 4.3}, "make_up_s": 18.0},
    "plain": {"latency": {"p50": 0.5}},
}


def missed(**warm) -> dict:
    results = copy.deepcopy(ALL_MET)
    results["warm"].update(warm)
    return results


def test_every_target_met_gives_no_reason() -> None:
    assert unmet_targets(ALL_MET, cores=2) == []


def test_slow_runs_are_put_beside_plain_python() -> None:
    latency = {"p50": 3.38, "p95": 4.58, "pickup_p50": 2.1, "running_p50": 1.28}
    (reason,) = unmet_targets(missed(latency=latency), cores=2)
    assert reason.startswith("trigger→COMPLETED p50 3.38 s, p95 4.58 s")
    assert "at p50 2.10 s pass before the run is RUNNING" in reason
    assert "it runs for 1.28 s" in reason and "takes 0.50 s at p50" in reason


def test_throughput_is_bounded_by_cpu_per_run() -> None:
    results = missed(throughput={"runs_per_min": 7, "cpu_s_per_run": 13.04})
    (reason,) = unmet_targets(results, cores=2)
    assert reason.startswith("7 runs a minute (target 45)")
    assert "13.04 s of CPU" in reason and "2 cores finish at most 9 a minute" in reason
    assert "(cold on SQLite: 4.30 s)" in reason


def test_each_missed_target_has_its_line() -> None:
    results = missed(
        all_503s=10,
        tasks={"tuned": 17.0, "plain": 0.0002},
        chunks={"deployment_s": 7.27, "deployment_run_s": 1.13},
        deploy_s=8.96,
        make_up_s=48.11,
        requests={
            "per_run": 25.5,
            "by_path": {
                "GET /api/deployments/{id}": 4.0,
                "POST /api/flow_runs/{id}/set_state": 4.0,
                "GET /api/flow_runs/{id}": 3.0,
                "GET /api/flows/{id}": 2.0,
                "POST /api/logs/": 1.5,
            },
        },
    )
    reasons = unmet_targets(results, cores=2)
    assert [reason.split(" ", 2)[:2] for reason in reasons] == [
        ["25.5", "API"],
        ["10", "answers"],
        ["17.00", "ms"],
        ["the", "range"],
        ["prefect", "deploy"],
        ["make", "up"],
    ]
    # the four most frequent requests, not the fifth
    assert reasons[0].startswith("25.5 API requests per run (target 15); the most: ")
    assert "GET /api/flows/{id} 2.0 (every one" in reasons[0] and "logs" not in reasons[0]
    assert "(target 0; cold on SQLite: 4)" in reasons[1]
    assert "1.13 s running and 6.14 s before it" in reasons[3]


def test_refused_measures_give_no_reason() -> None:
    assert unmet_targets(missed(tasks=REFUSED, chunks=REFUSED), cores=2) == []
