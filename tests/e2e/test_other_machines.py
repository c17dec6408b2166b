"""`make up` for workers on other machines: beyond loopback it serves HTTPS only, with basic auth,
or refuses to start. A worker on a second host (a network namespace the test makes,
tests/second_host.py), started as the README's "Workers on other machines" says, runs both
deployments through the server's HTTPS address, and a capture of the link between the two hosts
holds no credential in clear."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType

from deployments import settings
from stack.local import LocalStack
from stack.processes import free_port, port_is_free, terminate_then_kill
from tests.live_stack import run_deployment_and_wait, stack_client, wait_until
from tests.make_targets import (
    beyond_loopback_env,
    certificate_authority,
    make,
    make_env,
    other_machine_env,
    stack_of,
)
from tests.requirements import require
from tests.second_host import SecondHost, second_host, supervised_worker

WORKER_NAME = "second-host"
# What a browser or client that does not speak TLS gets from the HTTPS port: printed by the
# second host's Python, either the HTTP status it read or why it read none.
PLAIN_REQUEST = """
import http.client, sys
connection = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
try:
    connection.request("GET", "/api/health")
    print("status", connection.getresponse().status)
except (OSError, http.client.HTTPException) as exc:
    print("no answer:", type(exc).__name__)
"""


def test_beyond_loopback_without_a_certificate_make_up_refuses_and_starts_nothing(
    tmp_path_factory, tmp_path
) -> None:
    env = {
        **make_env(tmp_path_factory),
        "PREFECT_SERVER_API_HOST": "0.0.0.0",
        "TLS_CERT_FILE": str(tmp_path / "missing.pem"),
        "TLS_KEY_FILE": str(tmp_path / "missing-key.pem"),
    }
    up = make("up", env)
    try:
        assert up.returncode != 0, up.stdout
        assert "make certs" in up.stderr and "missing.pem" in up.stderr, up.stderr
        assert port_is_free("127.0.0.1", int(env["PREFECT_SERVER_API_PORT"]))
        pids = Path(env["LOCAL_STATE_DIR"]) / "pids"
        assert not pids.exists() or not any(pids.iterdir()), list(pids.iterdir())
    finally:
        make("down", env)


@pytest.fixture
def host() -> Iterator[SecondHost]:
    require(os.geteuid() == 0, "root (network namespaces)", "run the tests as root")
    with second_host() as host:
        yield host


@contextmanager
def captured(link: str, path: Path) -> Iterator[Path]:
    """Every packet on `link`, whole, written to `path` until the block ends."""
    require(bool(shutil.which("tcpdump")), "tcpdump", "scripts/install-test-tools installs it")
    capture = subprocess.Popen(
        ["tcpdump", "-i", link, "-s", "0", "-U", "-w", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # tcpdump says so once it captures.
        wait_until(lambda: "listening on" in capture.stderr.readline(), 30, "tcpdump to listen")
        yield path
    finally:
        capture.send_signal(signal.SIGINT)  # flushes the file
        terminate_then_kill(capture, 10)


def test_a_worker_on_a_second_host_runs_both_deployments_over_https_with_nothing_in_clear(
    tmp_path_factory, tmp_path, host: SecondHost
) -> None:
    env = {
        **make_env(tmp_path_factory),
        **beyond_loopback_env(tmp_path_factory, host.host_ip),
        "LOCAL_WORKER": "0",
    }
    up = make("up", env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        stack = stack_of(env)
        assert stack.public_url in up.stdout, up.stdout
        # The server itself stays on loopback: the second host finds only the HTTPS port.
        assert port_is_free(host.host_ip, stack.port)
        remote = {
            **other_machine_env(stack, certificate_authority(env)),
            "PREFECT_HOME": str(tmp_path / "second-host-home"),
        }
        supervisor = [sys.executable, "-m", "stack.worker_supervisor", *stack.worker_args()]
        untrusted_env = {
            **{name: value for name, value in remote.items() if name != "SSL_CERT_FILE"},
            settings.HEALTH_PORT_ENV: str(free_port()),
        }
        with captured(host.link, tmp_path / "link.pcap") as pcap:
            plain = host.run(sys.executable, "-c", PLAIN_REQUEST, host.host_ip, str(stack.tls_port))
            untrusted = subprocess.run(
                ["ip", "netns", "exec", host.namespace, *supervisor],
                env=untrusted_env,
                cwd=settings.REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            ran = run_on_the_second_host(host, stack, remote, tmp_path)
        assert plain.stdout.startswith("no answer"), plain.stdout
        assert untrusted.returncode != 0
        assert "SSL_CERT_FILE" in untrusted.stderr, untrusted.stderr
        assert ran == {"say-hello": StateType.COMPLETED, "compute-squares": StateType.COMPLETED}

        seen = pcap.read_bytes()
        assert b"GET /api/health" in seen, "the capture sees a request sent in clear"
        credential = stack.auth_string.encode()
        for secret in (credential, base64.b64encode(credential), b"Authorization:"):
            assert secret not in seen, f"{secret!r} crossed the link in clear"
    finally:
        make("down", env)


def run_on_the_second_host(
    host: SecondHost, stack: LocalStack, env: dict[str, str], tmp_path: Path
) -> dict[str, StateType]:
    """Start the supervised worker there, run both deployments, stop it; their final states."""
    log = tmp_path / "second-host-worker.log"
    with supervised_worker(host, stack, env, log, WORKER_NAME), stack_client(stack) as api:
        hello = run_deployment_and_wait(api, "say-hello/greeting-schedule", {"name": "Host 2"})
        squares = run_deployment_and_wait(api, "compute-squares/compute-squares")
    return {"say-hello": hello.state.type, "compute-squares": squares.state.type}
