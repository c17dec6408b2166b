"""Which repository this checkout is: the address of its git remote `origin`, the same for every
clone of one repository (ssh or https, with or without `.git`), different for each fork.

The owner name (prefect.yaml's `name`) is what a copy of the template may forget to change;
the applied record keeps the source it was last applied from, and plan calls a record applied
from another source a conflict (deployments/plan.py), so two repositories under one name cannot
prune each other unnoticed. DEPLOYMENTS_SOURCE overrides it, for a checkout without git (the
compose deploy job's image) or a repository that moved. Unknown (no git, no remote, no
override), nothing is checked.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from deployments import settings

GIT_TIMEOUT_S = 10.0
# scp-like syntax: [user@]host:path (not a Windows drive letter, not a URL).
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]{2,}):(?P<path>(?!//).+)$")


def normalized(address: str) -> str:
    """`address` as one spelling per repository: host (lower case, without user, password or
    port) and path, without a trailing `.git` or slash. A local path stays a path."""
    text = address.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme == "file":
            return _path(parts.path)
        return _join((parts.hostname or "").lower(), parts.path)
    match = _SCP_LIKE.match(text)
    if match:
        return _join(match["host"].lower(), match["path"])
    return _path(text)


def _join(host: str, path: str) -> str:
    return f"{host}/{_strip(path).lstrip('/')}"


def _path(path: str) -> str:
    return _strip(str(Path(path).expanduser().resolve()))


def _strip(path: str) -> str:
    return path.rstrip("/").removesuffix(".git").rstrip("/")


def git_remote(root: Path) -> str | None:
    """The address of `origin` in the git checkout at `root`; None without git, a checkout or
    that remote."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def repository_source(root: Path = settings.REPO_ROOT) -> str | None:
    """This repository's source: DEPLOYMENTS_SOURCE, else the git remote `origin`, normalized;
    None when neither tells."""
    address = settings.current().repository_source or git_remote(root)
    return normalized(address) if address else None
