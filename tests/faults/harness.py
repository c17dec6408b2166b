"""One cell of the fault matrix, as its test runs it: a stack up (`make up`'s, or the compose stack:
a Target), a burst of the product's own runs (30 say-hello, 3 compute-squares over a range), the
fault at a random moment of the burst (seeded, the seed printed), the recovery, then the
invariants over every run of the burst:

- every run reaches a final state (none lost);
- each run executed at most once, a COMPLETED one exactly once (the execution records every
  flow-run process writes with FLOW_RUN_RECORD_DIR, stack/flow_run.py);
- a CRASHED run names its cause, and only a cell whose fault kills runs has any (a run CRASHED
  on the way counts too: its state history is read); only a cell whose fault can cut a live
  process off may have a CRASHED run go on to another final state, executed once;
- no scheduled run is duplicated;
- no deployment, schedule or automation is lost (`python -m deployments plan` shows no change);
- the stack runs a new flow afterwards;
- `make down` leaves no process of the stack behind.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from uuid import UUID

import httpx
import psutil
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterTags,
)

from deployments import settings
from stack.local import LocalStack
from stack.processes import MARK_ENV, poll_until, stack_token
from tests.faults.matrix import Cell, Outcome
from tests.live_stack import run_deployment_and_wait, stack_client, state_directory, wait_until
from tests.make_targets import make, make_env, stack_of

SAY_HELLO = "say-hello/greeting-schedule"
SQUARES = "compute-squares/compute-squares"
SAY_HELLO_RUNS = 30
# Each range run squares its numbers in chunk tasks, two at a time across the server
# (prefect.yaml's squares-chunks limit): a few seconds of work, in flight when the fault comes.
SQUARES_RANGE = {"numbers": None, "start": 0, "stop": 3_000_000, "chunk_size": 250_000}
SQUARES_RUNS = 3
# The fault comes this many seconds after the burst was created, at a seeded random moment.
FAULT_WINDOW_S = (1.0, 12.0)
# Runs in flight wait for the zombie rule's window at most, then the server's evaluation and the
# event pipeline.
SETTLE_S = settings.current().zombie_after_s + 120


def fault_seed() -> int:
    """FAULT_SEED repeats a matrix; otherwise a new seed, printed with every cell."""
    return int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(10**6))


SEED = fault_seed()


@dataclass
class UserStack:
    """`make up`'s stack in a state directory of its own, driven by `make` as a user drives it."""

    env: dict[str, str]

    @property
    def state_dir(self) -> Path:
        return Path(self.env["LOCAL_STATE_DIR"])

    @property
    def records(self) -> Path:
        return Path(self.env["FLOW_RUN_RECORD_DIR"])

    @property
    def stack(self) -> LocalStack:
        """The stack as `python -m stack` sees it under this environment."""
        return stack_of(self.env)

    def make(self, target: str) -> subprocess.CompletedProcess[str]:
        return make(target, self.env)

    def up(self) -> None:
        result = self.make("up")
        assert result.returncode == 0, f"make up failed:\n{result.stdout}{result.stderr}"

    def client(self) -> AbstractContextManager[SyncPrefectClient]:
        return stack_client(self.stack)

    def plan(self) -> subprocess.CompletedProcess[str]:
        return self.stack.run_cli(sys.executable, "-m", "deployments", "plan", check=False)

    def finish(self) -> list[str]:
        """`make down`, which must leave no process of the stack: what it failed to do."""
        down = self.make("down")
        left = poll_until(lambda: not self.processes(), 30) or self.processes()
        failures = []
        if down.returncode != 0:
            failures.append(f"make down failed: {down.stderr.strip()[-300:]}")
        if left is not True:
            failures.append(
                "make down left " + ", ".join(f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in left)
            )
        return failures

    def diagnostics(self) -> str:
        """`make status` and the last lines of the server's and the supervisor's logs."""
        stack = self.stack
        parts = [f"--- make status\n{self.make('status').stdout}"]
        for process in (stack.server, stack.worker):
            parts.append(f"--- {process.log_path}\n{process.log_tail(40)}")
        return "\n".join(parts)

    def processes(self) -> list[psutil.Process]:
        """Every running process of this stack: marked with its token (stack/processes.py), or
        naming its state directory (PostgreSQL's postmaster and backends)."""
        token = stack_token(self.state_dir, create=False)
        found = []
        for process in psutil.process_iter():
            try:
                mark = process.environ().get(MARK_ENV, "")
                named = str(self.state_dir) in " ".join(process.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if (token and mark.startswith(f"{token}:")) or named:
                found.append(process)
        return found


def new_user_stack(tmp_path_factory: pytest.TempPathFactory) -> UserStack:
    env = make_env(tmp_path_factory)
    records = state_directory(tmp_path_factory, "executions")
    return UserStack({**env, "FLOW_RUN_RECORD_DIR": str(records)})


def start_burst(api: SyncPrefectClient, label: str) -> list[UUID]:
    say_hello = api.read_deployment_by_name(SAY_HELLO)
    squares = api.read_deployment_by_name(SQUARES)
    runs = [
        api.create_flow_run_from_deployment(say_hello.id, parameters={"name": f"{label} {i}"})
        for i in range(SAY_HELLO_RUNS)
    ]
    runs += [
        api.create_flow_run_from_deployment(squares.id, parameters=SQUARES_RANGE)
        for _ in range(SQUARES_RUNS)
    ]
    return [run.id for run in runs]


class Target(Protocol):
    """A stack the matrix injects faults into: `make up`'s (UserStack) or the compose stack's
    (tests/faults/test_compose_faults.py)."""

    records: Path  # where its flow-run processes write their execution records

    def up(self) -> None: ...

    def client(self) -> AbstractContextManager[SyncPrefectClient]: ...

    def plan(self) -> subprocess.CompletedProcess[str]: ...

    def finish(self) -> list[str]:
        """After the checks: take the stack down, or leave it healthy for the next cell; what
        failed to happen."""
        ...

    def diagnostics(self) -> str:
        """What the stack's processes or containers last logged, for a failed cell."""
        ...


class CellRun:
    """What a cell's test does between the burst and the checks: wait for the fault's moment,
    inject, say when it injected and what the user saw."""

    def __init__(self, target: Target, cell: Cell, api: SyncPrefectClient) -> None:
        self.target = target
        self.cell = cell
        self.api = api
        self.fault_after_s = random.Random(f"{SEED}:{cell.key}").uniform(*FAULT_WINDOW_S)
        self.run_ids: list[UUID] = []
        self.burst_at = 0.0
        self.fault_at: float | None = None
        self.user_sees = ""

    def wait_for_fault_moment(self) -> None:
        delay = self.burst_at + self.fault_after_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def injected(self) -> None:
        self.fault_at = time.monotonic()


def _ids_filter(ids: list[UUID]) -> FlowRunFilter:
    return FlowRunFilter(id=FlowRunFilterId(any_=ids))


@contextmanager
def cell_run(
    target: Target, cell: Cell, beside: Callable[[], AbstractContextManager] = nullcontext
) -> Iterator[CellRun]:
    """Up and the burst; the test's block injects the fault; then the recovery is awaited, the
    invariants are checked and written as the cell's outcome, and the target finishes (`make
    down` must leave nothing). Fails the test on any violation, after writing the outcome.
    `beside()` is entered after up, before the burst, and left before the target finishes: a
    worker the test runs elsewhere, for instance."""
    print(f"fault cell {cell.key}: seed {SEED} (FAULT_SEED={SEED} repeats it)")
    target.up()
    outcome = None
    try:
        with beside(), target.client() as api:
            run = CellRun(target, cell, api)
            run.run_ids = start_burst(api, cell.key)
            run.burst_at = time.monotonic()
            yield run
            assert run.fault_at is not None, "the test injected no fault"
            outcome = _settle_and_check(run)
    finally:
        if outcome is None or outcome.violations:
            _print_diagnostics(target)
        finished = target.finish()
    outcome.violations.extend(finished)
    outcome.write()
    assert not outcome.violations, outcome.violations


def _print_diagnostics(target: Target) -> None:
    """For a failed cell's report (pytest shows what it printed); never in the failure's way."""
    try:
        print(target.diagnostics())
    except Exception as error:  # noqa: BLE001 - the cell's own failure is the one to report
        print(f"(no diagnostics: {error!r})")


def _settle_and_check(run: CellRun) -> Outcome:
    api, cell = run.api, run.cell

    def all_final():
        try:
            runs = api.read_flow_runs(
                flow_run_filter=_ids_filter(run.run_ids), limit=len(run.run_ids)
            )
        except (httpx.TransportError, httpx.HTTPStatusError) as error:
            # A server still recovering from the fault may fail a read: poll again. The reads
            # after the settling fail the test if it does not recover.
            if isinstance(error, httpx.HTTPStatusError) and error.response.status_code < 500:
                raise
            return None
        return runs if all(r.state and r.state.is_final() for r in runs) else None

    poll_until(all_final, SETTLE_S, interval_s=2)
    # The stack works again: a new run completes.
    after = run_deployment_and_wait(api, SAY_HELLO, {"name": f"after {cell.key}"})
    recovery_s = time.monotonic() - run.fault_at
    runs = api.read_flow_runs(flow_run_filter=_ids_filter(run.run_ids), limit=len(run.run_ids))
    executions = Counter(path.name.split(".", 1)[0] for path in run.target.records.iterdir())

    outcome = Outcome(
        cell=cell.key,
        seed=SEED,
        fault_at_s=round(run.fault_at - run.burst_at, 1),
        recovery_s=round(recovery_s, 1),
        user_sees=run.user_sees,
        runs=len(runs),
    )
    violations = outcome.violations
    if len(runs) != len(run.run_ids):
        violations.append(f"{len(run.run_ids) - len(runs)} runs of the burst are gone")
    if not after.state.is_completed():
        violations.append(f"a run after the recovery ended {after.state.type.value}")
    for flow_run in runs:
        _check_run(cell, outcome, flow_run, api.read_flow_run_states(flow_run.id), executions)
    violations.extend(_duplicated_scheduled_runs(api))
    plan = run.target.plan()
    if plan.returncode != 0:
        violations.append(f"plan exits {plan.returncode}: {plan.stdout.strip()[-400:]}")
    return outcome


# How Prefect's flow engine ends a run that outlived its flow's `timeout_seconds`.
FLOW_TIMEOUT = "Flow run exceeded timeout of "


def _check_run(cell: Cell, outcome: Outcome, flow_run, history, executions: Counter) -> None:
    """One run of the burst against the invariants, from its final state, every state it went
    through and its execution records; counted into `outcome`."""
    state, violations = flow_run.state, outcome.violations
    times = executions.get(str(flow_run.id), 0)
    crashes = [past for past in history if past.is_crashed()]
    for crash in crashes:
        # One cause per kind: the pid in a message differs from run to run.
        cause = re.sub(r"\bpid \d+", "pid N", (crash.message or "").strip())
        if not cause:
            violations.append(f"run {flow_run.name} CRASHED without a cause")
        elif cause not in outcome.crash_causes:
            outcome.crash_causes.append(cause)
    if crashes and not cell.crashes:
        violations.append(f"run {flow_run.name} CRASHED: {crashes[-1].message}")
    if crashes and not state.is_crashed():
        outcome.resumed += 1
        if not cell.resumes:
            violations.append(f"run {flow_run.name} went on after CRASHED to {state.type.value}")
    if not state.is_final():
        outcome.lost += 1
        violations.append(f"run {flow_run.name} left {state.type.value}")
    elif state.is_completed():
        outcome.completed += 1
        if times == 0:
            violations.append(f"run {flow_run.name} COMPLETED with no execution record")
    elif state.is_crashed():
        outcome.crashed += 1
    else:
        outcome.other_final += 1
        timed_out = state.is_failed() and (state.message or "").startswith(FLOW_TIMEOUT)
        if not (cell.resumes and crashes) and not (cell.times_out and timed_out):
            violations.append(f"run {flow_run.name} ended {state.type.value}: {state.message}")
    if times > 1:
        outcome.duplicated += 1
        violations.append(f"run {flow_run.name} executed {times} times")


def _duplicated_scheduled_runs(api: SyncPrefectClient) -> list[str]:
    deployment = api.read_deployment_by_name(SAY_HELLO)
    scheduled = api.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
        # The scheduler's tag (prefect/server/models/deployments.py)
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["auto-scheduled"])),
        limit=200,
    )
    times = Counter(run.expected_start_time for run in scheduled)
    return [f"{count} scheduled runs at {when}" for when, count in times.items() if count > 1]


def supervised(user: UserStack, word: str) -> psutil.Process:
    """The supervisor's child whose command line has `word` (the worker or the launcher)."""

    def child():
        try:
            children = psutil.Process(user.stack.worker.pid).children()
        except (psutil.NoSuchProcess, ValueError, TypeError):
            return None
        return next((c for c in children if word in " ".join(c.cmdline())), None)

    return wait_until(child, 60, f"the supervised {word}")


def signal_supervised(run: CellRun, word: str, signum: int) -> tuple[psutil.Process, int]:
    """At the fault's moment, send `signum` to the supervisor's child named by `word`; that
    child, and the size of the supervisor's log before it (for supervisor_says)."""
    child = supervised(run.target, word)
    run.wait_for_fault_moment()
    since = run.target.stack.worker.log_path.stat().st_size
    child.send_signal(signum)
    run.injected()
    return child, since


def logged_line(log_path: Path, since: int, words: str, who: str) -> str:
    """The first line `log_path` got after byte `since` that contains `words`, once there is one
    (`who` names the log's writer in a timeout)."""

    def line():
        text = log_path.read_bytes()[since:].decode(errors="replace")
        return next((ln for ln in text.splitlines() if words in ln), None)

    return wait_until(line, 120, f"{who} to log {words!r}")


def supervisor_says(user: UserStack, since: int, words: str) -> str:
    """The first line the supervisor logged after byte `since` that contains `words`."""
    return logged_line(user.stack.worker.log_path, since, words, "the supervisor")
