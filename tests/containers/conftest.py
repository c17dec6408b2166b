"""The compose stack, brought up once per session by a real Docker engine, always taken down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.client.orchestration import SyncPrefectClient

from tests.containers.engine import ComposeProject, build_project_image, require_engine


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
