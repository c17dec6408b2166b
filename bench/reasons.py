"""Why a target of the performance issue is not met by `make up`'s default stack (the `warm`
column), from the same run's figures; `make bench` prints these lines under its table."""

from __future__ import annotations

from bench.measures import REFUSED

P50_TARGET_S, P95_TARGET_S = 1.5, 2.5
RUNS_PER_MIN_TARGET = 45
CPU_PER_RUN_TARGET_S = 1.5
REQUESTS_PER_RUN_TARGET = 15
PER_TASK_TARGET_MS = 2.0
RANGE_TARGET_S = 5.0
DEPLOY_TARGET_S = 3.0
MAKE_UP_TARGET_S = 20.0


def unmet_targets(results: dict, cores: int) -> list[str]:
    """One line per target the warm stack missed in `results`, with the measured reason."""
    warm, tuned, plain = results["warm"], results["tuned"], results["plain"]
    reasons = []
    latency = warm["latency"]
    if latency["p50"] > P50_TARGET_S or latency["p95"] > P95_TARGET_S:
        reasons.append(
            f"trigger→COMPLETED p50 {latency['p50']:.2f} s, p95 {latency['p95']:.2f} s (targets "
            f"{P50_TARGET_S} s, {P95_TARGET_S} s): at p50 {latency['pickup_p50']:.2f} s pass "
            "before the run is RUNNING (the worker's next poll, then the flow-run process: "
            "pull steps, loading the flow) and it runs for "
            f"{latency['running_p50']:.2f} s (the task, the artifact, the result, and Prefect "
            "stopping its heartbeat thread, which sleeps in 1-second steps); plain Python takes "
            f"{plain['latency']['p50']:.2f} s at p50"
        )
    load = warm["throughput"]
    if load["runs_per_min"] < RUNS_PER_MIN_TARGET or load["cpu_s_per_run"] > CPU_PER_RUN_TARGET_S:
        reasons.append(
            f"{load['runs_per_min']:.0f} runs a minute (target {RUNS_PER_MIN_TARGET}) at "
            f"{load['cpu_s_per_run']:.2f} s of CPU per run for the whole stack (target "
            f"{CPU_PER_RUN_TARGET_S} s): {cores} cores finish at most "
            f"{60 * cores / load['cpu_s_per_run']:.0f} a minute at that cost (cold on SQLite: "
            f"{tuned['throughput']['cpu_s_per_run']:.2f} s)"
        )
    requests = warm["requests"]
    if requests["per_run"] > REQUESTS_PER_RUN_TARGET:
        most = ", ".join(
            f"{request} {count:.1f}" for request, count in list(requests["by_path"].items())[:4]
        )
        reasons.append(
            f"{requests['per_run']:.1f} API requests per run (target {REQUESTS_PER_RUN_TARGET}); "
            f"the most: {most} (every one in the table of requests)"
        )
    if warm["all_503s"]:
        reasons.append(
            f"{warm['all_503s']} answers 503 (target 0; cold on SQLite: {tuned['all_503s']})"
        )
    tasks = warm["tasks"]
    if tasks != REFUSED and tasks["tuned"] > PER_TASK_TARGET_MS:
        reasons.append(
            f"{tasks['tuned']:.2f} ms per task (target {PER_TASK_TARGET_MS:.0f} ms; plain Python "
            f"{tasks['plain']:.4f} ms): Prefect's task engine works in the flow's process for "
            "every task run, creating its run and its states. Large inputs run as chunks"
        )
    chunks = warm["chunks"]
    if chunks != REFUSED and chunks["deployment_s"] > RANGE_TARGET_S:
        pickup_s = chunks["deployment_s"] - chunks["deployment_run_s"]
        reasons.append(
            f"the range as a deployment run took {chunks['deployment_s']:.2f} s (target "
            f"{RANGE_TARGET_S:.0f} s): {chunks['deployment_run_s']:.2f} s running and "
            f"{pickup_s:.2f} s before it, the worker's pickup and the flow-run process's start"
        )
    if warm["deploy_s"] > DEPLOY_TARGET_S:
        reasons.append(
            f"prefect deploy --all took {warm['deploy_s']:.2f} s (target "
            f"{DEPLOY_TARGET_S:.0f} s): it is a fresh `prefect` process, which imports Prefect "
            f"first; plain Python's whole greeting, which imports Prefect too, takes "
            f"{plain['latency']['p50']:.2f} s"
        )
    if warm["make_up_s"] > MAKE_UP_TARGET_S:
        reasons.append(
            f"make up took {warm['make_up_s']:.2f} s (target {MAKE_UP_TARGET_S:.0f} s; on SQLite "
            f"{tuned['make_up_s']:.2f} s): a new database, the server's import and migrations, "
            "then the deploy and the worker, each a process importing Prefect"
        )
    return reasons
