"""The flow-run command of the process deployments (prefect.yaml's `command` job variable):
`python -m stack.launch`, in place of `python -m prefect.engine`.

It asks the warm launcher (stack/launcher.py) at the Unix socket named by FLOW_LAUNCHER_SOCKET to
fork an already-imported Prefect into the flow-run process, hands it this process's environment,
working directory and stdin, forwards the signals it gets to that process, and exits as that
process did (the same exit code, or killed by the same signal). So to the worker it looks like the
flow-run process itself: cancellation, exit codes and the output the worker streams work as they
do without a launcher.

The run's stdout and stderr are pipes of this process, which copies them to its own (the worker's
pipes) as they come. When the worker is gone, a copy fails and that output is dropped; the run
goes on and reports its own end to the server. Written straight to the worker's pipes, its next
log line would end it (EPIPE) when the worker dies.

When FLOW_LAUNCHER_SOCKET is unset or nothing answers there, it replaces itself with
`python -m stack.flow_run` (os.execv: same process id, same arguments), which is the cold path.

It imports the standard library only, so it starts in milliseconds; no Prefect, no settings object.
Signals that arrive before the flow-run process exists are held and forwarded once it does.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import time

# Set by stack/worker_supervisor.py in its worker's environment, which each flow run inherits.
SOCKET_ENV = "FLOW_LAUNCHER_SOCKET"
# The launcher answers with the forked process id at once; silence this long means it is hung.
ANSWER_TIMEOUT_S = 30.0
# Once the run has ended, what is left in its pipes is copied for at most this long (a process
# the run started in the background may hold them open).
DRAIN_S = 5.0
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


class Relay:
    """The run's stdout and stderr: pipes whose write ends go to the run, copied to this
    process's stdout and stderr. A stream whose copy fails (its reader, the worker, is gone) is
    still read, and dropped."""

    def __init__(self) -> None:
        self.targets: dict[int, int] = {}  # read end -> this process's stream
        self.run_ends: list[int] = []
        for target in (1, 2):
            read_end, write_end = os.pipe()
            self.targets[read_end] = target
            self.run_ends.append(write_end)
        self.dropped: set[int] = set()

    def handed_over(self) -> None:
        """The run holds the write ends now: the pipes end when it (and what it started) ends."""
        for fd in self.run_ends:
            os.close(fd)
        self.run_ends = []

    def copy(self, read_end: int) -> bool:
        """Copy what the run wrote to `read_end`; False once the run closed it."""
        data = os.read(read_end, 65536)
        if not data:
            return False
        target = self.targets[read_end]
        if target not in self.dropped:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(target, view) :]
            except OSError:
                self.dropped.add(target)
        return True


def follow(conn: socket.socket, pending: bytearray, relay: Relay) -> dict | None:
    """Copy the run's output until the launcher has said how the run ended and the run's pipes
    are closed, or DRAIN_S after the end; how it ended, or None when the launcher went away."""
    selector = selectors.DefaultSelector()
    for read_end in relay.targets:
        selector.register(read_end, selectors.EVENT_READ)
    selector.register(conn, selectors.EVENT_READ)
    outcome, drain_until = None, None
    while selector.get_map():
        timeout = None if drain_until is None else drain_until - time.monotonic()
        if timeout is not None and timeout <= 0:
            break
        for key, _mask in selector.select(timeout):
            if key.fileobj is conn:
                try:
                    outcome = read_line(conn, pending)
                except OSError:
                    outcome = None
                selector.unregister(conn)
                drain_until = time.monotonic() + DRAIN_S
            elif not relay.copy(key.fd):
                selector.unregister(key.fd)
    selector.close()
    return outcome


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
    relay = Relay()
    try:
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [0, *relay.run_ends])
        relay.handed_over()
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
    outcome = follow(conn, pending, relay)
    if outcome is None:
        say(f"the launcher at {path} stopped during the run; its process {child} was ended")
        sys.exit(1)
    exit_like(outcome)


if __name__ == "__main__":
    main(sys.argv[1:])
