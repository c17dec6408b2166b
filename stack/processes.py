"""Process handling, in one place: pid files, process readings (psutil), terminate-then-kill,
readiness probes, ports and polling with a deadline. The stack, the worker supervisor, the bench
and the tests all use it.

    process = ManagedProcess("server", state_dir)
    process.start(argv, env, cwd)            # its own process group; pid + start time recorded
    poll_until(lambda: http_ok(url, 2), timeout_s=90)
    process.stop(timeout_s=15)               # SIGTERM the group, SIGKILL what is left, and
                                             # every process it left behind (MARK_ENV)
    process.leftovers()                      # what a recorded process that died left running

A recorded process is signalled only after its start time is checked to match, so a recycled
process id is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx
import psutil

T = TypeVar("T")

# Every process a ManagedProcess starts carries this variable, "<stack token>:<name>", and so
# does everything those processes start (a worker's flow runs, forked or not): `marked` finds
# them when the recorded process died without ending them.
MARK_ENV = "LOCAL_STACK_PROCESS"

# -- processes -----------------------------------------------------------------------------


def _process(pid: int | str) -> psutil.Process | None:
    """The running process `pid`; None when it is gone or has exited (a zombie)."""
    try:
        process = psutil.Process(int(pid))
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def process_state(pid: int) -> str | None:
    """psutil's status of a process ("running", "sleeping", "stopped", "zombie"...), None when
    gone."""
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "boot"


# The kernel's id of this boot: a start time counted from boot names a process of this boot only.
BOOT_ID = _boot_id()


def start_time(pid: int) -> str | None:
    """When a running `pid` started (a recycled pid starts later), as the kernel counts it: clock
    ticks since this boot, never the wall clock, which NTP or a resumed VM may step while the
    process runs (psutil's create_time() adds the wall-clock boot time); None if it is gone or
    has exited."""
    if _process(pid) is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, starttime; the fields after the command name, which may hold spaces, in ().
    return f"{BOOT_ID}:{stat.rpartition(')')[2].split()[19]}"


def proc_cmdline(pid: int) -> str:
    """The command line of `pid`, its arguments joined by spaces; empty when it is gone."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def process_is_running(pid: int) -> bool:
    """True while `pid` runs; an exited process that its parent has not reaped yet is not."""
    return _process(pid) is not None


def live_children(pid: int) -> list[int]:
    """The process ids of `pid`'s children that still run (not exited and waiting to be reaped)."""
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    return [child.pid for child in children if _process(child.pid) is not None]


def process_trees(*roots: int) -> list[psutil.Process]:
    """The processes `roots` that run and their live descendants."""
    processes = []
    for root in roots:
        try:
            tree = [psutil.Process(root)]
            tree += tree[0].children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        processes += tree
    return processes


def tree_cpu_seconds(*roots: int) -> float:
    """CPU seconds used so far by the processes `roots`, their live descendants, and the
    children they have already reaped."""
    total = 0.0
    for process in process_trees(*roots):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def marked(mark: str) -> list[psutil.Process]:
    """The running processes whose environment has MARK_ENV=`mark`: everything a recorded
    process started, also after it died, and what its children started in sessions of their
    own. Never this process."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if process.environ().get(MARK_ENV) == mark and _process(process.pid):
                found.append(process)
    return found


def end_processes(processes: list[psutil.Process], timeout_s: float) -> None:
    """SIGTERM `processes`, SIGKILL those still running after `timeout_s`. psutil checks each
    one's start time before signalling, so a recycled pid is never hit."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _gone, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


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


def api_trust() -> ssl.SSLContext | bool:
    """The authorities a Prefect client here trusts for the API, for this repository's own
    requests to it: PREFECT_API_SSL_CERT_FILE (Prefect's setting, which defaults to
    SSL_CERT_FILE), else the system's, as httpx has them."""
    from prefect.settings import PREFECT_API_SSL_CERT_FILE

    cafile = PREFECT_API_SSL_CERT_FILE.value()
    return ssl.create_default_context(cafile=cafile) if cafile else True


def http_get(url: str, timeout_s: float, auth: tuple[str, str] | None = None):
    """The response to GET `url`, or None when nothing answers in time."""
    try:
        return httpx.get(url, auth=auth, timeout=timeout_s)
    except httpx.HTTPError:
        return None


# Prefect's clients ask for no CSRF token with this setting false (stack/local.py sets it where
# the server's protection is off); pydantic's spellings of false.
CSRF_SUPPORT_ENV = "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"
FALSE_WORDS = {"0", "off", "f", "false", "n", "no"}


def csrf_headers(http: httpx.Client, client_id: str) -> dict[str, str]:
    """The headers a POST needs when the server has CSRF protection on (it does with basic auth,
    as `make up` with PREFECT_AUTH=1 and the compose stack run it); none when it is off, or
    when this process's environment turns Prefect's CSRF support off."""
    if os.environ.get(CSRF_SUPPORT_ENV, "").strip().lower() in FALSE_WORDS:
        return {}
    response = http.get("/csrf-token", params={"client": client_id})
    if response.status_code != 200:
        return {}
    return {"Prefect-Csrf-Token": response.json()["token"], "Prefect-Csrf-Client": client_id}


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


# Ports free_port has handed out: two stacks started at the same time in one process must not
# both be given one.
_HANDED_OUT: set[int] = set()
_HANDING_OUT = threading.Lock()
_RANDOM = random.SystemRandom()
# Below the kernel's ephemeral range: a port the kernel picks itself (`bind(host, 0)`, or any
# outgoing connection) may be picked again at once, by another process, before the caller's
# server listens on it.
FREE_PORT_RANGE_START = 20_000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, never the same one twice in this process, and never one
    the kernel hands out to outgoing connections."""
    end = max(_ephemeral_start(), FREE_PORT_RANGE_START + 1_000)
    with _HANDING_OUT:
        while True:
            port = _RANDOM.randrange(FREE_PORT_RANGE_START, end)
            if port not in _HANDED_OUT and port_is_free(host, port):
                _HANDED_OUT.add(port)
                return port


# -- recorded processes --------------------------------------------------------------------


def stack_token(state_dir: Path, create: bool) -> str | None:
    """A random token of the state directory, made by the first start (`create`): MARK_ENV
    values start with it, so the processes of one stack are never taken for another's."""
    path = state_dir / "pids" / "stack-token"
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(8))
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


class ManagedProcess:
    """One long-running command with its log file and pid file under a state directory."""

    def __init__(self, name: str, state_dir: Path) -> None:
        self.name = name
        self.state_dir = state_dir
        self.log_path = state_dir / "logs" / f"{name}.log"
        self.pid_path = state_dir / "pids" / f"{name}.pid"
        self._popen: subprocess.Popen[bytes] | None = None

    def _mark(self, create: bool = False) -> str | None:
        token = stack_token(self.state_dir, create)
        return f"{token}:{self.name}" if token else None

    def _marked(self) -> list[psutil.Process]:
        mark = self._mark()
        return marked(mark) if mark else []

    def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                list(argv),
                env={**env, MARK_ENV: self._mark(create=True)},
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

    def leftovers(self) -> list[psutil.Process]:
        """What the recorded process started and left running after it died (none while it
        runs): its process group, and what that started in sessions of its own."""
        return [] if self.is_running() else self._marked()

    def stop(self, timeout_s: float) -> None:
        """SIGTERM the process group, then SIGKILL it after `timeout_s`; then the same for
        whatever it left behind (also when it had died already); forget the pid."""
        pid = self.pid
        if pid is not None:
            self._signal_group(pid, signal.SIGTERM)
            poll_until(lambda: not self.is_running(), timeout_s, interval_s=0.1)
            # Kill what is left of the group too: flow-run children of a worker, for instance.
            self._signal_group(pid, signal.SIGKILL)
            poll_until(lambda: not self.is_running(), 5, interval_s=0.05)
        end_processes(self._marked(), timeout_s)
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
