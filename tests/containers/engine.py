"""docker-compose.yml run by a real Docker engine and Compose v2, as a project of its own.

scripts/install-docker (run by `make containers`) installs the engine and the compose plugin and
builds stand-ins for the base images no registry here serves. Each ComposeProject has a unique
project name and its own .env in a temporary directory; everything it creates (containers,
network, volume) carries that name, and `down()` removes exactly that.

One override goes with the repository's file: the services built from the Dockerfile run the
image of the test session (session_image), built once from this work tree and shared by every
project and xdist worker of the session, instead of the compose file's
`prefect-deployments:<version>`. The engine is shared (another work tree may build that tag at the
same time), so the tests run exactly the image their session built, and the session's controller
removes that tag when it ends (remove_session_image). One build instead of one per project and
service: on the vfs storage driver every layer and every container is a full copy on disk.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import (
    PREFECT_API_AUTH_STRING,
    PREFECT_API_SSL_CERT_FILE,
    PREFECT_API_URL,
    temporary_settings,
)

from deployments import settings
from stack.certs import issue
from stack.processes import free_port
from tests.compose.compose import COMPOSE_FILE, ENV_EXAMPLE, write_env_file
from tests.live_stack import unique, wait_until

# Compose's own --wait deadline: every service healthy or exited, measured at about 40 s.
UP_TIMEOUT_S = 300
PROJECT_PREFIX = "pdtest"
PROJECT_LABEL = "com.docker.compose.project"


def require_engine() -> None:
    """A Docker engine that answers and the compose v2 plugin; skip without them, except in CI."""
    problems = []
    if not shutil.which("docker"):
        problems.append("no docker CLI")
    elif subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        problems.append("no Docker engine answers `docker info`")
    elif (
        subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60).returncode
        != 0
    ):
        problems.append("no compose v2 plugin (`docker compose`)")
    if not problems:
        return
    reason = f"{'; '.join(problems)}: run scripts/install-docker (make containers does)"
    if settings.current().ci:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result.stdout


def container_logs(container_id: str) -> str:
    """What the container wrote to stdout and stderr."""
    result = subprocess.run(
        ["docker", "logs", container_id], capture_output=True, text=True, timeout=60
    )
    return result.stdout + result.stderr


def compose_variables() -> set[str]:
    """The variables docker-compose.yml reads, all listed in .env.example (a test checks)."""
    return {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    }


def built_services() -> dict[str, str]:
    """The services docker-compose.yml builds from the Dockerfile, with their image tag."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return {name: svc["image"] for name, svc in services.items() if "build" in svc}


def session_image_tag() -> str:
    """The test session's image tag: the compose file's, suffixed with the session's token
    (TEST_SESSION_TOKEN, made by the session's controller in tests/conftest.py)."""
    (tag,) = set(built_services().values())
    return f"{tag}-test-{os.environ['TEST_SESSION_TOKEN']}"


def session_image_lock() -> Path:
    token = os.environ["TEST_SESSION_TOKEN"]
    return Path(tempfile.gettempdir()) / f"prefect-deployments-image-{token}.lock"


def session_image() -> str:
    """The image built from this work tree's Dockerfile for the test session: the first project
    that needs it builds it, under a lock the session's xdist workers share; the others wait."""
    require_engine()
    tag = session_image_tag()
    with session_image_lock().open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if docker("image", "ls", "-q", tag).strip():
            return tag
        docker("build", "--quiet", "--tag", tag, str(settings.REPO_ROOT), timeout=900)
        _keep_dependency_layers(tag)
    return tag


# The session image's layers under the code's (the Dockerfile puts dependencies, user and
# environment first) outlive the session under this tag: the next session's build takes them
# from the cache, and only copies the code (on vfs every layer is a full copy of the image).
LAYER_CACHE_TAG = "prefect-deployments-test-cache:dependencies"


def _keep_dependency_layers(tag: str) -> None:
    """Tag the parent of `tag`'s code layer as LAYER_CACHE_TAG; remove the layers the tag held
    before, when they differ (the dependencies changed)."""
    parent = docker("image", "inspect", "--format", "{{.Parent}}", tag).strip()
    if not parent:  # a builder that records no parent (BuildKit) has a cache of its own
        return
    before = docker("image", "inspect", "--format", "{{.Id}}", LAYER_CACHE_TAG, check=False)
    docker("tag", parent, LAYER_CACHE_TAG)
    if before.strip().startswith("sha256:") and before.strip() != parent:
        docker("image", "rm", before.strip(), check=False)


def remove_session_image() -> None:
    """At the end of the session (its controller): the session's image, when a test built it."""
    lock = session_image_lock()
    if not lock.exists():
        return
    docker("image", "rm", "-f", session_image_tag(), check=False)
    lock.unlink()


class ComposeProject:
    """The repository's docker-compose.yml under a unique project name, with generated secrets,
    a free loopback port for the UI/API and its certificate, issued by a CA of its own (`ca`,
    what its clients trust), as `make certs` does."""

    def __init__(
        self, tmp_dir: Path, image: str, services: dict[str, dict] | None = None, **env: str
    ) -> None:
        """`image`: the tag for the services built from the Dockerfile; `services`: more
        override keys per service (a test's volume, say); `env` overrides the generated .env
        values (e.g. another stack's ENCRYPTION_KEY)."""
        self.name = unique(PROJECT_PREFIX)
        self.image = image
        self.override_file = tmp_dir / f"{self.name}.override.yml"
        overrides = {name: {"image": image} for name in built_services()}
        for name, keys in (services or {}).items():
            overrides[name] = {**overrides.get(name, {}), **keys}
        self.override_file.write_text(yaml.safe_dump({"services": overrides}))
        self.auth = ("admin", unique("pw"))
        self.server_port = free_port()
        certs = tmp_dir / f"{self.name}-certs"
        issue(certs, [])  # localhost and 127.0.0.1
        self.ca = certs / "ca.pem"
        self.certificate = certs / "server.pem"
        self.env = {
            "POSTGRES_PASSWORD": unique("pg"),
            "API_AUTH_STRING": ":".join(self.auth),
            "ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "SERVER_PORT": str(self.server_port),
            "TLS_CERT_FILE": str(self.certificate),
            "TLS_KEY_FILE": str(certs / "server-key.pem"),
            "REGISTRY_PASSWORD": unique("registry"),
            **env,
        }
        self.env_file = write_env_file(tmp_dir / f"{self.name}.env", **self.env)
        self.ui_url = f"https://127.0.0.1:{self.server_port}"
        self.api_url = f"{self.ui_url}/api"

    @property
    def registry(self) -> str:
        """The profile docker-pool's registry, as Docker on this machine reaches it."""
        return f"127.0.0.1:{self.env.get('REGISTRY_PORT', '5000')}"

    @property
    def trust(self) -> ssl.SSLContext:
        """A TLS context that trusts the stack's CA only (its published port and registry)."""
        return ssl.create_default_context(cafile=str(self.ca))

    @property
    def registry_login(self) -> tuple[str, str]:
        return (self.env.get("REGISTRY_USER", "flows"), self.env["REGISTRY_PASSWORD"])

    def registry_api(self, path: str, login: bool = True) -> httpx.Response:
        """GET the registry's API (`/v2/...`) over HTTPS, trusting the stack's CA only; with its
        login, or without any."""
        auth = self.registry_login if login else None
        return httpx.get(f"https://{self.registry}{path}", verify=self.trust, auth=auth, timeout=10)

    def compose(
        self,
        *args: str,
        timeout: float = 300,
        check: bool = True,
        stdin: bytes | None = None,
        binary: bool = False,
    ) -> subprocess.CompletedProcess:
        """`docker compose` on this project. The caller's environment would override the .env
        file (compose gives the shell precedence), so the compose variables are removed from it.
        `binary`: stdout as bytes (a pg_dump), `stdin` fed to the command."""
        env = {k: v for k, v in os.environ.items() if k not in compose_variables()}
        argv = ["docker", "compose", "-p", self.name, "--env-file", str(self.env_file)]
        argv += ["-f", str(COMPOSE_FILE), "-f", str(self.override_file)]
        argv += ["--project-directory", str(settings.REPO_ROOT), *args]
        result = subprocess.run(
            argv,
            capture_output=True,
            input=stdin if stdin is not None else (b"" if binary else ""),
            text=not binary,
            timeout=timeout,
            env=env,
            cwd=settings.REPO_ROOT,
        )
        if check:
            stderr = result.stderr.decode(errors="replace") if binary else result.stderr
            stdout = "(binary)" if binary else result.stdout[-3000:]
            assert result.returncode == 0, (
                f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{stdout}\n{stderr[-5000:]}\n{self.diagnostics()}"
            )
        return result

    def up(self, *args: str) -> None:
        self.compose(
            "up",
            "-d",
            "--wait",
            "--wait-timeout",
            str(UP_TIMEOUT_S),
            "--no-build",  # the session's image, never a build of its own
            *args,
            timeout=UP_TIMEOUT_S + 120,
        )

    def down(self) -> None:
        """Containers, networks and volumes gone. On vfs, removing a container deletes a full copy
        of its image, which under make long's load can take minutes: the deadline is up's."""
        self.compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=420)

    def diagnostics(self) -> str:
        """`ps -a` and the last log lines of every service, for a failure message."""
        try:
            ps = self.compose("ps", "-a", check=False, timeout=60).stdout
            logs = self.compose("logs", "--no-color", "--tail", "40", check=False, timeout=60)
        except subprocess.TimeoutExpired:
            return "(no diagnostics: docker compose did not answer)"
        return f"--- ps -a\n{ps}\n--- logs\n{logs.stdout[-8000:]}"

    def services(self) -> dict[str, list[dict]]:
        """Every container of the project (running or exited), by service, as `ps` reports it."""
        out = self.compose("ps", "-a", "--format", "json", timeout=60).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        if len(rows) == 1 and isinstance(rows[0], list):  # older compose: one JSON array
            rows = rows[0]
        by_service: dict[str, list[dict]] = {}
        for row in rows:
            by_service.setdefault(row["Service"], []).append(row)
        return by_service

    def container_ids(self, service: str) -> list[str]:
        out = self.compose("ps", "-a", "-q", service, timeout=60).stdout
        return out.split()

    def inspect(self, container_id: str) -> dict:
        return json.loads(docker("inspect", container_id))[0]

    def exec(self, service: str, script: str, index: int = 1) -> str:
        """Run `sh -c script` in a running container of `service`, as the image's user."""
        result = self.compose(
            "exec", "-T", "--index", str(index), service, "sh", "-c", script, timeout=120
        )
        return result.stdout

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks, volumes and images that still carry this project's label."""
        label = f"label={PROJECT_LABEL}={self.name}"
        return {
            "containers": docker("ps", "-aq", "--filter", label).split(),
            "networks": docker("network", "ls", "-q", "--filter", label).split(),
            "volumes": docker("volume", "ls", "-q", "--filter", label).split(),
            "images": docker("image", "ls", "-q", "--filter", label).split(),
        }

    def remove_images(self) -> None:
        """Images carrying the project's label: a `compose build` of it (Compose builds each
        service that has a `build:` on its own, so every such service leaves an image)."""
        images = self.leftovers()["images"]
        if images:
            docker("image", "rm", "-f", *sorted(set(images)), check=False)

    def http(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A request to the published port (`path` from the root: `/api/health`), trusting the
        stack's CA only."""
        kwargs.setdefault("timeout", 10)
        return httpx.request(method, self.ui_url + path, verify=self.trust, **kwargs)

    @property
    def client_env(self) -> dict[str, str]:
        """What a Prefect client on this machine sets to reach the stack: the published port,
        the credentials, the CA to trust."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_AUTH_STRING": ":".join(self.auth),
            "PREFECT_API_SSL_CERT_FILE": str(self.ca),
        }

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        """A Prefect client of this stack's server, through the published port, with credentials."""
        updates = {
            PREFECT_API_URL: self.api_url,
            PREFECT_API_AUTH_STRING: ":".join(self.auth),
            PREFECT_API_SSL_CERT_FILE: str(self.ca),
        }
        with temporary_settings(updates), get_client(sync_client=True) as client:
            yield client

    def wait_healthy(self, service: str, timeout_s: float = 180) -> None:
        def healthy() -> bool:
            rows = self.services().get(service, [])
            return bool(rows) and all(r.get("Health") == "healthy" for r in rows)

        wait_until(healthy, timeout_s, f"{self.name}'s {service} to be healthy", interval_s=2)


@contextmanager
def running_stack(
    tmp_dir: Path, services: dict[str, dict] | None = None, **env: str
) -> Iterator[ComposeProject]:
    """A project on the session's image (session_image), up with `--wait`; taken down with its
    volumes, and any image it built removed, when it ends. When its tests ended normally, no
    container, network, volume or image of the project may be left after that (reported as an
    error in the last test's teardown)."""
    project = ComposeProject(tmp_dir, image=session_image(), services=services, **env)
    try:
        project.up()
        yield project
        before = project.leftovers()
    finally:
        project.down()
        project.remove_images()
    made = {kind: before[kind] for kind in ("containers", "networks", "volumes")}
    assert all(made.values()), f"the stack lacked a container, network or volume: {before}"
    left = project.leftovers()
    assert not any(left.values()), f"down -v and the image removal left {left}"
