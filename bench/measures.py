"""One function per measure. Each returns plain numbers; bench/run.py puts them side by side."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from prefect import flow, task
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments import settings
from deployments.settings import DASK_SCHEDULER_ADDRESS_ENV
from flows.squares import compute_squares, square_numbers
from stack.dask_cluster import local_dask_cluster
from stack.local import PREFECT, LocalStack
from stack.processes import poll_until

SAY_HELLO = "say-hello/greeting-schedule"
SQUARES = "compute-squares/compute-squares"
# The same work as a say-hello run, without Prefect: a fresh Python process that greets.
PLAIN_GREETING = [sys.executable, "-c", "from flows.greetings import greeting; greeting('bench')"]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values),
        "p95": percentile(values, 0.95),
        "max": max(values),
        "runs": len(values),
        "values": values,
    }


FINAL_STATES = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]


def _final_runs(client: SyncPrefectClient, flow_run_ids: list, timeout_s: float):
    """The runs that reached a final state within `timeout_s`, in order, and the ids of the
    others. One request per poll, however many runs are pending: the server's CPU is measured,
    and the bench's own reads must not weigh in it."""
    pending = set(flow_run_ids)
    finished = {}

    def all_final() -> bool:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=list(pending)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=FINAL_STATES)),
            ),
            limit=min(len(pending), 200),  # the server's largest page
        )
        for run in runs:
            finished[run.id] = run
            pending.discard(run.id)
        return not pending

    poll_until(all_final, timeout_s, interval_s=0.2 if len(flow_run_ids) == 1 else 1.0)
    return [finished[run_id] for run_id in flow_run_ids if run_id in finished], pending


def wait_final(client: SyncPrefectClient, flow_run_ids: list, timeout_s: float) -> list:
    finished, pending = _final_runs(client, flow_run_ids, timeout_s)
    if pending:
        raise TimeoutError(f"{len(pending)} of {len(flow_run_ids)} runs not final in {timeout_s} s")
    return finished


# What a measure reports when the server still answered 503 (SQLite busy) after the client's
# own retries: a measured outcome, not a crash.
REFUSED = "refused (503)"


def unless_refused(call):
    """`call()`, or REFUSED when the server refused one of its requests with a lasting 503."""
    try:
        return call()
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 503:
            raise
        return REFUSED


def _create_run(client: SyncPrefectClient, deployment_id, name: str) -> FlowRun | None:
    """A new say-hello run, or None when the server refused to create it (counted as refused)."""
    run = unless_refused(
        lambda: client.create_flow_run_from_deployment(deployment_id, parameters={"name": name})
    )
    return None if run is REFUSED else run


def trigger_to_completed(client: SyncPrefectClient, count: int) -> dict:
    """`count` say-hello runs one after another: seconds from the run's creation to its end, by
    the server's own timestamps (so the bench's polling does not add to them)."""
    deployment = client.read_deployment_by_name(SAY_HELLO)
    latencies, pickups, running, failed, refused = [], [], [], 0, 0
    for index in range(count):
        created = _create_run(client, deployment.id, f"bench-{index}")
        if created is None:
            refused += 1
            continue
        (run,) = wait_final(client, [created.id], timeout_s=120)
        failed += run.state.type != StateType.COMPLETED
        latencies.append((run.end_time - run.created).total_seconds())
        pickups.append((run.start_time - run.created).total_seconds())
        running.append((run.end_time - run.start_time).total_seconds())
    return {
        **summary(latencies),
        "pickup_p50": statistics.median(pickups),
        "running_p50": statistics.median(running),
        "failed": failed,
        "refused": refused,
    }


def plain_process_latency(count: int) -> dict:
    """The floor of any process-per-run design: start Python, import the flow module, greet."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        subprocess.run(PLAIN_GREETING, cwd=settings.REPO_ROOT, check=True)
        latencies.append(time.perf_counter() - started)
    return summary(latencies)


def throughput(client: SyncPrefectClient, count: int, cpu_seconds) -> dict:
    """`count` say-hello runs created at once: runs per minute from the first creation to the
    last end, failures, and CPU seconds per run of the whole stack (server, worker, runs)."""
    deployment = client.read_deployment_by_name(SAY_HELLO)
    cpu_before = cpu_seconds()
    created = [_create_run(client, deployment.id, f"load-{i}") for i in range(count)]
    runs = [run for run in created if run is not None]
    # A run the stack loses (e.g. RUNNING without a process) is counted as stuck, not awaited
    # for ever: the deadline leaves cold runs on a busy machine (make test's) time to end.
    finished, stuck = _final_runs(client, [run.id for run in runs], timeout_s=120 + 30 * count)
    cpu = cpu_seconds() - cpu_before
    span = max(r.end_time for r in finished) - min(r.created for r in finished)
    return {
        "runs_per_min": 60 * len(finished) / span.total_seconds(),
        "failed": sum(r.state.type != StateType.COMPLETED for r in finished),
        "refused": count - len(runs),
        "stuck": len(stuck),
        # where each stuck run stayed, for the report that shows it
        "stuck_states": sorted(client.read_flow_run(run_id).state.name for run_id in stuck),
        "cpu_s_per_run": cpu / len(finished),
        "runs": count,
    }


def plain_throughput(count: int, parallel: int = 2) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda _: subprocess.run(PLAIN_GREETING, check=True), range(count)))
    return {"runs_per_min": 60 * count / (time.perf_counter() - started), "runs": count}


# Prefect's defaults for comparison: a task with the default cache policy (it hashes inputs
# and source for every run), mapped over the numbers.
@task
def square_with_defaults(n: int) -> int:
    return n * n


@flow
def squares_with_defaults(numbers: list[int]) -> list[int]:
    return square_with_defaults.map(numbers).result()


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _best_of(repeats: int, call) -> float:
    """The fastest of `repeats` timings: on SQLite a run now and then waits out a lock for about
    a minute (docs/performance.md), which says nothing about the per-task cost."""
    return min(_timed(call) for _ in range(repeats))


def per_task_overhead(api_url: str, count: int) -> dict:
    """Milliseconds of orchestration per extra task, in-process against the stack's server:
    (time for `count` numbers - time for 1) / (count - 1), minus the squaring itself."""
    numbers = list(range(count))
    plain_ms = 1000 * _timed(lambda: square_numbers(numbers)) / count
    results = {"plain": plain_ms}
    with temporary_settings({PREFECT_API_URL: api_url}):
        for name, run in (("default", squares_with_defaults), ("tuned", compute_squares)):
            run([1])  # warm up imports and the client
            one = _best_of(2, lambda run=run: run([1]))
            many = _best_of(2, lambda run=run: run(numbers))
            results[name] = 1000 * (many - one) / (count - 1) - plain_ms
    return results


def chunked_squares(api_url: str, client: SyncPrefectClient, stop: int, chunk_sizes) -> dict:
    """Square 0..stop in chunks: in-process for each chunk size, then as a deployment run."""
    plain_s = _timed(lambda: square_numbers(range(stop)))
    in_process = {}
    with temporary_settings({PREFECT_API_URL: api_url}):
        compute_squares(start=0, stop=10)  # warm up
        for size in chunk_sizes:
            in_process[size] = _timed(
                lambda size=size: compute_squares(start=0, stop=stop, chunk_size=size)
            )
    deployment = client.read_deployment_by_name(SQUARES)
    created = client.create_flow_run_from_deployment(
        # numbers=None overrides the deployment's default numbers, which a range may not join.
        deployment.id,
        parameters={"numbers": None, "start": 0, "stop": stop},
    )
    (run,) = wait_final(client, [created.id], timeout_s=300)
    return {
        "plain_s": plain_s,
        "in_process_s": in_process,
        "deployment_s": (run.end_time - run.created).total_seconds(),
        # From RUNNING to COMPLETED: the same work as in-process, without the pickup.
        "deployment_run_s": (run.end_time - run.start_time).total_seconds(),
        "deployment_state": run.state.type.value,
    }


def range_on_dask(stack: LocalStack, client: SyncPrefectClient, stop: int, state_dir) -> dict:
    """compute_squares over 0..stop as deployment runs, one on Prefect's default thread pool and
    one on a Dask cluster of this machine (stack/dask_cluster.py: two workers of two threads):
    seconds from creation to end, and from RUNNING to end, of each."""
    deployment = client.read_deployment_by_name(SQUARES)
    timings = {}
    with local_dask_cluster(stack.env, state_dir) as address:
        for runner, env in (("default", {}), ("dask", {DASK_SCHEDULER_ADDRESS_ENV: address})):
            created = client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"numbers": None, "start": 0, "stop": stop},
                job_variables={"env": env},
            )
            (run,) = wait_final(client, [created.id], timeout_s=900)
            if run.state.type != StateType.COMPLETED:
                timings[runner] = {"state": run.state.type.value}
                continue
            timings[runner] = {
                "s": (run.end_time - run.created).total_seconds(),
                "running_s": (run.end_time - run.start_time).total_seconds(),
                "state": run.state.type.value,
            }
    return timings


def inline_numbers_refused(client: SyncPrefectClient, count: int) -> str:
    """What the API answers to `count` numbers inline (its parameter cap is 512 KB)."""
    deployment = client.read_deployment_by_name(SQUARES)
    try:
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"numbers": list(range(count))}
        )
    except Exception as exc:  # PrefectHTTPStatusError: what the user would see
        response = getattr(exc, "response", None)
        if response is None:
            return repr(exc)
        # A 422 names the problem in exception_detail's messages (the rest echoes the numbers).
        body = response.json()
        messages = [error.get("msg", "") for error in body.get("exception_detail", [])]
        return f"{response.status_code}: {body.get('detail') or '; '.join(messages)}"
    client.delete_flow_run(run.id)
    return "accepted"


def deploy_seconds(stack: LocalStack) -> float:
    """`prefect --no-prompt deploy --all` from the repository root, as users run it."""
    return _timed(lambda: stack.run_cli(PREFECT, "--no-prompt", "deploy", "--all"))
