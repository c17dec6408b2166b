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
- It starts no thread and no event loop: forking a process that has threads is unsafe. It checks
  that Prefect's import left it single-threaded, and refuses to serve otherwise.
- Each request carries the client's argv, environment and working directory, and its stdin,
  stdout and stderr as file descriptors (SCM_RIGHTS). The forked child becomes
  `python -m prefect.engine ARGV` in that environment and directory, with those streams: Prefect's
  settings, logging and time zone are rebuilt from the new environment, so a deployment's
  job-variable `env` wins. What an interpreter fixes at start-up cannot follow: a request whose
  Python executable or `PYTHON*` variables differ from the launcher's is refused, and its client
  starts that run cold.
- The child runs in a session of its own and dies with the launcher (PR_SET_PDEATHSIG). The
  launcher answers the client with the child's pid, then with how it ended. When the client goes
  away first (`kill -9`), it kills the child and its process group; a client gone before the fork
  gets no child at all. Signals stay blocked from before the fork until the child has Python's
  default handlers, so a cancellation forwarded at once is not lost.
- One bad request never stops the launcher: it is refused, and its client starts the run cold.
- Only processes of the launcher's own user may connect (SO_PEERCRED), and the socket is 0600.
- SIGTERM or SIGINT: stop accepting, SIGTERM the running children, give them STOP_GRACE_S, then
  SIGKILL what is left of their process groups, exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import logging
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

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


def python_variables(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name.startswith("PYTHON")}


def read_request(conn: socket.socket) -> Request:
    """One JSON line with the client's three stdio descriptors attached, within
    REQUEST_TIMEOUT_S in all."""
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    conn.settimeout(REQUEST_TIMEOUT_S)
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    buffer = bytearray(data)
    try:
        while b"\n" not in buffer:
            if len(buffer) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            conn.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = conn.recv(65536)
            if not chunk:
                raise ValueError("the client closed the connection mid-request")
            buffer.extend(chunk)
        if len(fds) != 3:
            raise ValueError(f"expected stdin, stdout and stderr, got {len(fds)} descriptors")
        body = json.loads(buffer.split(b"\n", 1)[0])
        return Request(
            argv=[str(arg) for arg in body["argv"]],
            env={str(k): str(v) for k, v in body["env"].items()},
            cwd=str(body["cwd"]),
            executable=str(body["executable"]),
            prefix=str(body["prefix"]),
            fds=fds,
        )
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def why_not_warm(request: Request) -> str | None:
    """What this launcher cannot give the request's process, which a cold start would."""
    same_python = os.path.realpath(request.executable) == os.path.realpath(sys.executable)
    if not same_python or request.prefix != sys.prefix:  # another interpreter, or venv
        return f"it runs {sys.executable}, the run asks for {request.executable}"
    if python_variables(request.env) != python_variables(LAUNCHER_ENV):
        return "the run's PYTHON* variables differ from the launcher's"
    return None


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


def send(conn: socket.socket | None, message: dict) -> None:
    if conn is None:
        return
    # A client that is gone has nobody to tell; the worker reports its run.
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(message).encode() + b"\n")


class Launcher:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.owner_pid = os.getpid()
        self.runs: dict[int, Run] = {}
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
        listener = self._listen()
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, "accept")
        selector.register(wake_r, selectors.EVENT_READ, "signal")
        try:
            while not self.stopping:
                for key, _ in selector.select():
                    if self.stopping:
                        break
                    if key.data == "signal":
                        os.read(wake_r, 512)
                        self._reap(selector)
                    elif key.data == "accept":
                        request = self._accept(listener, selector)
                        if request is not None:  # the forked child
                            signal.set_wakeup_fd(-1)
                            for fd in (wake_r, wake_w, listener.detach()):
                                os.close(fd)
                            return request
                    else:
                        self._client_readable(key.data, selector)
            self._stop_runs(selector)
            return None
        finally:
            if os.getpid() == self.owner_pid:
                listener.close()
                self.socket_path.unlink(missing_ok=True)

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

    def _accept(self, listener: socket.socket, selector: selectors.BaseSelector) -> Request | None:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return None
        try:
            if peer_uid(conn) != os.getuid():
                raise PermissionError("the client runs as another user")
            request = read_request(conn)
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the launcher
            log(f"refused a request: {exc!r}")
            send(conn, {"error": repr(exc)})
            conn.close()
            return None
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
        send(conn, {"pid": pid})
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
    """In the forked child: turn into `python -m prefect.engine ARGV` for the client's request.
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
    import prefect.engine

    sys.argv = [prefect.engine.__file__, *request.argv]
    # run_path, not run_module: the launcher has imported prefect.engine already, and this runs
    # its `__main__` block afresh, as `python -m prefect.engine` does.
    runpy.run_path(prefect.engine.__file__, run_name="__main__")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m stack.launcher SOCKET_PATH", file=sys.stderr)
        return 2
    seconds = preload()
    if threading.active_count() != 1:
        log(f"importing Prefect started threads {threading.enumerate()}; forking is unsafe")
        return 1
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
