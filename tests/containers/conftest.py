"""The compose stack, brought up once per session by a real Docker engine, always taken down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.client.orchestration import SyncPrefectClient

from tests.containers.engine import ComposeProject, docker, require_engine, session_image_tag
from tests.live_stack import unique


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    """The stack on an image built from this work tree for this session (engine.py says why),
    whose tag is removed at the end along with the stack."""
    require_engine()
    project = ComposeProject(
        tmp_path_factory.mktemp("containers"), image=session_image_tag(unique("test"))
    )
    try:
        project.compose("build", timeout=900)
        project.up()
        yield project
    finally:
        project.down()
        docker("image", "rm", project.image, check=False)


@pytest.fixture(scope="session")
def api(stack: ComposeProject) -> Iterator[SyncPrefectClient]:
    with stack.client() as client:
        yield client
