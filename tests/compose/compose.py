"""docker-compose.yml, resolved by a real compose implementation, and run without a container.

No Docker engine runs on our machines, but `docker-compose config` (Debian's docker-compose) needs
none: it validates the file and resolves variables, anchors and defaults offline. The tests then
run each Prefect service's own command with its own environment as local processes. Only what
exists only inside the compose network is rewritten, and REWRITES lists all of it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deployments import settings

COMPOSE_FILE = settings.REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = settings.REPO_ROOT / ".env.example"
IMAGE_CODE_DIR = "/opt/flows"  # WORKDIR in the Dockerfile, where the image holds this repository


def require_compose() -> str:
    """The docker-compose binary; skip without one, except in CI, where it must be there."""
    binary = shutil.which("docker-compose")
    if binary:
        return binary
    if settings.current().ci:
        pytest.fail("CI=true but docker-compose is not installed (.ci/run installs it)")
    pytest.skip("docker-compose is not installed (apt-get install docker-compose)")


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_compose(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.REPO_ROOT,
    )


def resolved_services(env_file: Path) -> dict[str, dict]:
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def write_env_file(path: Path, **values: str) -> Path:
    """.env.example with `values` filled in, as a user's .env would be."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values.pop(key)}" if key in values and "=" in line else line)
    lines += [f"{key}={value}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class NativeRewrites:
    """Container-only addresses and paths, mapped to this machine's."""

    def __init__(self, postgres_port: int, server_port: int, worker_port: int, home: Path):
        self.replacements = {
            # the compose network's host names and the containers' fixed ports
            "http://prefect-server:4200": f"http://127.0.0.1:{server_port}",
            "http://127.0.0.1:4200": f"http://127.0.0.1:{server_port}",
            f"http://127.0.0.1:{settings.current().worker_health_port}": (
                f"http://127.0.0.1:{worker_port}"
            ),
        }
        self.env_overrides = {
            "PREFECT_SERVER_DATABASE_HOST": "127.0.0.1",
            "PREFECT_SERVER_DATABASE_PORT": str(postgres_port),
            "PREFECT_SERVER_API_HOST": "127.0.0.1",  # 0.0.0.0 inside a container; loopback here
            "PREFECT_SERVER_API_PORT": str(server_port),
            "PREFECT_WORKER_WEBSERVER_PORT": str(worker_port),
            "FLOW_CODE_DIR": str(settings.REPO_ROOT),  # the image's copy of the code
        }
        self.argv_overrides = {"--host": "127.0.0.1", "--port": str(server_port)}
        # Not from the image: a private PREFECT_HOME and this virtualenv's Prefect on PATH.
        self.home = home

    def text(self, value: str) -> str:
        for old, new in self.replacements.items():
            value = value.replace(old, new)
        return value

    def env(self, service: dict) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env = {**base, **{k: self.text(str(v)) for k, v in service["environment"].items()}}
        for key, value in self.env_overrides.items():
            if key in env:
                env[key] = value
        env["PREFECT_HOME"] = str(self.home)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def argv(self, command: str | list[str]) -> list[str]:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        argv = [self.text(arg) for arg in argv]
        for i, arg in enumerate(argv[:-1]):
            if arg in self.argv_overrides:
                argv[i + 1] = self.argv_overrides[arg]
        return argv

    def healthcheck(self, service: dict) -> list[str]:
        kind, *argv = service["healthcheck"]["test"]
        assert kind == "CMD", f"healthcheck form {kind} is not run natively"
        return self.argv(argv)
