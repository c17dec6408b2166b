"""The compose stack, brought up once per session by a real Docker engine, always taken down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.client.orchestration import SyncPrefectClient

from tests.containers.engine import ComposeProject, running_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    with running_stack(tmp_path_factory.mktemp("containers")) as project:
        yield project


@pytest.fixture(scope="session")
def api(stack: ComposeProject) -> Iterator[SyncPrefectClient]:
    with stack.client() as client:
        yield client
