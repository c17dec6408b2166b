"""Fault-matrix cells (tests/faults/matrix.py): a worker on a second host (a network namespace,
tests/second_host.py) cut off from the server for 20 s, then, in a cell of its own, for 120 s:
longer than the zombie window. `make up` runs the database, the server (reached over HTTPS on
this machine's end of the pair) and the deployments, with no worker of its own (LOCAL_WORKER=0);
the supervised worker, its warm launcher and every run of the burst run on the second host, as
the README's "Workers on other machines" starts them."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from tests.faults.harness import CellRun, UserStack, cell_run, logged_line, new_user_stack
from tests.faults.matrix import CELLS
from tests.live_stack import wait_until
from tests.make_targets import beyond_loopback_env, certificate_authority, other_machine_env
from tests.requirements import require
from tests.second_host import SecondHost, second_host, supervised_worker

WORKER_NAME = "second-host"


@pytest.fixture
def host() -> Iterator[SecondHost]:
    require(os.geteuid() == 0, "root (network namespaces)", "run the fault matrix as root")
    with second_host() as host:
        yield host


@pytest.fixture
def user(tmp_path_factory, host: SecondHost) -> UserStack:
    """`make up` serving the second host over HTTPS on this machine's end of the pair."""
    user = new_user_stack(tmp_path_factory)
    user.env.update({**beyond_loopback_env(tmp_path_factory, host.host_ip), "LOCAL_WORKER": "0"})
    return user


class RemoteWorker:
    """`python -m stack.worker_supervisor` for the stack's pool, started on the second host."""

    def __init__(self, host: SecondHost, user: UserStack) -> None:
        self.host, self.user = host, user
        self.log_path = user.state_dir.parent / "second-host-worker.log"
        self.process: subprocess.Popen | None = None

    @contextmanager
    def running(self) -> Iterator[RemoteWorker]:
        stack = self.user.stack
        # LOCAL_WORKER=0: `make up` started none, so every run of the burst is this worker's.
        assert not stack.worker.is_running(), "make up started a worker of its own"
        env = {
            **other_machine_env(stack, certificate_authority(self.user.env)),
            "FLOW_RUN_RECORD_DIR": str(self.user.records),
        }
        with supervised_worker(self.host, stack, env, self.log_path, WORKER_NAME) as process:
            self.process = process
            yield self

    def says(self, since: int, words: str) -> str:
        """The first line of the second host's worker log after byte `since` with `words`,
        without Prefect's timestamp and logger."""
        line = logged_line(self.log_path, since, words, "the second host's worker")
        return line.split(" - ")[-1]


def running_runs(run: CellRun) -> list:
    runs = run.api.read_flow_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run.run_ids)), limit=100
    )
    return [r for r in runs if r.state.is_running()]


def partition(run: CellRun, host: SecondHost, seconds: float) -> None:
    """At the fault's moment, once runs are in flight on the second host: cut it off for
    `seconds`, then heal."""
    run.wait_for_fault_moment()
    wait_until(lambda: running_runs(run), 120, "runs RUNNING on the second host")
    host.partition()
    run.injected()
    try:
        time.sleep(max(0.0, run.fault_at + seconds - time.monotonic()))
    finally:
        host.heal()


def crashed_in_history(run: CellRun) -> str | None:
    """The message of a CRASHED state any run of the burst went through, if one did."""
    for run_id in run.run_ids:
        for state in run.api.read_flow_run_states(run_id):
            if state.is_crashed():
                return state.message
    return None


def test_partition_20_s(user: UserStack, host: SecondHost) -> None:
    worker = RemoteWorker(host, user)
    with cell_run(user, CELLS["local-partition-20s"], worker.running) as run:
        since = worker.log_path.stat().st_size
        partition(run, host, 20)
        line = worker.says(since, "has not polled in the last")
        run.user_sees = "worker log: " + re.sub(r"(\d+)\.\d+ seconds", r"\1 seconds", line)


def test_partition_120_s(user: UserStack, host: SecondHost) -> None:
    """The supervisor keeps the cut-off worker (restarting it would end the runs that live on):
    it cannot reach the server either."""
    worker = RemoteWorker(host, user)
    with cell_run(user, CELLS["local-partition-120s"], worker.running) as run:
        since = worker.log_path.stat().st_size
        partition(run, host, 120)
        kept = worker.says(since, "is not ready either: keeping the worker")
        message = wait_until(lambda: crashed_in_history(run), 120, "a run CRASHED")
        run.user_sees = f"run state: CRASHED, {message}; worker log: {kept}"
