"""Create or update the process work pool, idempotently.

    python -m deployments.pool [POOL_NAME]

Uses PREFECT_API_URL like every Prefect client. A pool of the same name but another type is
reported and left untouched.
"""

from __future__ import annotations

import asyncio
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from deployments import settings

POOL_DESCRIPTION = "Runs this repository's flows as local processes (see README)."


class PoolConflict(RuntimeError):
    """A pool of that name exists with another worker type."""


async def ensure_pool(
    name: str = settings.WORK_POOL_NAME,
    concurrency_limit: int | None = settings.POOL_CONCURRENCY_LIMIT,
) -> str:
    """Create the pool, or bring an existing process pool's settings in line. Returns 'created'
    or 'updated'. Without a `concurrency_limit` an existing pool keeps the one it has."""
    async with get_client() as client:
        try:
            existing = await client.read_work_pool(name)
        except ObjectNotFound:
            await client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type=settings.WORK_POOL_TYPE,
                    description=POOL_DESCRIPTION,
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    concurrency_limit=concurrency_limit,
                )
            )
            return "created"
        if existing.type != settings.WORK_POOL_TYPE:
            raise PoolConflict(
                f"work pool {name!r} exists with type {existing.type!r}, not "
                f"{settings.WORK_POOL_TYPE!r}; nothing was changed. Choose another name with "
                f"{settings.POOL_NAME_ENV}=..., or delete that pool first."
            )
        limit = {} if concurrency_limit is None else {"concurrency_limit": concurrency_limit}
        await client.update_work_pool(name, WorkPoolUpdate(description=POOL_DESCRIPTION, **limit))
        return "updated"


def main(argv: list[str]) -> int:
    name = argv[0] if argv else settings.WORK_POOL_NAME
    try:
        outcome = asyncio.run(ensure_pool(name))
    except PoolConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"work pool {name!r} ({settings.WORK_POOL_TYPE}) {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
