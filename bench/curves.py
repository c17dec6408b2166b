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
  every PREFECT_WORKER_QUERY_SECONDS), and `plan`.

    python -m bench.curves               # full size: results/bench-curves.json and .png,
                                         # docs/performance.md's curves and docs/bench-curves.png
    BENCH_SIZE=tiny python -m bench.curves

`make bench`'s tiny size (in `make test`) runs each curve at a few points on its warm stack
(`measure_all`), so none can rot.
"""

from __future__ import annotations

import json
import os
import platform
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
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from bench import measures
from bench.doc_block import write_block
from bench.flows import hold
from bench.plan_scale import timed_cli
from bench.plot import draw_curves
from bench.stacks import COLD, bench_client, running_stack, stack_cpu_seconds
from deployments import settings
from deployments.register import deploy_flow
from stack.local import LocalStack
from stack.processes import ManagedProcess, free_port, poll_until, tree_cpu_seconds
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
    },
    "tiny": {
        "workers": [1, 2],
        "burst": 3,
        "at_once": [1, 2],
        "hold_s": 20,
        "deployments": [2, 4],
        "after_apply_s": 2,
        "idle_s": 2,
    },
}
RESULTS_DIR = settings.REPO_ROOT / "results"
DOC_BLOCK = "bench.curves"  # docs/performance.md's generated part (bench/doc_block.py)
MIB = 1024 * 1024
GREETING = "greeting-schedule"  # prefect.yaml's scheduled deployment, copied by the curve


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


def _stack_pids(stack: LocalStack) -> list[int]:
    database = stack.local_database.pid if stack.local_database else None
    return [pid for pid in (stack.server.pid, stack.worker.pid, database) if pid]


def tree_pss(*roots: int) -> int:
    """Bytes of PSS (each shared page split between its sharers) of the processes `roots` and
    their descendants."""
    total = 0
    for root in roots:
        try:
            tree = [psutil.Process(root)]
            tree += tree[0].children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for process in tree:
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
    before = tree_pss(*_stack_pids(stack))
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
    grown = tree_pss(*_stack_pids(stack)) - before
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
    idle = cpu_shares({"server": server, "rest": _stack_pids(stack)[1:]}, size["idle_s"])
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


# -- all curves -----------------------------------------------------------------------------


def measure_all(stack: LocalStack, client: SyncPrefectClient, root: Path, size: dict) -> dict:
    """Every curve on one warm stack with its WORKER_LIMIT (what `make bench`'s tiny size runs on
    its warm stack): no cold memory, which needs a stack of its own."""
    return {
        "workers": workers_curve(stack, client, size),
        "memory": {"warm": memory_curve(stack, client, size)},
        "deployments": deployments_curve(stack, client, root, size),
    }


def measure_full(size: dict, root: Path, results: dict, save) -> None:
    """Each curve on a fresh stack, saved after each: the workers and the deployments on
    `make up`'s, the memory on one whose WORKER_LIMIT lets every run of the largest point run at
    once, warm and then cold."""
    with running_stack("warm", root / "growth") as (stack, _), bench_client(stack) as client:
        results["workers"] = workers_curve(stack, client, size)
        save()
        results["deployments"] = deployments_curve(stack, client, root, size)
        save()
    roomy = settings.current().model_copy(update={"worker_limit": max(size["at_once"])})
    results["memory"] = {}
    for variant, launcher in (("warm", {}), ("cold", COLD)):
        with (
            running_stack("warm", root / f"memory-{variant}", roomy, launcher) as (stack, _),
            bench_client(stack) as client,
        ):
            results["memory"][variant] = memory_curve(stack, client, size)
        save()


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    return "\n".join([*lines, *(f"| {' | '.join(row)} |" for row in rows)])


def render(results: dict) -> str:
    """The three tables, each under a line that says what was measured."""
    burst = results["size"]["burst"]
    workers = _table(
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
    memory = _table(
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
    deployments = _table(
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
    return (
        f"**Workers**: {burst} say-hello runs created at once, with more supervised workers on "
        f"the pool, each as `make up` runs its own (WORKER_LIMIT runs at once each):\n\n"
        f"{workers}\n\n"
        f"**Runs at once**: runs of a flow that sleeps, all RUNNING when measured (PSS: each "
        f"shared page split between the processes sharing it; USS: the run's own pages):\n\n"
        f"{memory}\n\n"
        f"**Deployments**: prefect.yaml's two and copies of say-hello with its five-minute "
        f"schedule and event trigger, none due while measured; idle over "
        f"{results['size']['idle_s']} s with the worker polling:\n\n{deployments}"
    )


def main() -> int:
    try:
        size_name = settings.current().bench_size
    except settings.SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if size_name not in SIZES:
        print(f"BENCH_SIZE must be one of {', '.join(SIZES)}, not {size_name!r}", file=sys.stderr)
        return 2
    size = SIZES[size_name]
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = "bench-curves" if size_name == "full" else f"bench-curves-{size_name}"
    results: dict = {
        "size": {"name": size_name, **size},
        "machine": f"{os.cpu_count()} cores, {platform.python_version()}, {platform.machine()}",
    }

    def save() -> None:
        (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))

    with tempfile.TemporaryDirectory(prefix="prefect-curves-") as root:
        os.chmod(root, 0o701)  # as root, the database runs as postgres, which passes through
        measure_full(size, Path(root), results, save)
    text = render(results)
    draw_curves(results, RESULTS_DIR / f"{stem}.png")
    if size_name == "full":
        write_block(
            settings.REPO_ROOT / "docs" / "performance.md",
            DOC_BLOCK,
            f"`make bench-curves` on {results['machine']}, `make up`'s stack:\n\n{text}",
        )
        (settings.REPO_ROOT / "docs" / "bench-curves.png").write_bytes(
            (RESULTS_DIR / f"{stem}.png").read_bytes()
        )
    print(text)
    docs = ", docs/performance.md, docs/bench-curves.png" if size_name == "full" else ""
    print(f"\nwritten: results/{stem}.json, results/{stem}.png{docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
