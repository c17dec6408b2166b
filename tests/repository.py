"""A copy of the repository as the Dockerfile copies it into the image, for tests that run the
repository's commands in another directory (a user's clone with an edit, the image's /opt/flows)."""

from __future__ import annotations

import shutil
from pathlib import Path

from deployments import settings
from deployments.image_tag import IMAGE_INPUTS


def image_copy(target: Path) -> Path:
    """`target`, created, holding what the image holds (.dockerignore too, to build from it)."""
    target.mkdir(parents=True)
    for name in IMAGE_INPUTS:
        source = settings.REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / name)
    return target
