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


def _panel(axes, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    """Title and axis labels; the y axis starts at 0."""
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(bottom=0)
    if legend:
        axes.legend()


def draw_curves(results: dict, path: Path) -> None:
    """The growth curves of bench/curves.py, one panel each."""
    figure, axes = plt.subplots(1, 5, figsize=(25, 4))
    workers, memory, deployments, history, retention = axes
    counts = [p["workers"] for p in results["workers"]]
    rates = [p["runs_per_min"] for p in results["workers"]]
    workers.plot(counts, rates, "o-", color=COLORS["warm"])
    workers.set_xticks(counts)
    burst = f"{results['size']['burst']} runs at once"
    _panel(workers, burst, "workers on the pool", "runs per minute", legend=False)

    for variant, points in results["memory"].items():
        growth = [p["stack_growth_mib_per_run"] for p in points]
        color = COLORS["warm" if variant == "warm" else "tuned"]
        label = f"{variant}: the stack grows per run"
        memory.plot([p["runs"] for p in points], growth, "o-", color=color, label=label)
    memory.set_xticks(results["size"]["at_once"])
    _panel(memory, "memory of runs at once", "runs at once", "MiB (PSS) per run")

    sizes = [p["deployments"] for p in results["deployments"]]
    for key, label in (("idle_server_share", "server"), ("idle_rest_share", "the rest")):
        shares = [100 * p[key] for p in results["deployments"]]
        deployments.plot(sizes, shares, "o-", label=label)
    _panel(deployments, "idle stack", "deployments on five-minute schedules", "% of a core, idle")

    runs = [p["runs"] for p in results["history"]]
    history.plot(runs, [p["latency_p95"] for p in results["history"]], "o-", label="run p95")
    for page in results["history"][0]["ui_p95"]:
        seconds = [p["ui_p95"][page] for p in results["history"]]
        history.plot(runs, seconds, "o--", label=f"UI {page}: request p95")
    history.set_xscale("symlog", linthresh=100)
    _panel(history, "history", "finished runs in the database", "seconds")

    days = [p["days"] for p in results["retention"]]
    retention.plot(days, [p["database_mib"] for p in results["retention"]], "o-")
    _panel(retention, "under retention", "days of say-hello every five minutes", "MiB", False)
    kept = retention.twinx()
    kept.plot(days, [p["runs"] for p in results["retention"]], "s--", color="#999999")
    kept.set_ylabel("finished runs kept (squares)")
    kept.set_ylim(bottom=0)

    figure.suptitle(f"make bench-curves on {results['machine']}")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
