"""Fault-matrix cells on the worker's side of `make up`'s stack (tests/faults/matrix.py): the
worker, its warm launcher, one forked flow-run process, the supervisor. The cells share one state
directory, one after the other: each starts with `make up` and ends with `make down`."""

from __future__ import annotations

import signal

import psutil
import pytest

from tests.faults.harness import UserStack, cell_run, new_user_stack, supervised
from tests.faults.matrix import CELLS
from tests.live_stack import wait_until


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> UserStack:
    return new_user_stack(tmp_path_factory)


def supervisor_says(user: UserStack, since: int, words: str) -> str:
    """The first line the supervisor logged after byte `since` that contains `words`."""

    def line():
        text = user.stack.worker.log_path.read_bytes()[since:].decode(errors="replace")
        return next((ln for ln in text.splitlines() if words in ln), None)

    return wait_until(line, 120, f"the supervisor to log {words!r}")


def log_size(user: UserStack) -> int:
    return user.stack.worker.log_path.stat().st_size


def test_killed_worker(user: UserStack) -> None:
    with cell_run(user, CELLS["local-worker"]) as run:
        worker = supervised(user, "worker start")
        run.wait_for_fault_moment()
        since = log_size(user)
        worker.send_signal(signal.SIGKILL)
        run.injected()
        run.user_sees = "worker log: " + supervisor_says(user, since, "worker exited with code")


def test_killed_launcher(user: UserStack) -> None:
    with cell_run(user, CELLS["local-launcher"]) as run:
        launcher = supervised(user, "stack.launcher")
        run.wait_for_fault_moment()
        since = log_size(user)
        launcher.send_signal(signal.SIGKILL)
        run.injected()
        run.user_sees = "worker log: " + supervisor_says(user, since, "launcher exited with code")


def test_killed_flow_run(user: UserStack) -> None:
    with cell_run(user, CELLS["local-flow-run"]) as run:
        run.wait_for_fault_moment()
        victim, pid = next(iter(wait_until(run.running_pids, 60, "a run in flight").items()))
        psutil.Process(pid).send_signal(signal.SIGKILL)
        run.injected()

        def crashed():
            state = run.api.read_flow_run(victim).state
            return state if state.is_final() else None

        state = wait_until(crashed, 300, "the killed run to reach a final state")
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
