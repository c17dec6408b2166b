"""A recorded process stays recognised when the wall clock is stepped (NTP, a resumed VM): its
start time is counted from boot, not from the wall-clock boot time psutil derives."""

from __future__ import annotations

import sys

import psutil
import pytest

from stack.processes import ManagedProcess, start_time


@pytest.fixture
def wall_clock_stepped(monkeypatch):
    """The wall clock one second ahead of where it was: psutil's boot time moves with it."""

    def step() -> None:
        stepped = psutil.boot_time() + 1.0
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: stepped)

    return step


def test_a_running_process_keeps_its_start_time_and_its_pid_file_across_a_clock_step(
    tmp_path, wall_clock_stepped
) -> None:
    process = ManagedProcess("sleeper", tmp_path)
    pid = process.start([sys.executable, "-c", "import time; time.sleep(60)"], {}, cwd=tmp_path)
    try:
        before = start_time(pid)
        wall_clock_stepped()
        assert start_time(pid) == before
        assert process.is_running()
    finally:
        process.stop(timeout_s=5)
    assert start_time(pid) is None
    assert not process.is_running()
