"""The flow-run command of the process deployments (prefect.yaml's `command` job variable):
`python -m stack.launch`, in place of `python -m prefect.engine`.

It asks the warm launcher (stack/launcher.py) at the Unix socket named by FLOW_LAUNCHER_SOCKET to
fork an already-imported Prefect into the flow-run process, hands it this process's environment,
working directory and stdin/stdout/stderr, forwards the signals it gets to that process, and exits
as that process did (the same exit code, or killed by the same signal). So to the worker it looks
like the flow-run process itself: cancellation, exit codes and the output the worker streams work
as they do without a launcher.

When FLOW_LAUNCHER_SOCKET is unset or nothing answers there, it replaces itself with
`python -m stack.flow_run` (os.execv: same process id, same arguments), which is the cold path.

It imports the standard library only, so it starts in milliseconds; no Prefect, no settings object.
Signals that arrive before the flow-run process exists are held and forwarded once it does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

# Set by stack/worker_supervisor.py in its worker's environment, which each flow run inherits.
SOCKET_ENV = "FLOW_LAUNCHER_SOCKET"
# The launcher answers with the forked process id at once; silence this long means it is hung.
ANSWER_TIMEOUT_S = 30.0
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)  # fmt: skip


def say(message: str) -> None:
    print(f"flow launcher client: {message}", file=sys.stderr, flush=True)


def run_cold(args: list[str]) -> None:
    """The cold path: this process becomes `python -m stack.flow_run ARGS` (stack/flow_run.py:
    `python -m prefect.engine ARGS`, then the event that closes the run's heartbeats)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "stack.flow_run", *args])


def read_line(conn: socket.socket, pending: bytearray, fds: list[int] | None = None) -> dict | None:
    """The launcher's next message (one JSON object per line), or None once it closed; the
    descriptors that came with it are added to `fds`."""
    while b"\n" not in pending:
        chunk, received, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        if fds is not None:
            fds += received
        else:
            for fd in received:
                os.close(fd)
        if not chunk:
            return None
        pending.extend(chunk)
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    return json.loads(line)


def exit_like(outcome: dict) -> None:
    """Exit as the flow-run process did: its exit code, or the signal that killed it."""
    if "signal" in outcome:
        number = outcome["signal"]
        sys.stdout.flush()
        sys.stderr.flush()
        if number not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        os._exit(128 + number)  # a signal whose default action is not to terminate
    sys.exit(outcome["exit"])


class Forwarder:
    """Signals for the flow-run process: held until it exists, then sent to it through the pidfd
    the launcher opened while the process was still its unreaped child, so never to a process
    that reused the pid."""

    def __init__(self) -> None:
        self.pidfd: int | None = None
        self.pending: list[int] = []
        for number in FORWARDED_SIGNALS:
            signal.signal(number, self.receive)

    def receive(self, number: int, _frame) -> None:
        if self.pidfd is None:
            self.pending.append(number)
            return
        with contextlib.suppress(ProcessLookupError):  # gone: the launcher reports how next
            signal.pidfd_send_signal(self.pidfd, number)

    def attach(self, pidfd: int) -> None:
        self.pidfd = pidfd
        with contextlib.suppress(ProcessLookupError):
            for number in self.pending:
                signal.pidfd_send_signal(self.pidfd, number)
        self.pending.clear()

    def cold(self, args: list[str]) -> None:
        """No forked process: a signal held back is this process's own again, then cold."""
        for number in FORWARDED_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        if self.pending:
            exit_like({"signal": self.pending[0]})
        run_cold(args)


def main(args: list[str]) -> None:
    path = os.environ.get(SOCKET_ENV)
    if not path:
        run_cold(args)
    forwarder = Forwarder()  # before anything can go wrong: a cancellation is never lost
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(ANSWER_TIMEOUT_S)
    try:
        conn.connect(path)
    except OSError as exc:
        say(f"no launcher answers at {path} ({exc.strerror or exc}); starting the flow run cold")
        conn.close()
        forwarder.cold(args)
    request = {
        "argv": args,
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "executable": sys.executable,
        "prefix": sys.prefix,
    }
    pending = bytearray()
    pidfds: list[int] = []
    try:
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
        started = read_line(conn, pending, pidfds)
    except TimeoutError:
        # Falling back now could start the run twice, should the launcher wake up after all.
        say(f"the launcher at {path} did not answer within {ANSWER_TIMEOUT_S:.0f} s")
        sys.exit(1)
    except OSError as exc:  # no pid came: no process of this run is left (PR_SET_PDEATHSIG)
        started = {"error": f"the connection failed: {exc}"}
    if started is None or "pid" not in started:
        reason = (started or {}).get("error", "it closed the connection")
        say(f"the launcher at {path} did not start the run ({reason}); starting it cold")
        conn.close()
        forwarder.cold(args)
    child = started["pid"]
    if len(pidfds) != 1:  # never cold now: the launcher's process may already run the flow
        say(f"the launcher at {path} sent no pidfd of process {child}; ending it")
        sys.exit(1)  # closing the connection makes the launcher kill the process
    forwarder.attach(pidfds[0])
    conn.settimeout(None)
    try:
        outcome = read_line(conn, pending)
    except OSError:
        outcome = None
    if outcome is None:
        say(f"the launcher at {path} stopped during the run; its process {child} was ended")
        sys.exit(1)
    exit_like(outcome)


if __name__ == "__main__":
    main(sys.argv[1:])
