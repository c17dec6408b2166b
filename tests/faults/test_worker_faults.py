"""Fault-matrix cells on the worker's side of `make up`'s stack (tests/faults/matrix.py): the
worker, its warm launcher, one forked flow-run process, the supervisor. Each cell has a state
directory of its own (a fresh database): damage one cell leaves never counts against the next."""

from __future__ import annotations

import signal

import psutil
import pytest

from tests.faults.harness import (
    SQUARES,
    UserStack,
    cell_run,
    new_user_stack,
    signal_supervised,
    supervised,
    supervisor_says,
)
from tests.faults.matrix import CELLS
from tests.live_stack import wait_until


@pytest.fixture
def user(tmp_path_factory) -> UserStack:
    return new_user_stack(tmp_path_factory)


def test_killed_worker(user: UserStack) -> None:
    with cell_run(user, CELLS["local-worker"]) as run:
        since = signal_supervised(run, "worker start", signal.SIGKILL)[1]
        run.user_sees = "worker log: " + supervisor_says(user, since, "worker exited with code")


def test_killed_launcher(user: UserStack) -> None:
    with cell_run(user, CELLS["local-launcher"]) as run:
        since = signal_supervised(run, "stack.launcher", signal.SIGKILL)[1]
        run.user_sees = "worker log: " + supervisor_says(user, since, "launcher exited with code")


def forked_squares_run(user: UserStack, run) -> tuple[str, psutil.Process] | None:
    """A compute-squares run RUNNING now in a process the launcher forked (seconds of work left,
    so the kill lands mid-run): its flow run id and that process, found by the execution record
    the process wrote (`<flow run id>.<pid>`)."""
    launcher = supervised(user, "stack.launcher")
    forked = {child.pid: child for child in launcher.children()}
    squares = run.api.read_deployment_by_name(SQUARES).id
    for record in user.records.iterdir():
        run_id, pid = record.name.split(".", 1)
        if int(pid) not in forked:
            continue
        flow_run = run.api.read_flow_run(run_id)
        if flow_run.deployment_id == squares and flow_run.state.is_running():
            return run_id, forked[int(pid)]
    return None


def test_killed_flow_run(user: UserStack) -> None:
    with cell_run(user, CELLS["local-flow-run"]) as run:
        run.wait_for_fault_moment()
        victim, process = wait_until(
            lambda: forked_squares_run(user, run), 120, "a forked compute-squares run"
        )
        process.send_signal(signal.SIGKILL)
        run.injected()

        def ended():
            state = run.api.read_flow_run(victim).state
            return state if state.is_final() else None

        state = wait_until(ended, 300, "the killed run to reach a final state")
        assert state.is_crashed(), state
        run.user_sees = f"run state: CRASHED, {state.message}"


def test_killed_supervisor(user: UserStack) -> None:
    """What `make status` then says to do: `make down` (which must stop every orphan), then
    `make up`."""
    with cell_run(user, CELLS["local-supervisor"]) as run:
        supervisor = psutil.Process(user.stack.worker.pid)
        run.wait_for_fault_moment()
        orphans = supervisor.children(recursive=True)
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(10)
        run.injected()
        status = user.make("status").stdout
        orphaned = next((ln for ln in status.splitlines() if "ORPHANED" in ln), None)
        assert orphaned, status
        assert "`make down` stops them" in orphaned, orphaned
        run.user_sees = f"make status: {orphaned.split(' (pids')[0]}"
        down = user.make("down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert not [p for p in orphans if p.is_running()], "make down left the orphans running"
        assert not user.processes(), "make down left processes of the stack"
        user.up()
