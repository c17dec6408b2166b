"""Why a target of the performance issue is not met, from the same run's figures; `make bench`
prints these lines under its table. Figures measured outside the benchmark are named with the
section of docs/performance.md that holds them."""

from __future__ import annotations

from bench.measures import REFUSED

P50_TARGET_S, P95_TARGET_S = 1.5, 3.0
RUNS_PER_MIN_TARGET = 60
PER_TASK_TARGET_MS = 2.0
RANGE_TARGET_S = 5.0
DEPLOY_TARGET_S = 3.0
MAKE_UP_TARGET_S = 20.0


def unmet_targets(results: dict, cores: int) -> list[str]:
    """One line per target the tuned stack missed in `results`, with the measured reason."""
    tuned, plain, postgres = results["tuned"], results["plain"], results["postgres"]
    reasons = []
    latency = tuned["latency"]
    if latency["p50"] > P50_TARGET_S or latency["p95"] > P95_TARGET_S:
        reasons.append(
            f"trigger→COMPLETED p50 {latency['p50']:.2f} s, p95 {latency['p95']:.2f} s (targets "
            f"{P50_TARGET_S} s, {P95_TARGET_S} s): plain Python, which only starts a process "
            "that imports the flow module (and so Prefect) and greets, takes "
            f"{plain['latency']['p50']:.2f} s at p50, and a process worker pays that on every run"
        )
    load = tuned["throughput"]
    if load["runs_per_min"] < RUNS_PER_MIN_TARGET:
        reasons.append(
            f"{load['runs_per_min']:.0f} runs a minute (target {RUNS_PER_MIN_TARGET}): each run "
            f"costs {load['cpu_s_per_run']:.2f} s of CPU for the whole stack, so {cores} cores "
            f"finish at most {60 * cores / load['cpu_s_per_run']:.0f} a minute"
        )
    if tuned["all_503s"]:
        reasons.append(
            f"{tuned['all_503s']} answers 503 on embedded SQLite ({postgres['all_503s']} on "
            "PostgreSQL; target 0): Prefect 3.8.8 opens its SQLite transactions DEFERRED, so one "
            "that has read and then writes while another connection writes fails at once "
            "('database is locked'), and no setting changes that "
            "(docs/performance.md, SQLite and 503)"
        )
    tasks = tuned["tasks"]
    if tasks != REFUSED and tasks["tuned"] > PER_TASK_TARGET_MS:
        reasons.append(
            f"{tasks['tuned']:.2f} ms per task (target {PER_TASK_TARGET_MS:.0f} ms): Prefect's "
            "task engine works in the flow's process for every task run; its leanest call, with "
            "both log outputs off, took 8.5 ms of CPU on the project's machine "
            "(docs/performance.md, Per task). Large inputs run as chunks"
        )
    chunks = tuned["chunks"]
    if chunks != REFUSED and chunks["deployment_s"] > RANGE_TARGET_S:
        pickup_s = chunks["deployment_s"] - chunks["deployment_run_s"]
        reasons.append(
            f"the range as a deployment run took {chunks['deployment_s']:.2f} s (target "
            f"{RANGE_TARGET_S:.0f} s): {chunks['deployment_run_s']:.2f} s running and "
            f"{pickup_s:.2f} s before it, the worker's pickup and the new process's start"
        )
    if tuned["deploy_s"] > DEPLOY_TARGET_S:
        reasons.append(
            f"prefect deploy --all took {tuned['deploy_s']:.2f} s (target "
            f"{DEPLOY_TARGET_S:.0f} s): about 3.5 s of it is the CLI importing itself "
            "(docs/performance.md, make up and deploy)"
        )
    if tuned["make_up_s"] > MAKE_UP_TARGET_S:
        reasons.append(
            f"make up took {tuned['make_up_s']:.2f} s (target {MAKE_UP_TARGET_S:.0f} s): the "
            "server alone imports for about 8 s and migrates a new database for about 9 s, and "
            "the worker and the deploy each import Prefect "
            "(docs/performance.md, make up and deploy)"
        )
    return reasons
