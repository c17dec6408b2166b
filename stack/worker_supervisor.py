"""Keep one process worker running and healthy: `python -m stack.worker_supervisor ARGS`.

Starts `prefect worker start ARGS --with-healthcheck`, polls the worker's own health endpoint
(`/health` on PREFECT_WORKER_WEBSERVER_PORT, deployments/settings.py) and restarts the worker
when it exits, or when the endpoint stays unhealthy for UNHEALTHY_AFTER_S. Prefect reports a
worker unhealthy when it has not polled its pool for 30 poll intervals (15 s with this
repository's 0.5 s polling), e.g. when its loop hangs. Nothing else acts on that endpoint: Docker
only labels a container unhealthy (it restarts containers that exit), and systemd does not poll
HTTP.

A worker cannot poll a server that does not answer, so before it restarts an unhealthy worker the
supervisor asks the server (PREFECT_API_URL's `/ready`, which checks the database): when the
server is down or stalled it keeps the worker, which resumes on its own once the server is back,
and gives it UNHEALTHY_AFTER_S more from then.

Stopping a worker ends the flow-run processes it started: Prefect's worker terminates them as it
shuts down (and they write their logs to its pipes). So while an unhealthy worker still has live
flow-run processes, the supervisor keeps it until they end, for at most RESTART_WITH_RUNS_AFTER_S.
A run whose process is ended that way can be left RUNNING or PENDING until the zombie automation
marks it CRASHED. SIGTERM or SIGINT stops the worker and the supervisor.

Every SWEEP_EVERY_S, and at once when it starts, while the server answers, it marks CRASHED the
runs left behind (stack/stuck_runs.py): those of its pool left PENDING for longer than the zombie
window by a worker that stopped before starting them, and those still RUNNING or PENDING whose
flow-run process on this machine is gone (each records itself in FLOW_RUN_PROCESSES_DIR, which
the supervisor sets for its worker: unset, PREFECT_HOME's flow-run-processes). So after a crash
of the whole machine or of the supervisor, the next supervisor ends the runs that died with it.

Next to a process worker it runs the warm launcher (stack/launcher.py) on a socket in a private
temporary directory, named to the worker as FLOW_LAUNCHER_SOCKET, restarts it when it exits and
stops it after the worker. WARM_LAUNCHER=0 runs the worker alone: its runs then start cold.
`make up` and the compose `worker` service run the worker through this supervisor.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from deployments import settings
from stack.launch import SOCKET_ENV
from stack.local import PREFECT
from stack.processes import (
    api_trust,
    http_ok,
    live_children,
    port_is_free,
    terminate_then_kill,
)
from stack.stuck_runs import sweep_pool, sweep_processes

CHECK_EVERY_S = 5.0
# A worker needs a few seconds to import Prefect and bind its endpoint.
START_GRACE_S = 60.0
UNHEALTHY_AFTER_S = 30.0
# A ready server answers at once; one that takes longer is stalled (e.g. SQLite's write lock).
SERVER_READY_TIMEOUT_S = 10.0
# An unhealthy worker whose flow runs never end is restarted after all, this long after it turned
# unhealthy: a hung worker no longer drains their output pipes, so they may block on logging.
RESTART_WITH_RUNS_AFTER_S = 600.0
# How often it looks for runs its pool's workers took and never started.
SWEEP_EVERY_S = 30.0
# After an early exit (server unreachable, bad pool name) wait longer each time, up to this.
MAX_BACKOFF_S = 30.0


def log(message: str) -> None:
    print(f"worker-supervisor: {message}", file=sys.stderr, flush=True)


def worker_is_healthy(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/health", timeout_s=3)


def server_is_ready(api_url: str | None) -> bool:
    """Whether the worker's server answers its readiness probe (no API URL: assume it does, and
    blame the worker). `/ready` needs no credentials, also with basic auth on."""
    if not api_url:
        return True
    try:
        ready = httpx.get(
            f"{api_url.rstrip('/')}/ready", timeout=SERVER_READY_TIMEOUT_S, verify=api_trust()
        )
    except httpx.HTTPError:
        return False
    return ready.status_code == 200


def untrusted_certificate(api_url: str | None) -> str | None:
    """Why this machine does not trust the server's certificate (an https API URL only); None
    when it does, or when nothing answers yet (the worker waits for the server then)."""
    if not api_url or not api_url.startswith("https://"):
        return None
    try:
        httpx.get(
            f"{api_url.rstrip('/')}/ready", timeout=SERVER_READY_TIMEOUT_S, verify=api_trust()
        )
    except httpx.HTTPError as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return cause.verify_message or str(cause)
            cause = cause.__cause__ or cause.__context__
    return None


class Supervisor:
    def __init__(self, worker_args: list[str], config: settings.Settings) -> None:
        self.command = [PREFECT, "worker", "start", *worker_args, "--with-healthcheck"]
        self.port = config.worker_health_port
        self.api_url = config.api_url
        # The worker binds the port the supervisor polls, also when the variable is unset.
        self.env = {**os.environ, settings.HEALTH_PORT_ENV: str(self.port)}
        self.worker: subprocess.Popen[bytes] | None = None
        self.launcher: subprocess.Popen[bytes] | None = None
        self.launcher_dir: Path | None = None
        if config.warm_launcher and runs_processes(worker_args):
            self.launcher_dir = Path(tempfile.mkdtemp(prefix="flow-launcher-"))
            self.env[SOCKET_ENV] = str(self.launcher_dir / "launcher.sock")
        self.launcher_backoff_s = 1.0
        self.launcher_started_at = 0.0
        self.stopping = False
        self.restarts = 0
        # Process pools only: a Docker worker's run stays PENDING while its image is pulled.
        self.pool_name = (
            option_value(worker_args, "--pool", "-p") if runs_processes(worker_args) else None
        )
        self.auth_string = os.environ.get("PREFECT_API_AUTH_STRING")
        self.zombie_after_s = config.zombie_after_s
        self.swept_at: float | None = None
        self.processes_dir = config.flow_run_processes_dir or processes_dir_default()
        self.env[settings.PROCESSES_DIR_ENV] = str(self.processes_dir)

    def keep_launcher(self) -> None:
        """Start the launcher, or start it again when it exited: at once after a long life, ever
        more slowly when it keeps failing early. Runs that find none meanwhile start cold."""
        if self.launcher_dir is None or (self.launcher and self.launcher.poll() is None):
            return
        now = time.monotonic()
        if self.launcher is not None:
            if now - self.launcher_started_at > START_GRACE_S:
                self.launcher_backoff_s = 1.0
            if now < self.launcher_started_at + self.launcher_backoff_s:
                return
            log(f"launcher exited with code {self.launcher.returncode}; starting it again")
            self.launcher_backoff_s = min(self.launcher_backoff_s * 2, MAX_BACKOFF_S)
        command = [sys.executable, "-m", "stack.launcher", self.env[SOCKET_ENV]]
        self.launcher = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=self.env)
        self.launcher_started_at = now
        log(f"started launcher pid {self.launcher.pid}")

    def stop_launcher(self) -> None:
        if self.launcher is not None:
            terminate_then_kill(self.launcher, settings.STOP_TIMEOUT_S)
        if self.launcher_dir is not None:
            shutil.rmtree(self.launcher_dir, ignore_errors=True)

    def sweep_stuck_runs(self) -> None:
        """At once, then every SWEEP_EVERY_S: crash the runs left behind (stack/stuck_runs.py)."""
        now = time.monotonic()
        if not (self.api_url and self.pool_name):
            return
        if self.swept_at is not None and now - self.swept_at < SWEEP_EVERY_S:
            return
        self.swept_at = now
        try:
            gone = sweep_processes(self.api_url, self.auth_string, self.processes_dir)
            pending = sweep_pool(
                self.api_url,
                self.auth_string,
                self.pool_name,
                self.zombie_after_s,
                self.processes_dir,
            )
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log(f"could not look for runs left behind: {exc!r}")
            return
        if gone:
            log(f"marked CRASHED, their flow-run process gone: {', '.join(gone)}")
        if pending:
            log(f"marked CRASHED, left PENDING by a worker that stopped: {', '.join(pending)}")

    def start_worker(self) -> None:
        self.worker = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, env=self.env)
        log(f"started worker pid {self.worker.pid}: {' '.join(self.command[1:])}")

    def stop_worker(self) -> int | None:
        """SIGTERM the worker, SIGKILL it after STOP_TIMEOUT_S; its exit code."""
        if self.worker is None:
            return None
        pid = self.worker.pid
        return terminate_then_kill(
            self.worker,
            settings.STOP_TIMEOUT_S,
            on_kill=lambda: log(f"worker pid {pid} ignored SIGTERM; killing it"),
        )

    def _stop(self, signum: int, _frame) -> None:
        self.stopping = True

    def watch_one_worker(self) -> str:
        """Run one worker until it exits or stays unhealthy; say why it ended."""
        self.start_worker()
        started = time.monotonic()
        healthy_at = started
        seen_healthy = False
        deferred = False  # said once per unhealthy spell that the worker is kept for its runs
        while not self.stopping:
            self.keep_launcher()
            self.sweep_stuck_runs()
            code = self.worker.poll()
            if code is not None:
                return f"worker exited with code {code}"
            now = time.monotonic()
            if worker_is_healthy(self.port):
                healthy_at, seen_healthy, deferred = now, True, False
            elif now - healthy_at > (UNHEALTHY_AFTER_S if seen_healthy else START_GRACE_S):
                if not server_is_ready(self.api_url):
                    log(
                        f"worker unhealthy for {now - healthy_at:.0f} s, but the server at "
                        f"{self.api_url} is not ready either: keeping the worker"
                    )
                    healthy_at = time.monotonic()
                    continue
                runs = live_children(self.worker.pid)
                if runs and now - healthy_at < RESTART_WITH_RUNS_AFTER_S:
                    if not deferred:
                        log(
                            f"worker unhealthy for {now - healthy_at:.0f} s, but its flow-run "
                            f"processes {runs} still run: keeping the worker until they end"
                        )
                    deferred = True
                    time.sleep(CHECK_EVERY_S)
                    continue
                code = self.stop_worker()
                return f"worker unhealthy for {now - healthy_at:.0f} s (stopped, code {code})"
            time.sleep(CHECK_EVERY_S if seen_healthy else 1.0)
        return "stopping"

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        backoff = 1.0
        while not self.stopping:
            started = time.monotonic()
            reason = self.watch_one_worker()
            if self.stopping:
                break
            self.restarts += 1
            # A worker that ran for a while gets restarted at once; one that keeps failing early
            # (server down, wrong pool) is retried ever more slowly.
            backoff = (
                1.0
                if time.monotonic() - started > START_GRACE_S
                else min(backoff * 2, MAX_BACKOFF_S)
            )
            log(f"{reason}; restart {self.restarts} in {backoff:.0f} s")
            deadline = time.monotonic() + backoff
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.2)
        code = self.stop_worker()
        self.stop_launcher()
        log(f"stopped (worker exit code {code})")
        return 0


def processes_dir_default(env: Mapping[str, str] = os.environ) -> Path:
    """PREFECT_HOME's flow-run-processes (of `env`): kept with the worker's other state, so the
    next supervisor on this machine finds what the last one's runs left."""
    home = env.get("PREFECT_HOME") or "~/.prefect"
    return Path(home).expanduser() / "flow-run-processes"


def option_value(args: list[str], *names: str) -> str | None:
    """The value of the option `names` (`--pool NAME` or `--pool=NAME`) in `args`."""
    for index, arg in enumerate(args):
        if arg in names and index + 1 < len(args):
            return args[index + 1]
        for name in names:
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
    return None


def runs_processes(worker_args: list[str]) -> bool:
    """Whether the worker is a process worker (Prefect's default type), whose runs the launcher
    can fork; a Docker worker's runs start in containers."""
    for index, arg in enumerate(worker_args):
        if arg in ("--type", "-t") and index + 1 < len(worker_args):
            return worker_args[index + 1] == "process"
        for prefix in ("--type=", "-t"):
            if arg.startswith(prefix) and arg != prefix.rstrip("="):
                return arg[len(prefix) :] == "process"
    return True


def main(argv: list[str]) -> int:
    try:
        config = settings.current()
    except settings.SettingsError as exc:
        log(f"error: {exc}")
        return 2
    port = config.worker_health_port
    if not port_is_free("127.0.0.1", port):
        log(
            f"error: port {port} for the worker's health endpoint is in use; choose another "
            f"with {settings.HEALTH_PORT_ENV}=<port>"
        )
        return 2
    untrusted = untrusted_certificate(config.api_url)
    if untrusted:
        log(
            f"error: the server at {config.api_url} presented a certificate this machine does "
            f"not trust ({untrusted}): set SSL_CERT_FILE (or PREFECT_API_SSL_CERT_FILE) to the "
            "certificate authority that issued it (for `make up`'s server, a copy of its "
            "certs/ca.pem; for compose, the one `make certs` made), then start again"
        )
        return 2
    return Supervisor(argv, config).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
