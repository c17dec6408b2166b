"""`make bench`: every measure, side by side for Prefect's defaults, this repository's tuned
settings on embedded SQLite with every run a fresh process, `make up`'s default (tuned, the warm
launcher, PostgreSQL from the wheel) and plain Python, as a table (with the measured reason for
each target not met), results/bench.json and results/bench.png. A full-size run also writes its
table, its reasons and its plot into docs/performance.md and docs/bench.png.

`python -m bench.run` runs the full size (issue targets); `BENCH_SIZE=tiny` runs a few of each,
with the three stacks at once, which is what `make test` does so the benchmark cannot rot. A full
run takes about an hour: `BENCH_RESUME=1` keeps the stacks an earlier run of the same size on the
same machine finished (results/bench.json) and measures only the others.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import curves, measures, plan_scale
from bench.doc_block import markdown_table, write_block
from bench.plot import draw
from bench.reasons import REQUESTS_PER_RUN_TARGET, unmet_targets
from bench.sizes import start
from bench.stacks import (
    VARIANTS,
    bench_client,
    count_503s,
    requests_since,
    running_stack,
    server_log_size,
    stack_cpu_seconds,
    stop_live_stacks,
    supervisor_decisions,
)
from deployments import settings

SIZES = {
    "full": {
        "latency_runs": 30,
        "throughput_runs": 100,
        "tasks": 1000,
        "range_stop": 1_000_000,
        "chunk_sizes": [10_000, 50_000, 250_000],
        "dask_range_stop": 10_000_000,
    },
    "tiny": {
        "latency_runs": 2,
        "throughput_runs": 3,
        "tasks": 20,
        "range_stop": 20_000,
        "chunk_sizes": [10_000],
        "dask_range_stop": 100_000,
    },
}
PERFORMANCE_DOC = settings.REPO_ROOT / "docs" / "performance.md"
DOC_BLOCK = "make bench"  # docs/performance.md's generated part (bench/doc_block.py)


def measure_variant(variant: str, size_name: str, root: Path, figures: dict, save) -> None:
    """Every measure of one stack into `figures`, saved after each: a full run takes about an
    hour, and what is measured survives an interruption."""
    size = SIZES[size_name]
    # The tiny size's warm stack also measures each growth curve, the retention one after the
    # vacuum's passes, every few seconds instead of hourly.
    vacuum = curves.FAST_VACUUM_ENV if size_name == "tiny" and variant == "warm" else {}
    with (
        running_stack(variant, root, extra_env=vacuum) as (stack, up_s),
        bench_client(stack) as client,
    ):
        figures["make_up_s"] = up_s
        since = server_log_size(stack)
        figures["latency"] = measures.trigger_to_completed(client, size["latency_runs"])
        figures["requests"] = per_run(requests_since(stack, since), figures["latency"]["runs"])
        figures["latency_503s"] = count_503s(stack)
        save()
        figures["throughput"] = measures.throughput(
            client, size["throughput_runs"], lambda: stack_cpu_seconds(stack)
        )
        figures["all_503s"] = count_503s(stack)
        save()
        if variant == "warm":
            # In-process flows against `make up`'s default server: a 503 that outlasts the
            # client's retries is reported as refused, not a crash that loses the whole run.
            figures["tasks"] = measures.unless_refused(
                lambda: measures.per_task_overhead(stack.api_url, size["tasks"])
            )
            save()
            figures["chunks"] = measures.unless_refused(
                lambda: measures.chunked_squares(
                    stack.api_url, client, size["range_stop"], size["chunk_sizes"]
                )
            )
            save()
            figures["dask"] = measures.unless_refused(
                lambda: measures.range_on_dask(
                    stack, client, size["dask_range_stop"], root / "dask"
                )
            )
            save()
            if size_name == "full":
                figures["inline_1m_numbers"] = measures.inline_numbers_refused(client, 1_000_000)
            figures["deploy_s"] = measures.deploy_seconds(stack)
            if size_name == "tiny":  # each growth curve at a few points (bench/curves.py)
                (root / "curves").mkdir()
                figures["curves"] = curves.measure_all(
                    stack, client, root / "curves", curves.SIZES["tiny"]
                )
        figures["all_503s"] = count_503s(stack)
        figures["worker"] = supervisor_decisions(stack)
    figures["complete"] = True
    save()


def per_run(requests: Counter[str], runs: int) -> dict:
    """The requests the sequential runs made, per run: all of them, and by method and path."""
    runs = max(runs, 1)
    return {
        "per_run": sum(requests.values()) / runs,
        "by_path": {request: count / runs for request, count in requests.most_common()},
    }


def _s(value: float) -> str:
    return f"{value:.2f} s"


def table_rows(results: dict) -> list[tuple[str, ...]]:
    """(metric, default, tuned, warm on PostgreSQL, plain Python, target) for every measure."""
    warm, plain = results["warm"], results["plain"]
    stacks = tuple(results[variant] for variant in VARIANTS)
    tasks, chunks = warm["tasks"], warm["chunks"]

    def each_stack(figure) -> tuple[str, str, str]:
        return tuple(figure(variant) for variant in stacks)

    def runs_counted(outcome: str) -> tuple[str, str, str]:
        """Runs with this outcome in the latency and the throughput measure together."""
        return each_stack(lambda v: str(v["latency"][outcome] + v["throughput"][outcome]))

    return [
        (
            "trigger→COMPLETED p50",
            *each_stack(lambda v: _s(v["latency"]["p50"])),
            _s(plain["latency"]["p50"]),
            "≤ 1.5 s",
        ),
        (
            "trigger→COMPLETED p95",
            *each_stack(lambda v: _s(v["latency"]["p95"])),
            _s(plain["latency"]["p95"]),
            "≤ 2.5 s",
        ),
        (
            "…of it before RUNNING (created→running) p50",
            *each_stack(lambda v: _s(v["latency"]["pickup_p50"])),
            "–",
            "–",
        ),
        (
            "503s from the server (latency runs / all)",
            *each_stack(lambda v: f"{v['latency_503s']} / {v['all_503s']}"),
            "–",
            "0",
        ),
        (
            f"throughput, {warm['throughput']['runs']} runs at once",
            *each_stack(lambda v: f"{v['throughput']['runs_per_min']:.0f}/min"),
            f"{plain['throughput']['runs_per_min']:.0f}/min",
            "≥ 45/min",
        ),
        ("failed runs", *runs_counted("failed"), "–", "0"),
        ("runs refused: 503 after the client's 5 retries", *runs_counted("refused"), "–", "0"),
        (
            f"runs not final at the burst's deadline ({warm['throughput']['runs']} at once)",
            *each_stack(lambda v: str(v["throughput"]["stuck"])),
            "–",
            "0",
        ),
        (
            "worker restarts by the supervisor (kept unhealthy: server hung or runs live)",
            *each_stack(lambda v: f"{v['worker']['restarts']} ({v['worker']['kept']})"),
            "–",
            "0",
        ),
        (
            "CPU per run (whole stack)",
            *each_stack(lambda v: _s(v["throughput"]["cpu_s_per_run"])),
            "–",
            "≤ 1.5 s",
        ),
        (
            "API requests per run (the server's access log, sequential runs)",
            *each_stack(lambda v: f"{v['requests']['per_run']:.1f}"),
            "–",
            f"≤ {REQUESTS_PER_RUN_TARGET}",
        ),
        (
            f"orchestration per task ({results['size']['tasks']} numbers)",
            *(
                (f"{tasks['default']:.2f} ms", "–", f"{tasks['tuned']:.2f} ms")
                + (f"{tasks['plain']:.4f} ms",)
                if tasks != measures.REFUSED
                else (tasks, "–", tasks, "–")
            ),
            "≤ 2 ms",
        ),
        *chunk_rows(chunks, results["size"]["range_stop"]),
        *dask_rows(warm.get("dask", "not measured"), results["size"]["dask_range_stop"]),
        ("prefect deploy --all", "–", "–", _s(warm["deploy_s"]), "–", "≤ 3 s"),
        ("make up (installed .venv)", *each_stack(lambda v: _s(v["make_up_s"])), "–", "≤ 20 s"),
    ]


def chunk_rows(chunks: dict | str, stop: int) -> list[tuple[str, ...]]:
    """The chunked range in-process (fastest chunk size) and as a deployment run (`make up`'s
    default stack only)."""
    label = f"squares of 0..{stop:,} in-process"
    deployed = "…the same as a deployment run: created→COMPLETED (RUNNING→COMPLETED)"
    if chunks == measures.REFUSED:
        return [(label, "–", "–", chunks, "–", "≤ 5 s"), (deployed, "–", "–", chunks, "–", "≤ 5 s")]
    # JSON turns the chunk sizes into strings: a resumed run reads them back as such.
    timings = {int(size): seconds for size, seconds in chunks["in_process_s"].items()}
    best = min(timings, key=timings.get)
    created_s, running_s = chunks["deployment_s"], chunks["deployment_run_s"]
    return [
        (f"{label} (chunk {best:,})", "–", "–", _s(timings[best]), _s(chunks["plain_s"]), "≤ 5 s"),
        (deployed, "–", "–", f"{_s(created_s)} ({_s(running_s)})", "–", "≤ 5 s"),
    ]


def dask_rows(dask: dict | str, stop: int) -> list[tuple[str, ...]]:
    """The range as deployment runs on the default thread pool and on a local Dask cluster."""

    def timing(runner: str) -> str:
        if isinstance(dask, str):  # refused, or a resumed result measured before this row
            return dask
        run = dask[runner]
        if "s" not in run:
            return run["state"]
        return f"{_s(run['s'])} ({_s(run['running_s'])})"

    label = f"squares of 0..{stop:,} as a deployment run (RUNNING→COMPLETED)"
    return [
        (f"{label}: default thread pool", "–", "–", timing("default"), "–", "–"),
        ("…on Dask, 2 local workers × 2 threads", "–", "–", timing("dask"), "–", "–"),
    ]


# The VARIANTS' columns.
STACK_COLUMNS = ("Prefect defaults (SQLite)", "tuned, cold (SQLite)", "make up: warm, PostgreSQL")


def requests_table(results: dict) -> str:
    """Which requests a sequential say-hello run makes, per run, on each stack: the run's own
    (the worker's, its process's) and the worker's polls while it ran."""
    paths = sorted(
        {path for variant in VARIANTS for path in results[variant]["requests"]["by_path"]},
        key=lambda path: -results["warm"]["requests"]["by_path"].get(path, 0),
    )
    rows = [
        (f"`{path}`", *(f"{results[v]['requests']['by_path'].get(path, 0):.1f}" for v in VARIANTS))
        for path in paths
    ]
    return markdown_table(("request", *STACK_COLUMNS), rows)


def render(rows: list[tuple[str, ...]]) -> str:
    return markdown_table(("metric", *STACK_COLUMNS, "plain Python", "target"), rows)


def write_docs(results: dict, png: Path) -> None:
    """Put the run's table, machine and reasons between the markers of docs/performance.md,
    and its plot at docs/bench.png."""
    reasons = "".join(f"- {reason}\n" for reason in results["unmet"]) or "Every target met.\n"
    write_block(
        PERFORMANCE_DOC,
        DOC_BLOCK,
        f"`make bench` on {results['machine']}, "
        f"{results['size']['latency_runs']} sequential runs and "
        f"{results['size']['throughput_runs']} at once per stack:\n\n{results['table']}\n\n"
        f"Targets not met, and why (measured in the same run):\n\n{reasons}\n"
        "The requests of one say-hello run, per run, from the server's access log (the "
        "bench's own polling left out; the worker's polls while the run lasted counted):\n\n"
        f"{results['requests_table']}\n",
    )
    shutil.copyfile(png, PERFORMANCE_DOC.with_name("bench.png"))


def resumable(previous: dict, results: dict) -> dict:
    """The variants of an earlier run of the same size on the same machine that finished."""
    if previous.get("size") != results["size"] or previous.get("machine") != results["machine"]:
        return {}
    return {v: previous[v] for v in VARIANTS if previous.get(v, {}).get("complete")}


def main() -> int:
    config, results, json_path = start(SIZES, "bench", resumable)
    size_name = config.bench_size
    size = SIZES[size_name]
    png_path = json_path.with_suffix(".png")

    def save() -> None:
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")

    lock = threading.Lock()

    def measure(variant: str) -> None:
        figures: dict = {}

        def save_variant() -> None:
            with lock:  # a copy: the writer never reads a dict that a measuring thread changes
                results[variant] = dict(figures)
                save()

        measure_variant(variant, size_name, Path(root), figures, save_variant)

    # make up's own stack first: the figures the targets are about survive an interrupted run.
    pending = sorted((v for v in VARIANTS if v not in results), key=lambda v: v != "warm")
    # The tiny size checks that every measure works, not what it measures, so its stacks run at
    # once (its figures then include the other stacks' load); the full size measures one at a time.
    at_once = len(pending) if size_name == "tiny" else 1
    with (
        tempfile.TemporaryDirectory(prefix="prefect-bench-") as root,
        ThreadPoolExecutor(max(at_once, 1)) as pool,
    ):
        # As root, the warm stack's PostgreSQL runs as the postgres user, which passes through.
        os.chmod(root, 0o701)
        try:
            list(pool.map(measure, pending))
        except BaseException:  # SIGTERM, Ctrl-C or a failed measure: stop the others' stacks too
            stop_live_stacks()
            raise
    results["plain"] = {
        "latency": measures.plain_process_latency(size["latency_runs"]),
        "throughput": measures.plain_throughput(size["throughput_runs"]),
    }
    table = render(table_rows(results))
    results["table"] = table
    results["requests_table"] = requests_table(results)
    results["unmet"] = unmet_targets(results, os.cpu_count() or 1)
    save()
    draw(results, png_path)
    if size_name == "full":
        write_docs(results, png_path)
        plan_scale.main(["200"])  # writes its own table into docs/performance.md
    print(table)
    print(f"\nRequests per say-hello run:\n\n{results['requests_table']}")
    if "curves" in results["warm"]:
        tiny_curves = {"size": curves.SIZES[size_name], **results["warm"]["curves"]}
        print(f"\nGrowth curves, a few points each:\n\n{curves.render(tiny_curves)}")
    print("\nTargets not met, and why (measured):" if results["unmet"] else "\nEvery target met.")
    for reason in results["unmet"]:
        print(f"- {reason}")
    docs = ", docs/performance.md, docs/bench.png" if size_name == "full" else ""
    print(f"\nwritten: results/{json_path.name}, results/{png_path.name}{docs}")
    return 0


if __name__ == "__main__":
    # SIGTERM (a stopped `make bench`, a test's timeout) unwinds like Ctrl-C: the stacks and
    # PostgreSQL clusters it started are stopped on the way out instead of left running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
