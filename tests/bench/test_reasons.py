"""bench/reasons.py on made-up figures: a target met gives no line, one missed names its figure
and the measured reason."""

from __future__ import annotations

import copy

from bench.measures import REFUSED
from bench.reasons import unmet_targets

ALL_MET = {
    "tuned": {
        "latency": {"p50": 1.2, "p95": 2.5},
        "throughput": {"runs_per_min": 61, "cpu_s_per_run": 1.9},
        "all_503s": 0,
        "tasks": {"tuned": 1.5},
        "chunks": {"deployment_s": 4.0, "deployment_run_s": 1.0},
        "deploy_s": 2.5,
        "make_up_s": 19.0,
    },
    "postgres": {"all_503s": 0},
    "plain": {"latency": {"p50": 0.5}},
}


def missed(**tuned) -> dict:
    results = copy.deepcopy(ALL_MET)
    results["tuned"].update(tuned)
    return results


def test_every_target_met_gives_no_reason() -> None:
    assert unmet_targets(ALL_MET, cores=2) == []


def test_slow_runs_are_put_beside_plain_python() -> None:
    (reason,) = unmet_targets(missed(latency={"p50": 8.38, "p95": 9.58}), cores=2)
    assert reason.startswith("trigger→COMPLETED p50 8.38 s, p95 9.58 s")
    assert "takes 0.50 s at p50" in reason


def test_throughput_is_bounded_by_cpu_per_run() -> None:
    results = missed(throughput={"runs_per_min": 7, "cpu_s_per_run": 13.04})
    (reason,) = unmet_targets(results, cores=2)
    assert reason.startswith("7 runs a minute (target 60)")
    assert "13.04 s of CPU" in reason and "2 cores finish at most 9 a minute" in reason


def test_each_missed_target_has_its_line() -> None:
    results = missed(
        all_503s=10,
        tasks={"tuned": 17.0},
        chunks={"deployment_s": 7.27, "deployment_run_s": 1.13},
        deploy_s=8.96,
        make_up_s=48.11,
    )
    reasons = unmet_targets(results, cores=2)
    assert [reason.split(" ", 2)[:2] for reason in reasons] == [
        ["10", "answers"],
        ["17.00", "ms"],
        ["the", "range"],
        ["prefect", "deploy"],
        ["make", "up"],
    ]
    assert "(0 on PostgreSQL; target 0)" in reasons[0]
    assert "1.13 s running and 6.14 s before it" in reasons[2]


def test_refused_measures_give_no_reason() -> None:
    assert unmet_targets(missed(tasks=REFUSED, chunks=REFUSED), cores=2) == []
