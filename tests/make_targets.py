"""`make up`, `make down` and `make status` as a user runs them, in a temporary state directory
on free ports; and a machine of theirs beyond loopback, as the README's "Workers on other
machines" sets one up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from deployments import settings
from stack.certs import issue
from stack.local import LocalStack, is_loopback, local_auth_string
from stack.processes import free_port
from tests.live_stack import state_directory, unique


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(settings.REPO_ROOT), target],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def make_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A user's environment for a `make up` stack of its own."""
    return {
        **os.environ,
        "LOCAL_STATE_DIR": str(state_directory(tmp_path_factory, "make-up") / "state"),
        "PREFECT_SERVER_API_PORT": str(free_port()),
        settings.HEALTH_PORT_ENV: str(free_port()),
        settings.POOL_NAME_ENV: unique("make-up-pool"),
    }


def beyond_loopback_env(tmp_path_factory: pytest.TempPathFactory, host_ip: str) -> dict[str, str]:
    """What makes `make up` serve other machines on `host_ip`: that address, a certificate for it
    (`make certs`, in a directory of its own), a free HTTPS port."""
    certs = tmp_path_factory.mktemp("certs")
    issue(certs, [host_ip])
    return {
        "PREFECT_SERVER_API_HOST": host_ip,
        "TLS_PORT": str(free_port()),
        "TLS_CERT_FILE": str(certs / "server.pem"),
        "TLS_KEY_FILE": str(certs / "server-key.pem"),
    }


def certificate_authority(env: dict[str, str]) -> Path:
    """The CA that issued the certificate of beyond_loopback_env: what other machines trust."""
    return Path(env["TLS_CERT_FILE"]).with_name("ca.pem")


def stack_of(env: dict[str, str]) -> LocalStack:
    """The stack `make up` runs under `env`, as `python -m stack` sees it (with its credentials
    when it has basic auth on)."""
    state_dir = Path(env["LOCAL_STATE_DIR"])
    host = env.get("PREFECT_SERVER_API_HOST", "127.0.0.1")
    with_auth = env.get(settings.AUTH_ENV) == "1" or not is_loopback(host)
    return LocalStack(
        state_dir=state_dir,
        host=host,
        port=int(env["PREFECT_SERVER_API_PORT"]),
        pool_name=env[settings.POOL_NAME_ENV],
        worker_health_port=int(env[settings.HEALTH_PORT_ENV]),
        auth_string=local_auth_string(state_dir) if with_auth else None,
        tls_port=int(env["TLS_PORT"]) if "TLS_PORT" in env else None,
    )


def other_machine_env(stack: LocalStack, ca: Path) -> dict[str, str]:
    """A worker's environment on another machine, as the README sets it: the stack's worker
    environment with the server's HTTPS address, its credentials and the CA to trust."""
    assert stack.public_url and stack.auth_string, "make up does not serve other machines"
    env = {name: value for name, value in stack.worker_env.items() if "SSL" not in name}
    return {
        **env,
        "PREFECT_API_URL": f"{stack.public_url}/api",
        "PREFECT_API_AUTH_STRING": stack.auth_string,
        "SSL_CERT_FILE": str(ca),
    }
