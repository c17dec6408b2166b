"""What each `make bench*` entry point starts from: its settings and the head of its results,
the size BENCH_SIZE names and the machine, and where they are saved."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from deployments import settings

RESULTS_DIR = settings.REPO_ROOT / "results"


def start(
    sizes: dict[str, dict], stem: str, resumable: Callable[[dict, dict], dict]
) -> tuple[settings.Settings, dict, Path]:
    """The settings; the results so far, `{"size": {"name": ..., **size}, "machine": ...}` for
    the size of `sizes` BENCH_SIZE names, with BENCH_RESUME=1 what `resumable(earlier results,
    results)` keeps of the earlier run's (said); and where they are saved: results/STEM.json at
    full size, results/STEM-SIZE.json otherwise. A bad setting or size is named, and the process
    exits 2 (1 is a measure that failed)."""
    try:
        config = settings.current()
        if config.bench_size not in sizes:
            raise settings.SettingsError(
                f"BENCH_SIZE must be one of {', '.join(sizes)}, not {config.bench_size!r}"
            )
    except settings.SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    size = {"name": config.bench_size, **sizes[config.bench_size]}
    machine = f"{os.cpu_count()} cores, {platform.python_version()}, {platform.machine()}"
    results = {"size": size, "machine": machine}
    RESULTS_DIR.mkdir(exist_ok=True)
    suffix = "" if config.bench_size == "full" else f"-{config.bench_size}"
    json_path = RESULTS_DIR / f"{stem}{suffix}.json"
    if config.bench_resume and json_path.exists():
        kept = resumable(json.loads(json_path.read_text()), results)
        results.update(kept)
        print(f"BENCH_RESUME=1: keeping the measured {', '.join(kept) or 'nothing'}")
    return config, results, json_path
