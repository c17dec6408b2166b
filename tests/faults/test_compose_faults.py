"""Fault-matrix cells on the compose stack (tests/faults/matrix.py): docker-compose.yml on a real
Docker engine (tests/containers/engine.py), with the product's burst, and `docker kill` of one
service's container at a random moment of it: postgres, prefect-server and worker in the `single`
profile; prefect-services and lb (nginx) in the `ha` profile, whose API replicas and Redis
tests/containers/test_ha.py kills already. Docker does not restart a container that `docker kill`
stopped (it restarts one that crashed), so the recovery is the README's `docker compose up -d
--wait`.

The cells of a profile share its stack, one after the other (xdist group), each leaving it healthy
for the next: building and starting a stack on this machine's Docker takes minutes. Its worker
writes execution records into a directory of this machine (FLOW_RUN_RECORD_DIR, mounted).
`docker compose down -v` must then leave no container, network or volume of the project."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers.engine import ComposeProject, docker, running_stack
from tests.faults.harness import cell_run
from tests.faults.matrix import CELLS

pytestmark = pytest.mark.timeout(1800)

RECORDS_IN_CONTAINER = "/run/flow-run-records"


class ComposeTarget:
    """A running compose project as the matrix drives it (harness.Target)."""

    def __init__(self, project: ComposeProject, records: Path) -> None:
        self.project = project
        self.records = records

    def up(self) -> None:
        """`docker compose up -d --wait`: every service back, healthy (a no-op when all run)."""
        self.project.up()

    def client(self):
        return self.project.client()

    def plan(self) -> subprocess.CompletedProcess[str]:
        """`python -m deployments plan --target prod` as the deploy job applied it: in the image,
        against the stack's server, with the stack's settings (prod's server variables are the
        container's own)."""
        plan = (
            "PROD_PREFECT_API_URL=$PREFECT_API_URL"
            " PROD_PREFECT_API_AUTH_STRING=$PREFECT_API_AUTH_STRING"
            " exec python -m deployments plan --target prod"
        )
        return self.project.compose("exec", "-T", "worker", "sh", "-c", plan, check=False)

    def finish(self) -> list[str]:
        """The stack stays up for the next cell: every running service must be healthy."""
        unhealthy = [
            f"{row['Service']} {row.get('State')} {row.get('Health') or ''}".strip()
            for rows in self.project.services().values()
            for row in rows
            if row.get("State") == "running" and row.get("Health") not in ("", None, "healthy")
        ]
        return [f"after the recovery not healthy: {', '.join(unhealthy)}"] if unhealthy else []

    def diagnostics(self) -> str:
        return self.project.diagnostics()

    def kill(self, service: str) -> str:
        """`docker kill` of the service's container; how `docker compose ps` then shows it."""
        (container,) = self.project.container_ids(service)
        docker("kill", container)
        row = next(r for r in self.project.services()[service] if r["ID"] in container)
        assert row["State"] == "exited", row
        return f"docker compose ps: {service} exited ({row['ExitCode']})"


def compose_target(tmp_path_factory, session: str, **env: str) -> Iterator[ComposeTarget]:
    records = tmp_path_factory.mktemp(f"{session}-records")
    records.chmod(0o777)  # the image's user (uid 10001) writes there
    worker = {
        "environment": {"FLOW_RUN_RECORD_DIR": RECORDS_IN_CONTAINER},
        "volumes": [f"{records}:{RECORDS_IN_CONTAINER}"],
    }
    tmp = tmp_path_factory.mktemp(session)
    with running_stack(tmp, services={"worker": worker}, **env) as project:
        yield ComposeTarget(project, records)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Iterator[ComposeTarget]:
    yield from compose_target(tmp_path_factory, "faults")


@pytest.fixture(scope="module")
def ha(tmp_path_factory) -> Iterator[ComposeTarget]:
    yield from compose_target(tmp_path_factory, "faults-ha", COMPOSE_PROFILES="ha")


def kill_cell(target: ComposeTarget, key: str, service: str) -> None:
    with cell_run(target, CELLS[key]) as run:
        run.wait_for_fault_moment()
        run.user_sees = target.kill(service)
        run.injected()
        target.up()


@pytest.mark.xdist_group("compose-single")
@pytest.mark.parametrize("service", ["postgres", "prefect-server", "worker"])
def test_killed_container(single: ComposeTarget, service: str) -> None:
    kill_cell(single, f"compose-{service}", service)


@pytest.mark.xdist_group("compose-ha")
@pytest.mark.parametrize("service", ["prefect-services", "lb"])
def test_killed_ha_container(ha: ComposeTarget, service: str) -> None:
    kill_cell(ha, f"compose-ha-{service}", service)
