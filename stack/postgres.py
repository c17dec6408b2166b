"""A throwaway PostgreSQL cluster from the machine's binaries (initdb, pg_ctl), on a free port,
with password authentication over TCP as the compose stack uses it. The bench and the tests run
the stack on it.

    cluster = PostgresCluster().start()
    ...  # PREFECT_SERVER_DATABASE_CONNECTION_URL=cluster.async_url
    cluster.stop()                       # stops the server and deletes its files
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from stack.processes import free_port

USER = DATABASE = "prefect"


def _as_postgres_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; CI runs as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


POSTGRES_INSTALL_HINT = "apt-get install postgresql-15 and put /usr/lib/postgresql/15/bin on PATH"


def postgres_binaries_found() -> bool:
    return bool(shutil.which("initdb") and shutil.which("pg_ctl"))


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

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(
            _as_postgres_user(argv), capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> PostgresCluster:
        self.socket_dir.mkdir()
        password_file = self.base_dir / "pwfile"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.base_dir, "postgres")
            shutil.chown(self.socket_dir, "postgres")
            shutil.chown(password_file, "postgres")
        self._run(
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
        self._run(
            ["pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l",
             str(self.log_path), "-o", options]
        )  # fmt: skip
        self._run(
            ["createdb", "-h", str(self.socket_dir), "-p", str(self.port), "-U", USER, DATABASE]
        )
        return self

    def stop(self) -> None:
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run(
                    ["pg_ctl", "stop", "-w", "-t", "30", "-m", "fast", "-D", str(self.data_dir)]
                )
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    @property
    def async_url(self) -> str:
        return f"postgresql+asyncpg://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"
