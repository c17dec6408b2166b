"""`make bench-curves`: how the cost of `make up`'s stack (tuned, the warm launcher, PostgreSQL
from the wheel) grows with the work, one curve per kind of growth, each on a fresh stack:

- **workers**: a burst of say-hello runs created at once with 1, 2 and 4 supervised workers on
  the pool, each as `make up` runs its own (with its warm launcher, at WORKER_LIMIT runs at once):
  runs per minute and CPU per run of the whole stack;
- **runs at once**: the memory (PSS) of 1, 10 and 20 runs of bench/flows.py:hold running at once,
  warm and cold (WARM_LAUNCHER=0): what the stack grows by per run, and each run process's own
  PSS and USS;
- **deployments**: 2, 50 and 200 deployments, prefect.yaml's two and copies of say-hello with its
  five-minute schedule and event trigger, the copies' first run an hour ahead so that none is due
  while measuring: the apply that creates them, the server's CPU in the minute after it (the
  scheduler fills each new schedule), the stack's CPU when idle after that (the worker polls
  every PREFECT_WORKER_QUERY_SECONDS), and `plan`;
- **history**: the stack's own first runs, then 10,000 and 100,000 finished runs more, copies of
  them written through Prefect's database models (bench/history.py) and spread over the
  retention period: say-hello's trigger to COMPLETED, the p95 of the API requests the UI's
  dashboard, runs page and deployment page make (timed in Chromium, bench/ui_requests.py), and
  the database's size;
- **retention**: a server that ran say-hello's five-minute schedule for 15, 30, 45 and 60 days,
  its older days written at each point: what the database keeps after the vacuum's pass.

    python -m bench.curves               # full size: results/bench-curves.json and .png,
                                         # docs/performance.md's curves and docs/bench-curves.png
    BENCH_RESUME=1 python -m bench.curves  # keep the curves an earlier run measured (same sizes)
    BENCH_SIZE=tiny python -m bench.curves

`make bench`'s tiny size (in `make test`) runs each curve at a few points on its warm stack
(`measure_all`), so none can rot.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events.filters import EventFilter, EventOccurredFilter

from bench import measures
from bench.doc_block import markdown_table, write_block
from bench.flows import hold
from bench.history import database_bytes, seed_history
from bench.plan_scale import timed_cli
from bench.plot import draw_curves
from bench.sizes import start
from bench.stacks import COLD, bench_client, running_stack, stack_cpu_seconds, stack_pids
from bench.ui_requests import api_request_seconds
from deployments import settings
from deployments.register import deploy_flow
from stack.local import LocalStack
from stack.processes import (
    ManagedProcess,
    free_port,
    poll_until,
    process_trees,
    tree_cpu_seconds,
)
from stack.worker_supervisor import processes_dir_default

SIZES = {
    "full": {
        "workers": [1, 2, 4],
        "burst": 100,
        "at_once": [1, 10, 20],
        "hold_s": 90,
        "deployments": [2, 50, 200],
        "after_apply_s": 60,
        "idle_s": 60,
        "history": [0, 10_000, 100_000],
        "latency_runs": 20,
        "template_squares": 5,
        "ui_loads": 3,
        "retention_days": [15, 30, 45, 60],
        "runs_per_day": 288,
    },
    "tiny": {
        "workers": [1, 2],
        "burst": 3,
        "at_once": [1, 2],
        "hold_s": 20,
        "deployments": [2, 4],
        "after_apply_s": 2,
        "idle_s": 2,
        "history": [0, 20],
        "latency_runs": 2,
        "template_squares": 1,
        "ui_loads": 1,
        "retention_days": [30, 34],
        "runs_per_day": 1,
    },
}
DOC_BLOCK = "bench.curves"  # docs/performance.md's generated part (bench/doc_block.py)
MIB = 1024 * 1024
GREETING = "greeting-schedule"  # prefect.yaml's scheduled deployment, copied by the curve
# The retention curve's stack runs the server's vacuum every few seconds instead of hourly, so
# that each point is read after a pass: what a server that ran that long holds.
FAST_VACUUM_ENV = {"PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS": "5"}


# -- workers --------------------------------------------------------------------------------


@contextmanager
def more_workers(
    stack: LocalStack, client: SyncPrefectClient, count: int
) -> Iterator[list[ManagedProcess]]:
    """`count` more supervised workers on the stack's pool, each as `make up` runs its own (a warm
    launcher and a health port of its own); stopped afterwards, also when the measure fails."""
    workers = []
    try:
        for number in range(2, count + 2):
            worker = ManagedProcess(f"bench-worker-{number}", stack.state_dir)
            env = {
                **stack.worker_env,
                "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
                settings.HEALTH_PORT_ENV: str(free_port()),
            }
            supervised = [sys.executable, "-m", "stack.worker_supervisor"]
            worker.start([*supervised, *stack.worker_args(worker.name)], env, settings.REPO_ROOT)
            workers.append(worker)
        names = {worker.name for worker in workers}

        def all_polling() -> bool:
            return names <= {w.name for w in client.read_workers_for_work_pool(stack.pool_name)}

        if not poll_until(all_polling, settings.STARTUP_TIMEOUT_S):
            raise RuntimeError(f"workers {sorted(names)} did not reach pool {stack.pool_name}")
        yield workers
    finally:
        for worker in workers:
            worker.stop(settings.STOP_TIMEOUT_S)


def workers_curve(stack: LocalStack, client: SyncPrefectClient, size: dict) -> list[dict]:
    """The say-hello burst with each number of workers on the pool."""
    points = []
    for count in size["workers"]:
        with more_workers(stack, client, count - 1) as extra:

            def cpu_seconds() -> float:
                pids = [worker.pid for worker in extra if worker.pid]
                return stack_cpu_seconds(stack) + tree_cpu_seconds(*pids)

            points.append(
                {"workers": count, **measures.throughput(client, size["burst"], cpu_seconds)}
            )
    return points


# -- runs at once: memory -------------------------------------------------------------------


def tree_pss(*roots: int) -> int:
    """Bytes of PSS (each shared page split between its sharers) of the processes `roots` and
    their descendants."""
    total = 0
    for process in process_trees(*roots):
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_full_info().pss
    return total


def _run_processes(processes_dir: Path, run_ids: set[str]) -> list[psutil.Process]:
    """The flow-run processes of `run_ids`, by the records they keep in `processes_dir` while
    their engine runs (stack/flow_run.py: `<flow run id>.<pid>`)."""
    processes = []
    for path in processes_dir.iterdir() if processes_dir.is_dir() else ():
        run_id, _, pid = path.name.partition(".")
        if run_id in run_ids and pid.isdigit() and psutil.pid_exists(int(pid)):
            processes.append(psutil.Process(int(pid)))
    return processes


def _running(client: SyncPrefectClient, run_ids: list) -> int:
    return len(
        client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=run_ids),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
            ),
            limit=len(run_ids),
        )
    )


def memory_point(
    stack: LocalStack, client: SyncPrefectClient, deployment_id, count: int, hold_s: float
) -> dict:
    """`count` hold runs at once: once all are RUNNING, what the stack grew by per run since
    before they were created, and each run process's own PSS and USS (means)."""
    before = tree_pss(*stack_pids(stack))
    runs = [
        client.create_flow_run_from_deployment(deployment_id, parameters={"seconds": hold_s})
        for _ in range(count)
    ]
    ids = [run.id for run in runs]
    env = stack.worker_env
    processes_dir = Path(env.get(settings.PROCESSES_DIR_ENV) or processes_dir_default(env))

    def all_held() -> list[psutil.Process]:
        if _running(client, ids) < count:
            return []
        found = _run_processes(processes_dir, {str(run_id) for run_id in ids})
        return found if len(found) == count else []

    processes = poll_until(all_held, hold_s, interval_s=1.0)
    if not processes:
        raise RuntimeError(f"{count} hold runs were not all running within {hold_s:.0f} s")
    grown = tree_pss(*stack_pids(stack)) - before
    own = [process.memory_full_info() for process in processes]
    measures.wait_final(client, ids, timeout_s=hold_s + 120)
    return {
        "runs": count,
        "stack_growth_mib_per_run": grown / count / MIB,
        "run_pss_mib": statistics.mean(info.pss for info in own) / MIB,
        "run_uss_mib": statistics.mean(info.uss for info in own) / MIB,
        "stack_idle_mib": before / MIB,
    }


def memory_curve(stack: LocalStack, client: SyncPrefectClient, size: dict) -> list[dict]:
    """memory_point at each number of runs at once, on a hold deployment of the stack's pool
    (with WORKER_LIMIT at least the largest number, so that all run at once)."""
    deployment_id = deploy_flow(client, hold, f"bench-{uuid.uuid4().hex[:6]}", stack.pool_name)
    try:
        return [
            memory_point(stack, client, deployment_id, count, size["hold_s"])
            for count in size["at_once"]
        ]
    finally:
        client.delete_deployment(deployment_id)


# -- deployments ------------------------------------------------------------------------------


def scheduled_prefect_yaml(directory: Path, count: int, first_run: datetime) -> Path:
    """prefect.yaml with `count` deployments: its own, then copies of say-hello (its schedule and
    its trigger) named greeting-schedule-N, whose schedules start at `first_run`."""
    raw = yaml.safe_load(settings.PREFECT_YAML.read_text())
    greeting = next(d for d in raw["deployments"] if d["name"] == GREETING)
    copies = []
    for number in range(1, count - len(raw["deployments"]) + 1):
        copy = {**greeting, "name": f"{GREETING}-{number}"}
        copy["schedules"] = [
            {**schedule, "anchor_date": first_run.isoformat()} for schedule in greeting["schedules"]
        ]
        copies.append(copy)
    raw["deployments"] += copies
    path = directory / f"prefect-{count}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _scheduled_runs(client: SyncPrefectClient, deployment_ids: list) -> int:
    """SCHEDULED runs of the deployments, counted by the server."""
    return client.count_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=deployment_ids)),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
    )


def cpu_shares(groups: dict[str, list[int]], seconds: float) -> dict[str, float]:
    """The share of one core each group of processes (with their trees) used over the next
    `seconds`, all in one window."""
    before = {name: tree_cpu_seconds(*pids) for name, pids in groups.items()}
    time.sleep(seconds)  # the measure is what the processes do on their own meanwhile
    return {
        name: (tree_cpu_seconds(*pids) - before[name]) / seconds for name, pids in groups.items()
    }


def deployments_point(
    stack: LocalStack, client: SyncPrefectClient, count: int, root: Path, size: dict
) -> dict:
    """`count` deployments applied: the apply, the server's CPU over the next `after_apply_s`
    (the scheduler fills the new schedules), then the idle server's and the rest of the stack's
    share of a core over `idle_s`, and `plan`."""
    path = scheduled_prefect_yaml(root, count, datetime.now(UTC) + timedelta(hours=1))
    server = [stack.server.pid]
    cpu_before = tree_cpu_seconds(*server)
    apply_s = timed_cli(stack, path, "apply")
    apply_cpu = tree_cpu_seconds(*server) - cpu_before
    after_apply = cpu_shares({"server": server}, size["after_apply_s"])["server"]
    ids = [d.id for d in client.read_deployments() if d.name.startswith(GREETING)]
    idle = cpu_shares({"server": server, "rest": stack_pids(stack)[1:]}, size["idle_s"])
    return {
        "deployments": count,
        "scheduled_deployments": len(ids),
        "apply_s": apply_s,
        "server_cpu_s_in_apply": apply_cpu,
        "server_cpu_s_after_apply": after_apply * size["after_apply_s"],
        "scheduled_runs": _scheduled_runs(client, ids),
        "idle_server_share": idle["server"],
        "idle_rest_share": idle["rest"],
        "plan_s": timed_cli(stack, path, "plan"),
    }


def deployments_curve(
    stack: LocalStack, client: SyncPrefectClient, root: Path, size: dict
) -> list[dict]:
    """deployments_point at each number, growing on one stack; prefect.yaml's own two again
    after (apply --prune takes the copies away)."""
    try:
        return [
            deployments_point(stack, client, count, root, size) for count in size["deployments"]
        ]
    finally:
        stack.apply("--prune")


# -- history ----------------------------------------------------------------------------------


def _finished() -> FlowRunFilter:
    return FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=measures.FINAL_STATES))
    )


def _task_runs(client: SyncPrefectClient) -> int:
    """Task runs in the database, counted by the server (the synchronous client has no call)."""
    return client.request("POST", "/task_runs/count").json()


def _ui_pages(client: SyncPrefectClient) -> dict[str, str]:
    """The UI's pages a user opens first: the dashboard, the runs and say-hello's deployment."""
    deployment = client.read_deployment_by_name(measures.SAY_HELLO)
    return {
        "dashboard": "/dashboard",
        "runs": "/runs",
        "deployment": f"/deployments/deployment/{deployment.id}",
    }


def _templates(client: SyncPrefectClient, size: dict) -> list:
    """The say-hello runs of the first history point and `template_squares` compute-squares runs
    with their default numbers, all finished: what the history is copied from."""
    squares = client.read_deployment_by_name(measures.SQUARES)
    count = size["template_squares"]
    created = [client.create_flow_run_from_deployment(squares.id) for _ in range(count)]
    measures.wait_final(client, [run.id for run in created], timeout_s=300)
    newest = client.read_flow_runs(
        flow_run_filter=_finished(),
        sort=FlowRunSort.END_TIME_DESC,
        limit=size["latency_runs"] + count,
    )
    return [run.id for run in newest]


def history_point(stack: LocalStack, client: SyncPrefectClient, size: dict) -> dict:
    """Say-hello's trigger to COMPLETED, the p95 of the API requests each UI page makes, and the
    database's size, with the history the database holds now."""
    latency = measures.trigger_to_completed(client, size["latency_runs"])
    timed = api_request_seconds(stack.ui_url, _ui_pages(client), size["ui_loads"])
    return {
        "runs": client.count_flow_runs(flow_run_filter=_finished()),
        "task_runs": _task_runs(client),
        "latency_p50": latency["p50"],
        "latency_p95": latency["p95"],
        "ui_p95": {
            page: measures.percentile([r["seconds"] for r in requests], 0.95)
            for page, requests in timed.items()
        },
        "ui_requests_per_load": {
            page: len(requests) / size["ui_loads"] for page, requests in timed.items()
        },
        "ui_slowest": {
            page: max(requests, key=lambda r: r["seconds"])["request"]
            for page, requests in timed.items()
        },
        "database_mib": database_bytes(stack.local_database.url) / MIB,
    }


def history_curve(stack: LocalStack, client: SyncPrefectClient, size: dict) -> list[dict]:
    """history_point with the stack's own runs, then with each number of finished runs more,
    copies of its first runs (bench/history.py) spread over the retention period, which keeps
    them all; their events only within the event retention, as the server's vacuum leaves
    them."""
    config = settings.current()
    spread = timedelta(days=config.flow_run_retention_days - 1)
    events_within = timedelta(days=config.event_retention_days)
    points = [{"seeded": 0, **history_point(stack, client, size)}]
    templates = _templates(client, size)
    seeded = 0
    for runs in size["history"][1:]:
        seeded += seed_history(
            stack.local_database.url, templates, runs - seeded, spread, events_within=events_within
        )
        points.append({"seeded": seeded, **history_point(stack, client, size)})
    return points


# -- retention --------------------------------------------------------------------------------


def _expired(client: SyncPrefectClient) -> tuple[int, int]:
    """Flow runs that ended, and events that occurred, longer ago than their retention."""
    config, now = settings.current(), datetime.now(UTC)
    runs = client.count_flow_runs(
        flow_run_filter=FlowRunFilter(
            end_time=FlowRunFilterEndTime(
                before_=now - timedelta(days=config.flow_run_retention_days)
            )
        )
    )
    events = client.read_events(
        EventFilter(
            occurred=EventOccurredFilter(
                since=now - timedelta(days=3650),
                until=now - timedelta(days=config.event_retention_days),
            )
        ),
        limit=1,
    )
    return runs, events.total


def retention_point(stack: LocalStack, client: SyncPrefectClient) -> dict:
    """What the database holds once the vacuum has deleted everything past its retention."""
    if not poll_until(lambda: _expired(client) == (0, 0), 300, interval_s=2.0):
        raise RuntimeError(f"the vacuum left {_expired(client)} expired (runs, events) after 300 s")
    everything = EventFilter(
        occurred=EventOccurredFilter(since=datetime.now(UTC) - timedelta(days=3650))
    )
    return {
        "runs": client.count_flow_runs(flow_run_filter=_finished()),
        "task_runs": _task_runs(client),
        "events": client.read_events(everything, limit=1).total,
        "database_mib": database_bytes(stack.local_database.url) / MIB,
    }


def retention_curve(stack: LocalStack, client: SyncPrefectClient, size: dict) -> list[dict]:
    """A server that ran say-hello's five-minute schedule for each number of days: the runs of
    the days not seeded yet (copies of the stack's say-hello runs, the older days last), then the
    vacuum's pass awaited. What it holds is what such a server holds after a pass: the runs of the
    last FLOW_RUN_RETENTION_DAYS days and the events of the last EVENT_RETENTION_DAYS."""
    measures.trigger_to_completed(client, size["latency_runs"])  # the say-hello runs to copy
    say_hello = client.read_deployment_by_name(measures.SAY_HELLO)
    templates = [
        run.id
        for run in client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[say_hello.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
            ),
            sort=FlowRunSort.END_TIME_DESC,
            limit=size["latency_runs"],
        )
    ]
    points, covered = [], 0
    for days in size["retention_days"]:
        seeded = seed_history(
            stack.local_database.url,
            templates,
            size["runs_per_day"] * (days - covered),
            spread=timedelta(days=days - covered),
            offset=timedelta(days=covered),
        )
        covered = days
        points.append({"days": days, "seeded": seeded, **retention_point(stack, client)})
    return points


# -- all curves -----------------------------------------------------------------------------


def measure_all(stack: LocalStack, client: SyncPrefectClient, root: Path, size: dict) -> dict:
    """Every curve on one warm stack with its WORKER_LIMIT (what `make bench`'s tiny size runs on
    its warm stack): no cold memory, which needs a stack of its own."""
    return {
        "workers": workers_curve(stack, client, size),
        "memory": {"warm": memory_curve(stack, client, size)},
        "deployments": deployments_curve(stack, client, root, size),
        "history": history_curve(stack, client, size),
        "retention": retention_curve(stack, client, size),
    }


# The sizes each curve depends on: a curve an earlier run measured with the same ones, on the same
# machine, is kept with BENCH_RESUME=1.
CURVE_SIZES = {
    "workers": ("workers", "burst"),
    "deployments": ("deployments", "after_apply_s", "idle_s"),
    "history": ("history", "latency_runs", "template_squares", "ui_loads"),
    "memory": ("at_once", "hold_s"),
    "retention": ("retention_days", "runs_per_day", "latency_runs"),
}


def resumable(previous: dict, results: dict) -> dict:
    """The curves of an earlier run on the same machine measured at the sizes this run asks."""
    if previous.get("machine") != results["machine"]:
        return {}
    then, now = previous.get("size", {}), results["size"]
    return {
        curve: previous[curve]
        for curve, keys in CURVE_SIZES.items()
        if curve in previous and all(then.get(key) == now[key] for key in keys)
    }


def measure_full(size: dict, root: Path, results: dict, save) -> None:
    """Each curve not in `results` yet on a fresh stack of its own, saved after each: the memory
    on stacks whose WORKER_LIMIT lets every run of the largest point run at once, warm and cold."""
    on_make_up = {
        "workers": lambda stack, client: workers_curve(stack, client, size),
        "deployments": lambda stack, client: deployments_curve(stack, client, root, size),
        "history": lambda stack, client: history_curve(stack, client, size),
        "retention": lambda stack, client: retention_curve(stack, client, size),
    }
    for curve, measure in on_make_up.items():
        if curve in results:
            continue
        env = FAST_VACUUM_ENV if curve == "retention" else {}
        with (
            running_stack("warm", root / curve, extra_env=env) as (stack, _),
            bench_client(stack) as client,
        ):
            results[curve] = measure(stack, client)
        save()
    if "memory" in results:
        return
    roomy = settings.current().model_copy(update={"worker_limit": max(size["at_once"])})
    memory = {}
    for variant, launcher in (("warm", {}), ("cold", COLD)):
        with (
            running_stack("warm", root / f"memory-{variant}", roomy, launcher) as (stack, _),
            bench_client(stack) as client,
        ):
            memory[variant] = memory_curve(stack, client, size)
    results["memory"] = memory
    save()


def render(results: dict) -> str:
    """A table per curve, each under a line that says what was measured."""
    burst = results["size"]["burst"]
    workers = markdown_table(
        ("workers on the pool", "runs per minute", "CPU per run (whole stack)", "failed", "stuck"),
        [
            (
                str(p["workers"]),
                f"{p['runs_per_min']:.0f}/min",
                f"{p['cpu_s_per_run']:.2f} s",
                str(p["failed"]),
                str(p["stuck"]),
            )
            for p in results["workers"]
        ],
    )
    variants = [v for v in ("warm", "cold") if v in results["memory"]]
    memory = markdown_table(
        (
            "runs at once",
            *(
                f"{v}: {what}"
                for v in variants
                for what in ("stack grows per run", "run's PSS", "run's USS")
            ),
        ),
        [
            (
                str(points[0]["runs"]),
                *(
                    f"{p[key]:.0f} MiB"
                    for p in points
                    for key in ("stack_growth_mib_per_run", "run_pss_mib", "run_uss_mib")
                ),
            )
            for points in zip(*(results["memory"][v] for v in variants), strict=True)
        ],
    )
    deployments = markdown_table(
        (
            "deployments (scheduled)",
            "apply",
            "server CPU in the apply",
            f"server CPU in the {results['size']['after_apply_s']} s after (runs scheduled)",
            "idle: server, rest of the stack (share of a core)",
            "plan",
        ),
        [
            (
                f"{p['deployments']} ({p['scheduled_deployments']})",
                f"{p['apply_s']:.1f} s",
                f"{p['server_cpu_s_in_apply']:.1f} s",
                f"{p['server_cpu_s_after_apply']:.1f} s ({p['scheduled_runs']})",
                f"{p['idle_server_share']:.1%}, {p['idle_rest_share']:.1%}",
                f"{p['plan_s']:.1f} s",
            )
            for p in results["deployments"]
        ],
    )
    pages = list(results["history"][0]["ui_p95"])
    history = markdown_table(
        (
            "runs in the database (task runs)",
            "say-hello trigger→COMPLETED p50, p95",
            *(f"UI {page}: p95 of its API requests (requests)" for page in pages),
            "database",
        ),
        [
            (
                f"{p['runs']:,} ({p['task_runs']:,})",
                f"{p['latency_p50']:.2f} s, {p['latency_p95']:.2f} s",
                *(
                    f"{p['ui_p95'][page]:.3f} s ({p['ui_requests_per_load'][page]:.0f})"
                    for page in pages
                ),
                f"{p['database_mib']:,.0f} MiB",
            )
            for p in results["history"]
        ],
    )
    config = settings.current()
    retention = markdown_table(
        (
            "days of say-hello every five minutes",
            "runs written",
            "finished runs kept (task runs)",
            "events kept",
            "database",
        ),
        [
            (
                str(p["days"]),
                f"{p['seeded']:,}",
                f"{p['runs']:,} ({p['task_runs']:,})",
                f"{p['events']:,}",
                f"{p['database_mib']:,.0f} MiB",
            )
            for p in results["retention"]
        ],
    )
    slowest = "; ".join(
        f"{page}: `{request}`" for page, request in results["history"][-1]["ui_slowest"].items()
    )
    return (
        f"**Workers**: {burst} say-hello runs created at once, with more supervised workers on "
        f"the pool, each as `make up` runs its own (WORKER_LIMIT runs at once each):\n\n"
        f"{workers}\n\n"
        f"**Runs at once**: runs of a flow that sleeps, all RUNNING when measured (PSS: each "
        f"shared page split between the processes sharing it; USS: the run's own pages):\n\n"
        f"{memory}\n\n"
        f"**Deployments**: prefect.yaml's two and copies of say-hello with its five-minute "
        f"schedule and event trigger, none due while measured; idle over "
        f"{results['size']['idle_s']} s with the worker polling:\n\n{deployments}\n\n"
        f"**History**: finished runs added as copies of the stack's own first runs (say-hello "
        f"and compute-squares: their states, task runs, logs, artifacts and events), spread over "
        f"the retention period; each page loaded {results['size']['ui_loads']} times in "
        f"Chromium, its API requests timed by the browser:\n\n{history}\n\n"
        f"The slowest request of each page at the largest history: {slowest}.\n\n"
        f"**Retention**: FLOW_RUN_RETENTION_DAYS={config.flow_run_retention_days} and "
        f"EVENT_RETENTION_DAYS={config.event_retention_days} (the defaults), on a stack that "
        f"runs the vacuum every 5 s instead of hourly. Each line adds the older days' runs "
        f"({results['size']['runs_per_day']} a day, copies of the stack's say-hello runs), then "
        f"reads the database after the vacuum's pass:\n\n{retention}"
    )


def main() -> int:
    config, results, json_path = start(SIZES, "bench-curves", resumable)
    size_name = config.bench_size
    size = SIZES[size_name]
    png_path = json_path.with_suffix(".png")

    def save() -> None:
        json_path.write_text(json.dumps(results, indent=2, default=str))

    with tempfile.TemporaryDirectory(prefix="prefect-curves-") as root:
        os.chmod(root, 0o701)  # as root, the database runs as postgres, which passes through
        measure_full(size, Path(root), results, save)
    text = render(results)
    draw_curves(results, png_path)
    if size_name == "full":
        write_block(
            settings.REPO_ROOT / "docs" / "performance.md",
            DOC_BLOCK,
            f"`make bench-curves` on {results['machine']}, `make up`'s stack:\n\n{text}",
        )
        (settings.REPO_ROOT / "docs" / "bench-curves.png").write_bytes(png_path.read_bytes())
    print(text)
    docs = ", docs/performance.md, docs/bench-curves.png" if size_name == "full" else ""
    print(f"\nwritten: results/{json_path.name}, results/{png_path.name}{docs}")
    return 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C: the stacks it started are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
