"""Process handling, in one place: pid files, `/proc` reading, terminate-then-kill, readiness
probes, ports and polling with a deadline. The stack, the worker supervisor, the bench and the
tests all use it.

    process = ManagedProcess("server", state_dir)
    process.start(argv, env, cwd)            # its own process group; pid + start time recorded
    poll_until(lambda: http_ok(url, 2), timeout_s=90)
    process.stop(timeout_s=15)               # SIGTERM the group, SIGKILL what is left

A recorded process is signalled only after its start time (from `/proc/<pid>/stat`) is checked
to match, so a recycled process id is never signalled. Readings of `/proc` are Linux-only;
`live_children` falls back to `ps` elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

# -- /proc ---------------------------------------------------------------------------------


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, None if the process is gone: index 0
    is the state (field 3), 1 the parent's pid, 11-14 utime, stime, cutime, cstime, 19 the start
    time (field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone, or ended while we read
        return None
    # The command name (field 2) may contain spaces; the fields after it are space-separated.
    return stat.rsplit(")", 1)[1].split()


def process_state(pid: int) -> str | None:
    """The one-letter state of a Linux process (Z: exited, not reaped yet), None when gone."""
    fields = proc_stat(pid)
    return fields[0] if fields else None


def start_time(pid: int) -> str | None:
    """The kernel's start time of a running `pid`, or None if it is gone or has exited."""
    fields = proc_stat(pid)
    if fields is None or fields[0] == "Z":
        return None
    return fields[19]


def proc_cmdline(pid: int) -> str:
    """The command line of `pid`, its arguments joined by spaces; empty when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def process_is_running(pid: int) -> bool:
    """True while `pid` runs; an exited process that its parent has not reaped yet is not."""
    return start_time(pid) is not None


def live_children(pid: int) -> list[int]:
    """The process ids of `pid`'s children that still run (not exited and waiting to be reaped)."""
    if Path("/proc/self").is_dir():
        children = []
        with contextlib.suppress(OSError):  # the process or one of its threads just ended
            for task in Path(f"/proc/{pid}/task").iterdir():
                children += [int(child) for child in (task / "children").read_text().split()]
        return [child for child in children if process_state(child) not in ("Z", "X", None)]
    # No /proc (macOS): ask ps, whose listing marks exited children Z.
    listing = subprocess.run(["ps", "-A", "-o", "pid=,ppid=,stat="], capture_output=True, text=True)
    return [
        int(fields[0])
        for fields in (line.split() for line in listing.stdout.splitlines())
        if len(fields) == 3 and int(fields[1]) == pid and not fields[2].startswith("Z")
    ]


def tree_cpu_seconds(*roots: int) -> float:
    """CPU seconds used so far by the processes `roots`, their live descendants, and the
    children they have already reaped."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        fields = proc_stat(entry.name) if entry.name.isdigit() else None
        if fields is None:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(value) for value in fields[11:15]) / tick

    def counted(pid: int) -> bool:
        while pid > 1:
            if pid in roots:
                return True
            pid = parents.get(pid, 0)
        return False

    return sum(seconds for pid, seconds in times.items() if counted(pid))


# -- waiting -------------------------------------------------------------------------------


def poll_until(check: Callable[[], T], timeout_s: float, interval_s: float = 0.25) -> T:
    """Call `check()` until it returns something truthy, and return that; at the deadline,
    return its last (falsy) result."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval_s)


def terminate_then_kill(
    process: subprocess.Popen, timeout_s: float, on_kill: Callable[[], None] | None = None
) -> int:
    """SIGTERM `process`, SIGKILL it if it has not exited after `timeout_s` (calling `on_kill`
    first); its exit code. Reads its pipes to the end, if it has any."""
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        if on_kill:
            on_kill()
        process.kill()
        process.communicate()
    return process.returncode


# -- readiness and ports -------------------------------------------------------------------


def http_get(url: str, timeout_s: float, auth: tuple[str, str] | None = None):
    """The response to GET `url`, or None when nothing answers in time."""
    try:
        return httpx.get(url, auth=auth, timeout=timeout_s)
    except httpx.HTTPError:
        return None


def http_ok(url: str, timeout_s: float, auth: tuple[str, str] | None = None) -> bool:
    """Whether GET `url` answers 200 within `timeout_s`: the readiness probe of the server
    (`/api/ready`) and of a worker (`/health`)."""
    response = http_get(url, timeout_s, auth)
    return response is not None and response.status_code == 200


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn does: connections of a just-stopped server in TIME_WAIT do not block it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# Ports free_port has handed out: the kernel may offer a just-closed port again at once, and two
# stacks started at the same time in one process must not both be given it.
_HANDED_OUT: set[int] = set()
_HANDING_OUT = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, never the same one twice in this process."""
    with _HANDING_OUT:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port


# -- recorded processes --------------------------------------------------------------------


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
        self.pid_path.write_text(f"{pid} {start_time(pid)}\n")
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
        return pid if start_time(pid) == started else None

    def is_running(self) -> bool:
        return self.pid is not None

    def stop(self, timeout_s: float) -> None:
        """SIGTERM the process group, then SIGKILL it after `timeout_s`; forget the pid."""
        pid = self.pid
        if pid is not None:
            self._signal_group(pid, signal.SIGTERM)
            poll_until(lambda: not self.is_running(), timeout_s, interval_s=0.1)
            # Kill what is left of the group too: flow-run children of a worker, for instance.
            self._signal_group(pid, signal.SIGKILL)
            poll_until(lambda: not self.is_running(), 5, interval_s=0.05)
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
