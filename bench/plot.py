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
