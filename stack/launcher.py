"""The warm launcher: one long-lived process that has imported Prefect, and forks it into each
flow-run process, so a run does not pay Prefect's import (seconds of CPU) again.

    python -m stack.launcher SOCKET_PATH

stack/worker_supervisor.py starts it next to each process worker (so `make up` and the compose
`worker` service have one) and passes its socket to the worker as FLOW_LAUNCHER_SOCKET; the
deployments' command, `python -m stack.launch` (stack/launch.py), is its client. WARM_LAUNCHER=0
(deployments/settings.py) turns it off, and the client then starts each run cold.

Contract:
- It imports Prefect and what a flow run needs of it (PRELOAD), never the flows: the next run
  sees a code change without a restart. Its API clients share one verified TLS context per CA
  file (stack/shared_tls.py), built before the first fork.
- It starts no thread and no event loop: forking a process that has threads is unsafe. It counts
  its threads as the kernel does (/proc/self/task, so also those a C extension started) after
  Prefect's import, and refuses to serve unless there is one. `gc.freeze()` after the import
  keeps the collector from writing to the imported objects' pages, which the forks then share.
- Each request carries the client's argv, environment and working directory, and its stdin,
  stdout and stderr as file descriptors (SCM_RIGHTS). The forked child becomes
  `python -m stack.flow_run ARGV` (stack/flow_run.py: `python -m prefect.engine`, then an event
  that closes the run's heartbeats) in that environment and directory, with those streams. Only
  what the child rebuilds follows the request: Prefect's settings and logging (PREFECT_*
  variables) and the time zone (TZ, `time.tzset()`); os.environ is the request's too. Anything
  else may have been read by the interpreter, the dynamic loader, libc or an extension module
  when the launcher started (LD_LIBRARY_PATH, LC_ALL, PYTHONHASHSEED, MALLOC_ARENA_MAX, ...), so
  a request whose environment differs from the launcher's in any other variable, or that asks for
  another interpreter, is refused, and its client starts that run cold.
- Installed packages never mix: the launcher notes the site-packages directories as they were
  when it imported Prefect. Once one changed (`uv sync`), it refuses every request (runs start
  cold), stops listening and exits when its last run ends; the supervisor starts a new one.
- Requests are read as they arrive, never waited for: a client that connects and stalls delays
  no other launch and no reaping, and is dropped after REQUEST_TIMEOUT_S.
- The child runs in a session of its own and dies with the launcher (PR_SET_PDEATHSIG). The
  launcher answers the client with the child's pid and a pidfd of it, opened before the child
  can be reaped, so the client's signals can never reach a process that reused the pid; then with
  how it ended. When the client goes away first (`kill -9`), it kills the child and its process
  group; a client gone before the fork gets no child at all. Signals stay blocked from before the
  fork until the child has Python's default handlers, so a cancellation forwarded at once is not
  lost.
- One bad request never stops the launcher: it is refused, and its client starts the run cold.
- Only processes of the launcher's own user may connect (SO_PEERCRED), and the socket is 0600.
- SIGTERM or SIGINT: stop accepting, SIGTERM the running children, give them STOP_GRACE_S, then
  SIGKILL what is left of their process groups, exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from stack.flow_run import run_engine

# What `python -m prefect.engine` imports on the way to running a flow, loaded once here.
PRELOAD = (
    "prefect.main",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.flows",
    "prefect.tasks",
    "prefect.futures",
    "prefect.task_runners",
    "prefect.artifacts",
    "prefect.logging.handlers",
    "prefect.client.orchestration",
    "prefect.deployments.steps",
    "prefect.deployments.steps.utility",
    "prefect.runner.storage",
    "prefect._internal.metrics",
    # imported lazily on the way (parameter schemas, the flow's graph, anyio's event loop)
    "pydantic.v1",
    "prefect.utilities.visualization",
    "prefect._internal.pytz",
    "anyio._backends._asyncio",
    "encodings.idna",
    # the flow-run process's own settings (stack/flow_run.py)
    "deployments.settings",
)
REQUEST_TIMEOUT_S = 2.0  # a client sends its whole request at once; nobody waits longer
# Held back from before a fork until the child has reset its handlers.
BLOCKED_AROUND_FORK = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                       signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2}  # fmt: skip
MAX_REQUEST_BYTES = 8 * 1024 * 1024
STOP_GRACE_S = 10.0
PR_SET_PDEATHSIG = 1
# The launcher's environment as it started: a run must agree on what the interpreter fixed then.
LAUNCHER_ENV = dict(os.environ)


def log(message: str) -> None:
    print(f"flow launcher: {message}", file=sys.stderr, flush=True)


@dataclass
class Request:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    executable: str
    prefix: str
    fds: list[int] = field(default_factory=list)


@dataclass
class Run:
    """A forked flow-run process and the client waiting for it (None once the client left)."""

    pid: int
    client: socket.socket | None


def preload() -> float:
    """Import PRELOAD and build the API clients' TLS context once (stack/shared_tls.py); the
    seconds it took."""
    started = time.monotonic()
    for module in PRELOAD:
        importlib.import_module(module)
    from stack import shared_tls

    shared_tls.install()
    return time.monotonic() - started


def peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack(
        "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    )
    return uid


def rebuilt_in_child(name: str) -> bool:
    """Whether the child rebuilds what this variable sets (become_flow_run): Prefect's settings
    and logging, and the time zone."""
    return name.startswith("PREFECT_") or name == "TZ"


def fixed_at_start(env: dict[str, str]) -> list[str]:
    """The variables in which `env` differs from the launcher's own environment and that the
    child does not rebuild: they may have been read when the launcher's interpreter started."""
    names = set(env) | set(LAUNCHER_ENV)
    return sorted(
        name
        for name in names
        if env.get(name) != LAUNCHER_ENV.get(name) and not rebuilt_in_child(name)
    )


def parse_request(data: bytes, fds: list[int]) -> Request:
    """The request line: JSON with the client's argv, environment, working directory and
    interpreter; `fds` are its stdin, stdout and stderr."""
    if len(fds) != 3:
        raise ValueError(f"expected stdin, stdout and stderr, got {len(fds)} descriptors")
    body = json.loads(data.split(b"\n", 1)[0])
    return Request(
        argv=[str(arg) for arg in body["argv"]],
        env={str(k): str(v) for k, v in body["env"].items()},
        cwd=str(body["cwd"]),
        executable=str(body["executable"]),
        prefix=str(body["prefix"]),
        fds=fds,
    )


def why_not_warm(request: Request) -> str | None:
    """What this launcher cannot give the request's process, which a cold start would."""
    same_python = os.path.realpath(request.executable) == os.path.realpath(sys.executable)
    if not same_python or request.prefix != sys.prefix:  # another interpreter, or venv
        return f"it runs {sys.executable}, the run asks for {request.executable}"
    differing = fixed_at_start(request.env)
    if differing:
        return (
            f"the run's environment differs from the launcher's in {', '.join(differing[:5])}, "
            "which a started interpreter cannot follow"
        )
    return None


def site_packages() -> dict[str, int]:
    """The modification time of each site-packages directory on sys.path: installing, removing
    or upgrading a package changes it."""
    found = {}
    for entry in sys.path:
        if entry.endswith("site-packages"):
            with contextlib.suppress(OSError):
                found[entry] = os.stat(entry).st_mtime_ns
    return found


def thread_count() -> int:
    """The process's threads as the kernel counts them, also those C extensions started."""
    return len(os.listdir("/proc/self/task"))


def client_gone(conn: socket.socket) -> bool:
    """Whether the client closed its end (a peek: nothing is consumed, nothing waited for)."""
    conn.setblocking(False)
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def kill_run(pid: int, number: int) -> None:
    """Signal a flow-run process and its process group (none yet if it has not reached setsid)."""
    for kill in (os.kill, os.killpg):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, number)


def send(conn: socket.socket | None, message: dict, fds: list[int] | None = None) -> None:
    if conn is None:
        return
    # A client that is gone has nobody to tell; the worker reports its run.
    with contextlib.suppress(OSError):
        data = json.dumps(message).encode() + b"\n"
        if fds:
            conn.setblocking(True)
            socket.send_fds(conn, [data], fds)
            conn.setblocking(False)
        else:
            conn.sendall(data)


@dataclass
class Pending:
    """A connection whose request has not fully arrived yet."""

    conn: socket.socket
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        self.conn.close()


class Launcher:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.owner_pid = os.getpid()
        self.runs: dict[int, Run] = {}
        self.pending: dict[int, Pending] = {}  # by file descriptor
        self.packages = site_packages()
        self.listener: socket.socket | None = None
        self.stopping = False

    def serve(self) -> Request | None:
        """Accept and fork until stopped: None in the launcher. In a forked child it returns that
        child's request instead, with every launcher descriptor closed, for `become_flow_run`."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # so that it wakes the loop
        self.listener = self._listen()
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ, "accept")
        selector.register(wake_r, selectors.EVENT_READ, "signal")
        try:
            while not self.stopping and (self.listener is not None or self.runs):
                for key, _ in selector.select(self._next_deadline()):
                    if self.stopping:
                        break
                    if key.data == "signal":
                        os.read(wake_r, 512)
                        self._reap(selector)
                    elif key.data == "accept":
                        self._accept(selector)
                    elif isinstance(key.data, Pending):
                        request = self._read(key.data, selector)
                        if request is not None:  # the forked child
                            signal.set_wakeup_fd(-1)
                            os.close(wake_r)
                            os.close(wake_w)
                            return request
                    else:
                        self._client_readable(key.data, selector)
                self._expire(selector)
            self._stop_runs(selector)
            return None
        finally:
            if os.getpid() == self.owner_pid:
                self._stop_listening(selector)

    def _listen(self) -> socket.socket:
        if self.socket_path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(2)
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                self.socket_path.unlink()  # left by a launcher that died
            else:
                raise SystemExit(f"another launcher already answers at {self.socket_path}")
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.socket_path))
        finally:
            os.umask(old_umask)
        listener.listen(64)
        listener.setblocking(False)
        return listener

    def _stop_listening(self, selector: selectors.BaseSelector) -> None:
        """No new connection from now on; a new launcher may take the socket's path."""
        if self.listener is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(self.listener)
        self.listener.close()
        self.listener = None
        self.socket_path.unlink(missing_ok=True)

    def _next_deadline(self) -> float | None:
        if not self.pending:
            return None
        soonest = min(pending.deadline for pending in self.pending.values())
        return max(soonest - time.monotonic(), 0)

    def _accept(self, selector: selectors.BaseSelector) -> None:
        if self.listener is None:  # stopped listening earlier in this batch of events
            return
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        if peer_uid(conn) != os.getuid():
            log("refused a client of another user")
            send(conn, {"error": "the client runs as another user"})
            conn.close()
            return
        conn.setblocking(False)
        pending = Pending(conn, time.monotonic() + REQUEST_TIMEOUT_S)
        self.pending[conn.fileno()] = pending
        selector.register(conn, selectors.EVENT_READ, pending)

    def _refuse(self, pending: Pending, selector, reason: str) -> None:
        self.pending.pop(pending.conn.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(pending.conn)
        send(pending.conn, {"error": reason})
        pending.close()

    def _expire(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for pending in [p for p in self.pending.values() if p.deadline <= now]:
            log(f"refused a request: not complete within {REQUEST_TIMEOUT_S:g} s")
            self._refuse(pending, selector, "the request did not arrive in time")

    def _read(self, pending: Pending, selector: selectors.BaseSelector) -> Request | None:
        """Take what has arrived of a request; once it is whole, start its run. Returns the
        request only in the forked child."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(pending.conn, 65536, 3)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._refuse(pending, selector, f"the connection failed: {exc}")
            return None
        pending.fds += fds
        pending.data.extend(data)
        if not data:
            self._refuse(pending, selector, "the client closed the connection mid-request")
            return None
        if len(pending.data) > MAX_REQUEST_BYTES:
            self._refuse(pending, selector, "request too large")
            return None
        if b"\n" not in pending.data:
            return None
        try:
            request = parse_request(bytes(pending.data), pending.fds)
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the launcher
            log(f"refused a request: {exc!r}")
            self._refuse(pending, selector, repr(exc))
            return None
        self.pending.pop(pending.conn.fileno())
        selector.unregister(pending.conn)
        pending.fds = []  # the request holds them now
        return self._start(pending.conn, request, selector)

    def _start(
        self, conn: socket.socket, request: Request, selector: selectors.BaseSelector
    ) -> Request | None:
        if site_packages() != self.packages:
            log("the installed packages changed: no more runs here; exiting after the last one")
            self._stop_listening(selector)
            refusal = "the installed packages changed since the launcher started"
        else:
            refusal = why_not_warm(request)
        if refusal or client_gone(conn):  # a client gone (or timed out) gets no run
            for fd in request.fds:
                os.close(fd)
            send(conn, {"error": refusal or "the client left"})
            conn.close()
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED_AROUND_FORK)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, BLOCKED_AROUND_FORK)
            for fd in request.fds:
                os.close(fd)
            log(f"cannot fork: {exc}")
            send(conn, {"error": f"cannot fork: {exc}"})
            conn.close()
            return None
        if pid == 0:  # signals stay blocked until become_flow_run has reset the handlers
            selector.close()
            conn.close()
            if self.listener is not None:
                self.listener.close()
            for pending in self.pending.values():
                pending.close()
            for run in self.runs.values():
                if run.client is not None:
                    run.client.close()
            return request
        signal.pthread_sigmask(signal.SIG_UNBLOCK, BLOCKED_AROUND_FORK)
        for fd in request.fds:
            os.close(fd)
        conn.setblocking(False)
        self.runs[pid] = Run(pid, conn)
        selector.register(conn, selectors.EVENT_READ, pid)
        try:  # before the child can be reaped: the pidfd names this child and no later process
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            log(f"cannot open a pidfd of flow-run process {pid}: {exc}; killing it")
            kill_run(pid, signal.SIGKILL)
            send(conn, {"error": f"cannot open a pidfd: {exc}"})
            return None
        send(conn, {"pid": pid}, [pidfd])
        os.close(pidfd)
        return None

    def _client_readable(self, pid: int, selector: selectors.BaseSelector) -> None:
        """A client sends nothing after its request: readable means it went away."""
        run = self.runs.get(pid)
        if run is None or run.client is None:  # reaped in the same batch
            return
        try:
            if run.client.recv(1):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        selector.unregister(run.client)
        run.client.close()
        run.client = None
        log(f"the client of flow-run process {pid} went away; killing it and its process group")
        kill_run(pid, signal.SIGKILL)

    def _reap(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self.runs.pop(pid, None)
            if run is None or run.client is None:
                continue
            if os.WIFSIGNALED(status):
                send(run.client, {"signal": os.WTERMSIG(status)})
            else:
                send(run.client, {"exit": os.waitstatus_to_exitcode(status)})
            selector.unregister(run.client)
            run.client.close()

    def _stop(self, _number: int, _frame) -> None:
        self.stopping = True

    def _stop_runs(self, selector: selectors.BaseSelector) -> None:
        """SIGTERM every running child and its group; SIGKILL what outlives STOP_GRACE_S."""
        for pid in self.runs:
            kill_run(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.runs and time.monotonic() < deadline:
            self._reap(selector)
            time.sleep(0.1)
        for pid in self.runs:
            kill_run(pid, signal.SIGKILL)


def become_flow_run(request: Request, launcher_pid: int) -> None:
    """In the forked child: turn into `python -m stack.flow_run ARGV` (the engine, then the
    exited event) for the client's request.
    Returns or raises as that module does, so the interpreter ends the process the same way."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != launcher_pid:  # the launcher died before the line above took effect
        os._exit(1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, BLOCKED_AROUND_FORK)
    for target, fd in enumerate(request.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    time.tzset()
    sys.path[0] = request.cwd  # as `python -m` puts its working directory first
    importlib.invalidate_caches()  # flow files written since the launcher looked

    import prefect.context
    import prefect.logging.configuration as logging_configuration

    # Rebuilt from this environment, not derived from the launcher's (profiles, home).
    prefect.context.GLOBAL_SETTINGS_CONTEXT = None
    prefect.context.refresh_global_settings_context()
    # dictConfig keeps handlers on loggers it does not name: drop the launcher's first.
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
    logging_configuration.PROCESS_LOGGING_CONFIG.clear()
    logging_configuration.setup_logging(incremental=False)
    run_engine(request.argv)  # as the cold path's `python -m stack.flow_run` does


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m stack.launcher SOCKET_PATH", file=sys.stderr)
        return 2
    seconds = preload()
    if thread_count() != 1:
        log(f"importing Prefect left {thread_count()} threads running; forking is unsafe")
        return 1
    gc.freeze()  # the collector leaves the imported objects (and their shared pages) alone
    launcher = Launcher(Path(argv[0]))
    log(f"ready on {argv[0]} (Prefect imported in {seconds:.1f} s)")
    request = launcher.serve()
    if request is None:
        log("stopped")
        return 0
    become_flow_run(request, launcher.owner_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
