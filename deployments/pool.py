"""Create or update a work pool, idempotently: the process pool, or the Docker pool of
prefect-docker.yaml.

    python -m deployments.pool [POOL_NAME]     # the process pool

Uses PREFECT_API_URL like every Prefect client. The name defaults to the repository's pool
(prefect.toml), the concurrency limit to POOL_CONCURRENCY_LIMIT (deployments/settings.py). A pool
of the same name but another type is reported and left untouched.
"""

from __future__ import annotations

import asyncio
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.workers.process import ProcessWorker

from deployments import settings

POOL_DESCRIPTIONS = {
    "process": "Runs this repository's flows as local processes (see README).",
    "docker": "Runs this repository's flows in containers of its image (see README).",
}


def _base_job_template(pool_type: str) -> dict:
    if pool_type == "docker":
        from prefect_docker.worker import DockerWorker  # imports docker-py: only when needed

        return DockerWorker.get_default_base_job_template()
    return ProcessWorker.get_default_base_job_template()


class PoolConflict(RuntimeError):
    """A pool of that name exists with another worker type."""


async def ensure_pool(
    name: str, concurrency_limit: int | None = None, pool_type: str = settings.WORK_POOL_TYPE
) -> str:
    """Create the pool, or bring an existing pool of that type in line. Returns 'created' or
    'updated'. Without a `concurrency_limit` an existing pool keeps the one it has."""
    if pool_type not in POOL_DESCRIPTIONS:
        raise PoolConflict(
            f"work pool {name!r}: type {pool_type!r} is not one of {sorted(POOL_DESCRIPTIONS)}"
        )
    description = POOL_DESCRIPTIONS[pool_type]
    async with get_client() as client:
        try:
            existing = await client.read_work_pool(name)
        except ObjectNotFound:
            try:
                await client.create_work_pool(
                    WorkPoolCreate(
                        name=name,
                        type=pool_type,
                        description=description,
                        base_job_template=_base_job_template(pool_type),
                        concurrency_limit=concurrency_limit,
                    )
                )
                return "created"
            except ObjectAlreadyExists:  # a worker that started meanwhile created it
                existing = await client.read_work_pool(name)
        if existing.type != pool_type:
            raise PoolConflict(
                f"work pool {name!r} exists with type {existing.type!r}, not {pool_type!r}; "
                f"nothing was changed. Choose another name (for the process pool: "
                f"{settings.POOL_NAME_ENV}=...), or delete that pool first."
            )
        limit = {} if concurrency_limit is None else {"concurrency_limit": concurrency_limit}
        await client.update_work_pool(name, WorkPoolUpdate(description=description, **limit))
        return "updated"


def main(argv: list[str]) -> int:
    try:
        config = settings.current()
    except settings.SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = argv[0] if argv else config.work_pool_name
    try:
        outcome = asyncio.run(ensure_pool(name, config.pool_concurrency_limit))
    except PoolConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"work pool {name!r} ({settings.WORK_POOL_TYPE}) {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
