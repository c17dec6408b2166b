from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Flows run in-process against Prefect's temporary test server."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
