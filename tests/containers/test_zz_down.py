"""Last of the container tests (files run in name order): `docker compose down -v` removes
every container, network and volume of the session's project."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(1200)


def test_down_v_leaves_no_container_network_or_volume(stack) -> None:
    assert all(stack.leftovers().values()), "the stack has its containers, network and volume"
    stack.down()
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
