"""Figures the tests measure (times, counts), kept in the git-ignored results/ folder for the
README's tables: reported, never asserted as timings."""

from __future__ import annotations

import json
from typing import Any

from deployments import settings

RESULTS_DIR = settings.REPO_ROOT / "results"


def report(name: str, figures: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{name}: {json.dumps(figures)}")
