"""The CI timing table of docs/testing.md: `.ci/run` records how long each of its phases took,
how busy the machine's CPUs were meanwhile and the least free disk space (results/ci-phases.tsv,
one `phase<TAB>seconds<TAB>busy percent<TAB>free MiB` line each) and then runs
`python -m tests.ci_phases`, which writes them between the doc's markers (bench/doc_block.py)."""

from __future__ import annotations

import os
import platform
import sys

from bench.doc_block import write_block
from deployments import settings
from tests.reports import RESULTS_DIR

PHASES = RESULTS_DIR / "ci-phases.tsv"
DOC = settings.REPO_ROOT / "docs" / "testing.md"
DOC_BLOCK = ".ci/run"
# What `.ci/run` must stay within (DEVELOPERS.md): the whole run, and make test on its own.
BUDGETS_S = {".ci/run": 35 * 60, "make test": 10 * 60}


def minutes(seconds: int) -> str:
    return f"{seconds // 60} min {seconds % 60} s"


def render(phases: list[tuple[str, int, int, int]]) -> str:
    """`phases`: name, seconds, the CPUs' busy percentage and the least free MiB of each, in
    order."""
    total = sum(seconds for _, seconds, _, _ in phases)
    busy = round(sum(seconds * percent for _, seconds, percent, _ in phases) / max(total, 1))
    least_free = min(free for *_, free in phases)
    rows = [
        "| phase | time | CPUs busy | least free disk | budget |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, seconds, percent, free in [*phases, (".ci/run", total, busy, least_free)]:
        budget = BUDGETS_S.get(name)
        verdict = (
            "–"
            if budget is None
            else f"{minutes(budget)}: " + ("within" if seconds <= budget else "OVER")
        )
        rows.append(
            f"| `{name}` | {minutes(seconds)} | {percent} % | {free / 1024:.1f} GiB | {verdict} |"
        )
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    return (
        f"`CI=true bash .ci/run` in a fresh clone on {machine}, the Docker engine and base "
        f"images present; free disk is that of the filesystem holding /var/lib (Docker's):\n\n"
        + "\n".join(rows)
    )


def main() -> int:
    lines = [line.split("\t") for line in PHASES.read_text().splitlines() if line.strip()]
    phases = [(name, int(s), int(busy), int(free)) for name, s, busy, free in lines]
    write_block(DOC, DOC_BLOCK, render(phases))
    print(f"written: {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
