"""How plan and apply scale with the number of deployments: a copy of prefect.yaml declaring N
deployments (the tutorial's two, repeated under numbered names) applied to a fresh server on
`make up`'s database, then `plan` against the matching server and a no-op `apply`, each timed as
a user runs it (`python -m deployments ...`, a new process).

    python -m bench.plan_scale [N]       # default 200: the issue's target size

Prints a table; `make bench` at full size writes it into docs/performance.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from bench.doc_block import write_block
from deployments import settings
from stack.local import LocalStack
from stack.processes import free_port

TARGETS_S = {"plan": 15.0, "no-op apply": 20.0}
REPEATS = 3
DOC_BLOCK = "bench.plan_scale"  # docs/performance.md's generated part (bench/doc_block.py)


def scaled_prefect_yaml(directory: Path, count: int) -> Path:
    """prefect.yaml with `count` deployments: its own, then numbered copies of them."""
    raw = yaml.safe_load(settings.PREFECT_YAML.read_text())
    originals = raw["deployments"]
    deployments = []
    for index in range(count):
        copy = dict(originals[index % len(originals)])
        number = index // len(originals)
        if number:
            copy["name"] = f"{copy['name']}-{number}"
        deployments.append(copy)
    raw["deployments"] = deployments
    path = directory / "prefect.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def timed_cli(stack: LocalStack, path: Path, *args: str, expect: int = 0) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "deployments", *args, "--prefect-file", str(path)],
        env=stack.env,
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != expect:
        output = result.stdout[-2000:] + result.stderr[-2000:]
        raise RuntimeError(f"`{' '.join(args)}` exited {result.returncode}:\n{output}")
    return elapsed


def measure(count: int, root: Path, database: str = "postgres") -> dict:
    stack = LocalStack(
        state_dir=root / "plan-scale",
        port=free_port(),
        pool_name=f"plan-scale-{uuid.uuid4().hex[:6]}",
        worker_health_port=free_port(),
        database=database,
    )
    (root / "plan-scale").mkdir(parents=True, exist_ok=True)
    try:
        stack.start_database()
        stack.start_server()
        path = scaled_prefect_yaml(root, count)
        first_apply = timed_cli(stack, path, "apply")
        plans = [timed_cli(stack, path, "plan") for _ in range(REPEATS)]
        applies = [timed_cli(stack, path, "apply") for _ in range(REPEATS)]
    finally:
        stack.down()
    return {
        "deployments": count,
        "database": database,
        "first apply": first_apply,
        "plan": statistics.median(plans),
        "no-op apply": statistics.median(applies),
    }


def render(figures: dict) -> str:
    rows = [("measure", f"{figures['deployments']} deployments", "target")]
    rows.append(("first apply (creates them all)", f"{figures['first apply']:.1f} s", "–"))
    for name, target in TARGETS_S.items():
        met = "met" if figures[name] <= target else "not met"
        rows.append(
            (f"{name} (median of {REPEATS})", f"{figures[name]:.1f} s", f"≤ {target:g} s: {met}")
        )
    lines = [f"| {' | '.join(row)} |" for row in rows]
    lines.insert(1, "| --- | --- | --- |")
    return "\n".join(lines)


def write_docs(figures: dict, machine: str) -> None:
    write_block(
        settings.REPO_ROOT / "docs" / "performance.md",
        DOC_BLOCK,
        f"`python -m bench.plan_scale {figures['deployments']}` on {machine}, "
        f"embedded {figures['database']}:\n\n{render(figures)}",
    )


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 200
    machine = f"{os.cpu_count()} cores, {platform.python_version()}, {platform.machine()}"
    with tempfile.TemporaryDirectory(prefix="prefect-plan-scale-") as root:
        os.chmod(root, 0o701)  # as root, the database runs as postgres, which passes through
        figures = measure(count, Path(root))
    print(render(figures))
    if count == 200:
        write_docs(figures, machine)
        print("\nwritten: docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
