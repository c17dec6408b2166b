"""Background processes recorded by process id, so they can be stopped exactly.

A process is started in its own session (process group), its id and start time written to a pid
file. Stopping signals that group only, after checking the recorded start time still matches, so
a recycled process id is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces; the fields after it are space-separated.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited already
        return None
    return fields[19]


def process_is_running(pid: int) -> bool:
    """True while `pid` runs; an exited process that its parent has not reaped yet is not."""
    return _start_time(pid) is not None


class ManagedProcess:
    """One long-running command with its log file and pid file under a state directory."""

    def __init__(self, name: str, state_dir: Path) -> None:
        self.name = name
        self.log_path = state_dir / "logs" / f"{name}.log"
        self.pid_path = state_dir / "pids" / f"{name}.pid"
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pid = self._popen.pid
        self.pid_path.write_text(f"{pid} {_start_time(pid)}\n")
        return pid

    @property
    def pid(self) -> int | None:
        """The recorded process id if that very process is still running."""
        try:
            pid_text, started = self.pid_path.read_text().split()
        except (FileNotFoundError, ValueError):
            return None
        pid = int(pid_text)
        if self._popen is not None and self._popen.pid == pid:
            self._popen.poll()  # reap it if it exited, so it does not linger as a zombie
        return pid if _start_time(pid) == started else None

    def is_running(self) -> bool:
        return self.pid is not None

    def stop(self, timeout_s: float) -> None:
        """SIGTERM the process group, then SIGKILL it after `timeout_s`; forget the pid."""
        pid = self.pid
        if pid is not None:
            self._signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.pid is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            # Kill what is left of the group too: flow-run children of a worker, for instance.
            self._signal_group(pid, signal.SIGKILL)
            while self.pid is not None and time.monotonic() < deadline + 5:
                time.sleep(0.05)
        self.pid_path.unlink(missing_ok=True)

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        # The group id is our process's id: it was started with start_new_session=True.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log written)"
