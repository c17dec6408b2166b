"""The credentials of the docker-pool profile's image registry (docker-compose.yml), from
REGISTRY_USER and REGISTRY_PASSWORD:

    python -m stack.registry_auth htpasswd FILE   # the registry's htpasswd file (bcrypt)
    python -m stack.registry_auth login           # the Docker worker's login to FLOW_REGISTRY

`login` writes the Docker client configuration (`$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`) as `docker login` would, so that the prefect-docker worker's client pulls
the flow image with these credentials. Both refuse, naming the variable, while one is empty, and
then write nothing. The deploy job logs in through prefect.yaml's push step (target docker).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path

import bcrypt

USER_ENV = "REGISTRY_USER"
PASSWORD_ENV = "REGISTRY_PASSWORD"
REGISTRY_ENV = "FLOW_REGISTRY"


class CredentialError(ValueError):
    """A variable the registry's credentials need is empty or unusable."""


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise CredentialError(
            f"set {name} (in .env for docker compose): the docker-pool registry accepts only "
            "authenticated clients"
        )
    return value


def credentials() -> tuple[str, str]:
    user = _required(USER_ENV)
    if ":" in user:
        raise CredentialError(f"{USER_ENV} may not contain ':' (htpasswd separates on it)")
    return user, _required(PASSWORD_ENV)


def write_htpasswd(path: Path) -> None:
    """One line, `user:bcrypt-hash`, readable by the registry only as the file's owner."""
    user, password = credentials()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    _write_private(path, f"{user}:{hashed}\n")


def docker_config_path() -> Path:
    directory = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(directory) / "config.json"


def write_login() -> Path:
    """Add FLOW_REGISTRY's login to the Docker client configuration, keeping its other entries."""
    registry = _required(REGISTRY_ENV)
    user, password = credentials()
    path = docker_config_path()
    config = json.loads(path.read_text()) if path.is_file() else {}
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    config.setdefault("auths", {})[registry] = {"auth": token}
    _write_private(path, json.dumps(config, indent=2) + "\n")
    return path


def _write_private(path: Path, text: str) -> None:
    """Mode 0600 from the start; replaced whole, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    partial.replace(path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.registry_auth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("htpasswd").add_argument("file", type=Path)
    commands.add_parser("login")
    args = parser.parse_args(argv)
    try:
        if args.command == "htpasswd":
            write_htpasswd(args.file)
            print(f"registry-auth: wrote {args.file} for {os.environ[USER_ENV]}")
        else:
            path = write_login()
            print(f"registry-auth: logged in to {os.environ[REGISTRY_ENV]} ({path})")
    except CredentialError as exc:
        print(f"registry-auth: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
