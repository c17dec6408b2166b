"""A second host for the tests: a network namespace joined to this machine by a veth pair,
with addresses in a /30 of 10.231.0.0/16 that no interface here uses. Processes started in it
reach this machine only through the pair, so dropping the pair's packets inside the namespace
(iptables there) partitions them from a server this machine serves on `host_ip`. Made and removed
by the test, as root; nothing else on the machine is touched.

    with second_host() as host:
        process = host.popen([...], env)   # runs inside the namespace
        host.partition(); ...; host.heal()
"""

from __future__ import annotations

import ipaddress
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deployments import settings
from stack.local import LocalStack
from stack.processes import free_port, terminate_then_kill
from tests.live_stack import wait_until

NETWORK = ipaddress.ip_network("10.231.0.0/16")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class SecondHost:
    namespace: str
    host_ip: str  # this machine's end of the pair: serve here for the namespace to reach it
    peer_ip: str  # the namespace's end
    link: str  # this machine's end of the pair, the interface to capture on

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *command],
            check=True,
            capture_output=True,
            text=True,
        )

    def popen(self, command: list[str], env: dict[str, str], **options) -> subprocess.Popen:
        """`command` inside the namespace, in a session of its own."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, *command],
            env=env,
            start_new_session=True,
            **options,
        )

    def _rules(self, action: str) -> None:
        self.run("iptables", action, "INPUT", "-s", self.host_ip, "-j", "DROP")
        self.run("iptables", action, "OUTPUT", "-d", self.host_ip, "-j", "DROP")

    def partition(self) -> None:
        """Drop every packet between the namespace and this machine, both ways: connections
        neither fail nor close, they go silent, as across a broken network."""
        self._rules("-I")

    def heal(self) -> None:
        self._rules("-D")


def _free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    subnets = list(NETWORK.subnets(new_prefix=30))
    while True:
        subnet = random.choice(subnets)
        if not any(str(address) in used for address in subnet):
            return subnet


@contextmanager
def second_host() -> Iterator[SecondHost]:
    """The namespace and its pair, removed afterwards (with the namespace's end of the pair, the
    kernel removes this machine's end). Stop the processes started in it first."""
    tag = uuid.uuid4().hex[:8]
    namespace, outside, inside = f"pdhost-{tag}", f"vf{tag}", f"vn{tag}"
    subnet = _free_subnet()
    host_ip, peer_ip = (str(address) for address in subnet.hosts())
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("addr", "add", f"{host_ip}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        host = SecondHost(namespace, host_ip, peer_ip, outside)
        host.run("ip", "addr", "add", f"{peer_ip}/30", "dev", inside)
        host.run("ip", "link", "set", inside, "up")
        host.run("ip", "link", "set", "lo", "up")
        yield host
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)
        subprocess.run(["ip", "link", "del", outside], check=False, capture_output=True)


@contextmanager
def supervised_worker(
    host: SecondHost, stack: LocalStack, env: dict[str, str], log_path: Path, name: str
) -> Iterator[subprocess.Popen]:
    """`python -m stack.worker_supervisor` for `stack`'s pool, started in the namespace with
    `env` (tests/make_targets.py: other_machine_env) as the README starts one on another
    machine, its output in `log_path`; yielded once it polls the pool, stopped afterwards (the
    supervisor stops its worker and launcher, the worker ends its runs)."""
    env = {
        **env,
        "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
        settings.HEALTH_PORT_ENV: str(free_port()),
    }
    command = [sys.executable, "-m", "stack.worker_supervisor", *stack.worker_args(name)]
    since = datetime.now(UTC)
    with open(log_path, "ab") as log:
        process = host.popen(
            command,
            env,
            cwd=settings.REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: stack.worker_polled_since(since, name) or process.poll() is not None,
            120,
            "the second host's worker to poll the pool",
        )
        assert process.poll() is None, f"it exited: {log_path.read_text()[-3000:]}"
        yield process
    finally:
        terminate_then_kill(process, settings.STOP_TIMEOUT_S + 10)
