"""free_port: the ports the tests and the bench give their servers."""

from __future__ import annotations

import socket

from stack.processes import FREE_PORT_RANGE_START, _ephemeral_start, free_port


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(FREE_PORT_RANGE_START <= port < _ephemeral_start() for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
