"""The compose stack, brought up once per session by a real Docker engine, always taken down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.client.orchestration import SyncPrefectClient

from tests.containers.engine import ComposeProject, docker, require_engine

IMAGE = "prefect-deployments:3.8.8"  # docker-compose.yml's image, built from the Dockerfile


def build_project_image(project: ComposeProject) -> None:
    """`docker compose build` of the current work tree; the image it replaces, if no container
    uses it any more, is removed (the vfs storage driver keeps a full copy of every image)."""
    before = docker("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).strip()
    project.compose("build", timeout=900)
    after = docker("image", "inspect", "--format", "{{.Id}}", IMAGE).strip()
    if before and before != after:
        docker("image", "rm", before, check=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    require_engine()
    project = ComposeProject(tmp_path_factory.mktemp("containers"))
    try:
        build_project_image(project)
        project.up()
        yield project
    finally:
        project.down()


@pytest.fixture(scope="session")
def api(stack: ComposeProject) -> Iterator[SyncPrefectClient]:
    with stack.client() as client:
        yield client
