"""Fault-matrix cells on the server's side of `make up`'s stack (tests/faults/matrix.py):
PostgreSQL and the server killed, the worker stopped for a minute. Each cell has a state
directory of its own (a fresh database): damage one cell leaves never counts against the next."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from tests.faults.harness import (
    UserStack,
    cell_run,
    new_user_stack,
    signal_supervised,
    supervisor_says,
)
from tests.faults.matrix import CELLS

STOPPED_S = 60


@pytest.fixture
def user(tmp_path_factory) -> UserStack:
    return new_user_stack(tmp_path_factory)


def status_line(user: UserStack, name: str) -> str:
    status = user.make("status").stdout
    return next(ln for ln in status.splitlines() if ln.startswith(f"{name}:"))


def test_killed_postgres(user: UserStack) -> None:
    with cell_run(user, CELLS["local-postgres"]) as run:
        run.wait_for_fault_moment()
        psutil.Process(user.stack.local_database.pid).send_signal(signal.SIGKILL)
        run.injected()
        line = status_line(user, "database")
        assert line == "database: stopped", line
        run.user_sees = f"make status: {line}"
        user.up()


def test_killed_server(user: UserStack) -> None:
    with cell_run(user, CELLS["local-server"]) as run:
        server = psutil.Process(user.stack.server.pid)
        run.wait_for_fault_moment()
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        run.injected()
        line = status_line(user, "server")
        assert line.startswith("server: stopped"), line
        run.user_sees = f"make status: {line.split(' (')[0]}"
        user.up()


def test_stopped_worker(user: UserStack) -> None:
    with cell_run(user, CELLS["local-worker-stopped"]) as run:
        worker, since = signal_supervised(run, "worker start", signal.SIGSTOP)
        try:
            run.user_sees = "worker log: " + supervisor_says(user, since, "worker unhealthy")
            time.sleep(max(0.0, run.fault_at + STOPPED_S - time.monotonic()))
        finally:
            if worker.is_running():
                worker.send_signal(signal.SIGCONT)
