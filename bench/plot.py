"""results/bench.png: the latency distribution and the throughput of each variant."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from bench.reasons import RUNS_PER_MIN_TARGET  # noqa: E402

LABELS = {
    "default": "Prefect defaults",
    "tuned": "tuned, cold, SQLite",
    "warm": "make up: warm, PostgreSQL",
    "plain": "plain Python",
}
COLORS = {"default": "#999999", "tuned": "#2d6ae0", "warm": "#7b3fbf", "plain": "#4caf50"}


def draw(results: dict, path: Path) -> None:
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(12, 4))
    variants = [v for v in LABELS if v in results]
    latency.boxplot(
        [results[v]["latency"]["values"] for v in variants],
        tick_labels=[LABELS[v] for v in variants],
        showfliers=True,
    )
    latency.set_title(f"trigger → COMPLETED, {results['size']['latency_runs']} sequential runs")
    latency.set_ylabel("seconds")
    throughput.bar(
        [LABELS[v] for v in variants],
        [results[v]["throughput"]["runs_per_min"] for v in variants],
        color=[COLORS[v] for v in variants],
    )
    throughput.axhline(
        RUNS_PER_MIN_TARGET,
        linestyle="--",
        color="black",
        linewidth=1,
        label=f"target {RUNS_PER_MIN_TARGET}/min",
    )
    throughput.set_title(f"{results['size']['throughput_runs']} runs at once")
    throughput.set_ylabel("runs per minute")
    throughput.legend()
    figure.suptitle(f"make bench on {results['machine']}")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def draw_curves(results: dict, path: Path) -> None:
    """The growth curves of bench/curves.py, one panel each."""
    figure, (workers, memory, deployments) = plt.subplots(1, 3, figsize=(15, 4))
    counts = [p["workers"] for p in results["workers"]]
    workers.plot(
        counts, [p["runs_per_min"] for p in results["workers"]], "o-", color=COLORS["warm"]
    )
    workers.set_xticks(counts)
    workers.set_xlabel("workers on the pool")
    workers.set_ylabel("runs per minute")
    workers.set_title(f"{results['size']['burst']} runs at once")
    for variant, points in results["memory"].items():
        memory.plot(
            [p["runs"] for p in points],
            [p["stack_growth_mib_per_run"] for p in points],
            "o-",
            color=COLORS["warm" if variant == "warm" else "tuned"],
            label=f"{variant}: the stack grows per run",
        )
    memory.set_xlabel("runs at once")
    memory.set_ylabel("MiB (PSS) per run")
    memory.set_ylim(bottom=0)
    memory.legend()
    memory.set_title("memory of runs at once")
    sizes = [p["deployments"] for p in results["deployments"]]
    deployments.plot(
        sizes, [100 * p["idle_server_share"] for p in results["deployments"]], "o-", label="server"
    )
    deployments.plot(
        sizes, [100 * p["idle_rest_share"] for p in results["deployments"]], "o-", label="the rest"
    )
    deployments.set_xlabel("deployments on five-minute schedules")
    deployments.set_ylabel("% of a core, idle")
    deployments.set_ylim(bottom=0)
    deployments.legend()
    deployments.set_title("idle stack")
    figure.suptitle(f"make bench-curves on {results['machine']}")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
