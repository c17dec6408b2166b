"""The warm launcher: one long-lived process that has imported Prefect, and forks it into each
flow-run process, so a run does not pay Prefect's import (seconds of CPU) again.

    python -m stack.launcher SOCKET_PATH

stack/worker_supervisor.py starts it next to each process worker (so `make up` and the compose
`worker` service have one) and passes its socket to the worker as FLOW_LAUNCHER_SOCKET; the
deployments' command, `python -m stack.launch` (stack/launch.py), is its client. WARM_LAUNCHER=0
(deployments/settings.py) turns it off, and the client then starts each run cold.

Contract:
- It imports Prefect and what a flow run needs of it (PRELOAD), never the flows: the next run
  sees a code change without a restart.
- It starts no thread and no event loop: forking a process that has threads is unsafe. It checks
  that Prefect's import left it single-threaded, and refuses to serve otherwise.
- Each request carries the client's argv, environment and working directory, and its stdin,
  stdout and stderr as file descriptors (SCM_RIGHTS). The forked child becomes
  `python -m prefect.engine ARGV` in that environment and directory, with those streams: Prefect's
  settings and logging are rebuilt from the new environment, so a deployment's job-variable
  `env` wins. Interpreter options read only at start-up (`PYTHON*` variables) stay the
  launcher's.
- The child runs in a session of its own and dies with the launcher (PR_SET_PDEATHSIG). The
  launcher answers the client with the child's pid, then with how it ended. When the client goes
  away first (`kill -9`), it kills the child's process group.
- Only processes of the launcher's own user may connect (SO_PEERCRED), and the socket is 0600.
- SIGTERM or SIGINT: stop accepting, SIGTERM the running children, give them STOP_GRACE_S, exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
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
)
REQUEST_TIMEOUT_S = 5.0  # a client sends its whole request at once
MAX_REQUEST_BYTES = 8 * 1024 * 1024
STOP_GRACE_S = 10.0
PR_SET_PDEATHSIG = 1


def log(message: str) -> None:
    print(f"flow launcher: {message}", file=sys.stderr, flush=True)


@dataclass
class Request:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    fds: list[int] = field(default_factory=list)


@dataclass
class Run:
    """A forked flow-run process and the client waiting for it (None once the client left)."""

    pid: int
    client: socket.socket | None


def preload() -> float:
    """Import PRELOAD; the seconds it took."""
    started = time.monotonic()
    for module in PRELOAD:
        importlib.import_module(module)
    return time.monotonic() - started


def peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack(
        "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    )
    return uid


def read_request(conn: socket.socket) -> Request:
    """One JSON line with the client's three stdio descriptors attached."""
    conn.settimeout(REQUEST_TIMEOUT_S)
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    buffer = bytearray(data)
    try:
        while not buffer.endswith(b"\n"):
            if len(buffer) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            chunk = conn.recv(65536)
            if not chunk:
                raise ValueError("the client closed the connection mid-request")
            buffer.extend(chunk)
        if len(fds) != 3:
            raise ValueError(f"expected stdin, stdout and stderr, got {len(fds)} descriptors")
        body = json.loads(buffer)
        return Request(
            argv=list(body["argv"]), env=dict(body["env"]), cwd=str(body["cwd"]), fds=fds
        )
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


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
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log(f"refused a request: {exc}")
            send(conn, {"error": str(exc)})
            conn.close()
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            selector.close()
            conn.close()
            for run in self.runs.values():
                if run.client is not None:
                    run.client.close()
            return request
        for fd in request.fds:
            os.close(fd)
        conn.setblocking(False)
        self.runs[pid] = Run(pid, conn)
        selector.register(conn, selectors.EVENT_READ, pid)
        send(conn, {"pid": pid})
        return None

    def _client_readable(self, pid: int, selector: selectors.BaseSelector) -> None:
        """A client sends nothing after its request: readable means it went away."""
        run = self.runs[pid]
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
        log(f"the client of flow-run process {pid} went away; killing its process group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

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
        """SIGTERM every running child's group; whatever outlives STOP_GRACE_S dies with the
        launcher (PR_SET_PDEATHSIG)."""
        for pid in self.runs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.runs and time.monotonic() < deadline:
            self._reap(selector)
            time.sleep(0.1)


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
    for target, fd in enumerate(request.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    sys.path[0] = request.cwd  # as `python -m` puts its working directory first

    import prefect.context
    import prefect.logging.configuration as logging_configuration

    prefect.context.refresh_global_settings_context()
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
