"""The tag of the flow image: the project's version and a digest of everything the image is built
from, so it changes with any change to the code or its locked dependencies, committed or not, and
never is `latest`.

    python -m deployments.image_tag      # prints e.g. 0.1.0-3f2a9c1d8e7b

`python -m deployments plan/apply` export it as FLOW_IMAGE_TAG (settings.IMAGE_TAG_ENV), which
the build step and job variables of prefect.yaml's target docker use.
"""

from __future__ import annotations

import hashlib
import sys
import tomllib
from pathlib import Path

from deployments import settings


def _image_inputs(dockerignore: Path) -> tuple[str, ...]:
    """What the Dockerfile copies into the image: the names .dockerignore lets through (`!name`),
    the Dockerfile and .dockerignore among them."""
    lines = (line.strip() for line in dockerignore.read_text().splitlines())
    return tuple(line[1:].rstrip("/") for line in lines if line.startswith("!"))


IMAGE_INPUTS = _image_inputs(settings.REPO_ROOT / ".dockerignore")


def _files(root: Path) -> list[Path]:
    """The inputs present under `root` (a copy of the repository may hold only some)."""
    files = []
    for name in IMAGE_INPUTS:
        path = root / name
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [p for p in candidates if p.is_file() and "__pycache__" not in p.parts]
    return files


def image_tag(root: Path = settings.REPO_ROOT) -> str:
    digest = hashlib.sha256()
    for path in _files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    pyproject = root / "pyproject.toml"
    version = (
        tomllib.loads(pyproject.read_text())["project"]["version"] if pyproject.is_file() else "0"
    )
    return f"{version}-{digest.hexdigest()[:12]}"


if __name__ == "__main__":
    print(image_tag())
    sys.exit(0)
