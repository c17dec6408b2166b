"""The fault matrix: each cell is one fault, its expected outcome stated before it runs, and the
figures its test measured. Every cell's test (tests/faults/test_*.py) writes its figures to
results/faults/<cell>.json; `python -m tests.faults.matrix` renders them into
docs/reliability.md, as `make faults` does after the tests."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field

from bench.doc_block import write_block
from deployments import settings
from tests.reports import RESULTS_DIR

FAULTS_DIR = RESULTS_DIR / "faults"
DOC = settings.REPO_ROOT / "docs" / "reliability.md"
DOC_BLOCK = "make faults"  # its generated part (bench/doc_block.py)


@dataclass(frozen=True)
class Cell:
    """One fault and what must follow it. `crashes`: whether runs in flight may be CRASHED
    (their process died); otherwise every run must complete without. `resumes`: whether a
    CRASHED run may go on to another final state, because its process lived on, cut off (it
    still executes once). `times_out`: whether a run may end FAILED by its flow's own timeout
    (`timeout_seconds`), having been cut off from the server for longer than that."""

    key: str
    fault: str
    expected: str
    crashes: bool
    resumes: bool = False
    times_out: bool = False


@dataclass
class Outcome:
    """What a cell's test measured over every run of its burst."""

    cell: str
    seed: int
    fault_at_s: float  # after the burst was created
    recovery_s: float  # from the fault until every run was final and the stack healthy
    user_sees: str  # the explanation where the user looks first, as the test found it
    runs: int = 0
    completed: int = 0
    crashed: int = 0
    other_final: int = 0
    resumed: int = 0  # CRASHED on the way, then ended otherwise (their process lived on)
    lost: int = 0  # not final by the deadline
    duplicated: int = 0  # executed more than once
    crash_causes: list[str] = field(default_factory=list)  # every CRASHED state's message, once
    violations: list[str] = field(default_factory=list)

    def write(self) -> None:
        FAULTS_DIR.mkdir(parents=True, exist_ok=True)
        (FAULTS_DIR / f"{self.cell}.json").write_text(json.dumps(asdict(self), indent=2) + "\n")
        print(f"fault cell {self.cell}: {json.dumps(asdict(self))}")


# `make up`'s stack (PostgreSQL, server, supervised worker with its warm launcher).
LOCAL_CELLS = [
    Cell(
        "local-postgres",
        "`kill -9` of PostgreSQL's postmaster",
        "`make status` shows the database stopped; `make up` starts it again; the server "
        "reconnects; every run reaches a final state, none twice",
        crashes=True,
    ),
    Cell(
        "local-server",
        "`kill -9` of the Prefect server",
        "`make status` shows the server stopped; `make up` starts it again; runs in flight "
        "complete or are CRASHED by the zombie rule; "
        "while it is away every run is cut off from it: one CRASHED by the zombie rule meanwhile "
        "reports its end once it is back (COMPLETED, or FAILED by its own timeout); "
        "none is left RUNNING, none runs twice",
        crashes=True,
        resumes=True,
        times_out=True,
    ),
    Cell(
        "local-supervisor",
        "`kill -9` of the worker supervisor",
        "`make status` names the orphans and says to run `make down`, then `make up`: "
        "`make down` stops every one of them, `make up` starts a worker; the runs they had "
        "are CRASHED, naming why; the rest complete",
        crashes=True,
    ),
    Cell(
        "local-worker",
        "`kill -9` of `prefect worker`",
        "the supervisor starts a new worker (its log says so); runs the launcher forked "
        "complete (their output no longer reaches a worker, stack/launch.py); a run the worker "
        "had taken but not started is CRASHED by crash-stuck-pending-flow-runs, naming it",
        crashes=True,
    ),
    Cell(
        "local-launcher",
        "`kill -9` of the warm launcher",
        "the supervisor restarts the launcher (its log says so); the runs it had forked end "
        "with it (PR_SET_PDEATHSIG) and are CRASHED, naming their exit; later runs complete",
        crashes=True,
    ),
    Cell(
        "local-flow-run",
        "`kill -9` of one forked flow-run process",
        "that run is CRASHED with a message naming its exit; every other run completes",
        crashes=True,
    ),
    Cell(
        "local-worker-stopped",
        "SIGSTOP of `prefect worker` for 60 s, then SIGCONT",
        "the supervisor replaces the worker once it stays unhealthy (its log says so); runs the "
        "launcher forked complete; a run the stopped worker had taken but not started is "
        "CRASHED by crash-stuck-pending-flow-runs, naming it",
        crashes=True,
    ),
]
# A worker on a second host (a network namespace), cut off from `make up`'s server.
PARTITION_CELLS = [
    Cell(
        "local-partition-20s",
        "a worker on a second host cut off from the server for 20 s (packets dropped both ways)",
        "nothing is CRASHED: the worker and the runs retry until the network is back, and every "
        "run completes once",
        crashes=False,
    ),
    Cell(
        "local-partition-120s",
        "a worker on a second host cut off from the server for 120 s, longer than the zombie "
        "window",
        "runs in flight are CRASHED by the zombie rule (no heartbeat for 90 s), runs taken but "
        "not yet RUNNING by crash-stuck-pending-flow-runs; their processes live on, cut off, "
        "and after the heal report their end: COMPLETED, or FAILED when Prefect stops a run "
        "whose concurrency slot the crash released (*Flow run exceeded timeout*) or a say-hello "
        "run cut off past its own 120 s timeout; none is executed twice",
        crashes=True,
        resumes=True,
        times_out=True,
    ),
]
DISK_CELLS = [
    Cell(
        "local-disk-full",
        "the disk under `.prefect-local/` full for 30 s, then freed",
        "`make status` says FULL; requests that write fail meanwhile; once it is freed, `make "
        "up` brings back what stopped; every run reaches a final state, none twice. Known to "
        "fail: a concurrency slot taken while the disk is full can stay taken (Prefect commits "
        "the slot before it stores its lease), and range runs waiting for it stay RUNNING",
        crashes=True,
    ),
]
# The compose stack (docker-compose.yml); Docker does not restart a container `docker kill`
# stopped, so the recovery is `docker compose up -d --wait`.
_UP = "`docker compose up -d --wait` starts it again"
COMPOSE_CELLS = [
    Cell(
        "compose-postgres",
        "`docker kill` of the compose `postgres` container",
        f"`docker compose ps` shows it exited; {_UP}; the server reconnects; every run reaches "
        "a final state, none twice",
        crashes=True,
    ),
    Cell(
        "compose-prefect-server",
        "`docker kill` of the compose `prefect-server` container",
        f"`docker compose ps` shows it exited; {_UP}; runs in flight complete or are CRASHED "
        "naming why; "
        "while it is away every run is cut off from it: one CRASHED by the zombie rule meanwhile "
        "reports its end once it is back (COMPLETED, or FAILED by its own timeout); "
        "none is left RUNNING, none runs twice",
        crashes=True,
        resumes=True,
        times_out=True,
    ),
    Cell(
        "compose-worker",
        "`docker kill` of the compose `worker` container (its runs die with it)",
        f"`docker compose ps` shows it exited; {_UP}; the runs it held are CRASHED, naming "
        "why: by its restarted supervisor, which finds their processes gone, or as taken but "
        "never started; the rest complete",
        crashes=True,
    ),
    Cell(
        "compose-ha-prefect-services",
        "`docker kill` of the `ha` profile's `prefect-services` container (scheduler, automations)",
        f"`docker compose ps` shows it exited; the API replicas go on serving runs; {_UP}; every "
        "run completes once",
        crashes=False,
    ),
    Cell(
        "compose-ha-lb",
        "`docker kill` of the `ha` profile's `lb` container (nginx, the only way to the API)",
        f"`docker compose ps` shows it exited; clients and the worker retry; {_UP}; "
        "while it is away every run is cut off from the API: one CRASHED by the zombie rule "
        "meanwhile reports its end once it is back (COMPLETED, or FAILED by its own timeout); "
        "every run reaches a final state, none twice",
        crashes=True,
        resumes=True,
        times_out=True,
    ),
]
CELLS = {cell.key: cell for cell in LOCAL_CELLS + PARTITION_CELLS + DISK_CELLS + COMPOSE_CELLS}


def render(outcomes: list[dict]) -> str:
    rows = [
        "| fault | expected | what the user sees | fault at | recovery | runs | completed "
        "| crashed | lost | run twice | invariants |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        cell = CELLS[outcome["cell"]]
        verdict = "hold" if not outcome["violations"] else "; ".join(outcome["violations"])
        causes = "; ".join(f"*{_short(cause)}*" for cause in outcome.get("crash_causes", []))
        resumed = outcome.get("resumed", 0)
        crashed = f"{outcome['crashed']}" + (f" ({resumed} went on after)" if resumed else "")
        crashed += f": {causes}" if causes else ""
        rows.append(
            f"| {cell.fault} | {cell.expected} | {outcome['user_sees']} "
            f"| {outcome['fault_at_s']:.1f} s | {outcome['recovery_s']:.0f} s "
            f"| {outcome['runs']} | {outcome['completed']} | {crashed} "
            f"| {outcome['lost']} | {outcome['duplicated']} | {verdict} |"
        )
    return "\n".join(rows)


def _unmeasured(found: dict) -> str:
    """The cells whose test failed before it could measure: named, never left out silently."""
    missing = [CELLS[key].fault for key in CELLS if key not in found]
    if not missing:
        return ""
    names = ", ".join(missing)
    return f"\nNot measured in this run (the test failed first; see its output): {names}.\n"


def _short(text: str, at_most: int = 110) -> str:
    """A message on one line, cut at a word: table cells stay readable."""
    line = " ".join(text.split()).replace("|", "/")
    return line if len(line) <= at_most else line[:at_most].rsplit(" ", 1)[0] + " ..."


def main() -> int:
    found = {path.stem: json.loads(path.read_text()) for path in FAULTS_DIR.glob("*.json")}
    if not found:
        print("no results in results/faults: run `make faults`", file=sys.stderr)
        return 1
    outcomes = [found[key] for key in CELLS if key in found]
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    seeds = sorted({outcome["seed"] for outcome in outcomes})
    write_block(
        DOC,
        DOC_BLOCK,
        f"`make faults` on {machine}, seed {', '.join(map(str, seeds))} "
        f"(FAULT_SEED=<seed> repeats it); each cell: `make up` (or the compose stack), a burst "
        f"of {outcomes[0]['runs']} runs, the fault at a random moment, the recovery, the "
        f"invariants, `make down`.\n\n{render(outcomes)}\n{_unmeasured(found)}",
    )
    print(f"written: {DOC.relative_to(settings.REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
