"""The benchmark at its tiny size, so it cannot rot: it runs against real stacks and reports
every measure. How fast is `make bench`'s business, never asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.curves import SIZES as CURVES
from bench.run import SIZES
from bench.sizes import RESULTS_DIR
from bench.stacks import VARIANTS
from deployments import settings
from stack.processes import terminate_then_kill


def run_bench(size: str, timeout_s: float, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bench.run`; stopped with SIGTERM if the test ends first (a timeout), so that it
    stops the stacks it started instead of leaving them running."""
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench.run"],
        env={**os.environ, "BENCH_SIZE": size, **env},
        cwd=settings.REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=timeout_s)
    finally:
        if bench.poll() is None:
            terminate_then_kill(bench, settings.STOP_TIMEOUT_S * 4)
    return subprocess.CompletedProcess(bench.args, bench.returncode, stdout, stderr)


# Three stacks at once plus a resumed run, under make test's two workers, which start stacks of
# their own meanwhile (the suite's default timeout is 10 min).
@pytest.mark.timeout(1500)
def test_tiny_benchmark_reports_every_measure() -> None:
    result = run_bench("tiny", timeout_s=1100)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((RESULTS_DIR / "bench-tiny.json").read_text())
    assert (RESULTS_DIR / "bench-tiny.png").stat().st_size > 0
    for variant in VARIANTS:
        latency = figures[variant]["latency"]
        assert latency["runs"] == SIZES["tiny"]["latency_runs"] and latency["failed"] == 0
        assert latency["refused"] == 0
        assert 0 < latency["p50"] <= latency["max"]
        load = figures[variant]["throughput"]
        assert load["failed"] == 0 and load["runs_per_min"] > 0 and load["cpu_s_per_run"] > 0
        assert load["refused"] == 0 and load["stuck"] == 0, (variant, load["stuck_states"])
    # Each run's requests, from the server's access log: with Prefect's defaults its clients
    # ask the server's version and a CSRF token; the repository's settings turn both off.
    default, warm = (figures[v]["requests"]["by_path"] for v in ("default", "warm"))
    assert default["GET /api/admin/version"] > 0 and default["GET /api/csrf-token"] > 0, default
    assert "GET /api/admin/version" not in warm and "GET /api/csrf-token" not in warm, warm
    assert warm["POST /api/flow_runs/{id}/set_state"] >= 3, warm  # PENDING, RUNNING, COMPLETED
    assert figures["warm"]["requests"]["per_run"] == sum(warm.values())
    assert "| `POST /api/flow_runs/{id}/set_state` |" in figures["requests_table"]
    assert figures["requests_table"] in result.stdout
    assert figures["warm"]["chunks"]["deployment_state"] == "COMPLETED"
    dask = figures["warm"]["dask"]
    assert dask["default"]["state"] == dask["dask"]["state"] == "COMPLETED", dask
    assert figures["plain"]["latency"]["runs"] == SIZES["tiny"]["latency_runs"]
    table_lines = figures["table"].splitlines()
    assert len(table_lines) == 2 + 18, figures["table"]
    assert all(line.count("|") == 2 + len(VARIANTS) + 2 for line in table_lines), figures["table"]
    assert "| prefect deploy --all |" in figures["table"]
    assert figures["table"] in result.stdout
    assert all(f"- {reason}\n" in result.stdout for reason in figures["unmet"])
    assert_curves(figures["warm"]["curves"], result.stdout)

    # A resumed run keeps the stacks that finished and measures only plain Python again.
    resumed = run_bench("tiny", timeout_s=300, BENCH_RESUME="1")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "BENCH_RESUME=1: keeping the measured default, tuned, warm" in resumed.stdout
    again = json.loads((RESULTS_DIR / "bench-tiny.json").read_text())
    assert all(again[variant] == figures[variant] for variant in VARIANTS)


def assert_curves(figures: dict, stdout: str) -> None:
    """Each growth curve (bench/curves.py) measured at each of its tiny points, and printed."""
    size = CURVES["tiny"]
    workers = figures["workers"]
    assert [point["workers"] for point in workers] == size["workers"]
    assert all(p["failed"] == p["stuck"] == p["refused"] == 0 for p in workers), workers
    assert all(point["cpu_s_per_run"] > 0 for point in workers), workers
    memory = figures["memory"]["warm"]
    assert [point["runs"] for point in memory] == size["at_once"]
    # A forked run's own pages are part of its PSS, which also counts its share of the pages it
    # shares with the launcher.
    assert all(0 < p["run_uss_mib"] < p["run_pss_mib"] for p in memory), memory
    deployments = figures["deployments"]
    counts = [(p["deployments"], p["scheduled_deployments"]) for p in deployments]
    assert counts == [(count, count - 1) for count in size["deployments"]], deployments
    assert all(p["idle_server_share"] > 0 and p["plan_s"] > 0 for p in deployments), deployments
    history = figures["history"]
    # Whole copies of the first point's runs: as many runs as asked, or a few less.
    assert 0 < history[1]["seeded"] <= size["history"][1], history
    assert history[1]["runs"] >= history[0]["runs"] + history[1]["seeded"], history
    assert history[1]["task_runs"] > history[0]["task_runs"], history
    for point in history:
        assert set(point["ui_p95"]) == {"dashboard", "runs", "deployment"}, point
        assert all(count > 0 for count in point["ui_requests_per_load"].values()), point
        assert 0 < point["latency_p50"] <= point["latency_p95"] and point["database_mib"] > 0
    # A server's history past the retention is vacuumed: the second point's runs, all older than
    # it, went (a scheduled say-hello run may have finished meanwhile).
    retention = figures["retention"]
    assert [point["days"] for point in retention] == size["retention_days"], retention
    assert retention[1]["seeded"] > 1, retention
    assert retention[1]["runs"] < retention[0]["runs"] + retention[1]["seeded"], retention
    assert "| workers on the pool | runs per minute |" in stdout


def test_an_unknown_size_is_named() -> None:
    result = run_bench("huge", timeout_s=120)
    assert result.returncode == 2
    assert "BENCH_SIZE must be one of full, tiny, not 'huge'" in result.stderr
