"""What `make up` runs on either side of `prefect deploy --all`, one Python process per side.

    python -m deployments.provision before-deploy [POOL_NAME]   # check prefect.yaml, then the pool
    python -m deployments.provision after-deploy                # strict schemas, automations

The same steps as deployments.check, deployments.pool, deployments.strict_parameters and
deployments.automations (which the compose `deploy` service runs one by one), in two processes
instead of four: every start of Python that imports Prefect costs about 3 s of CPU.
"""

from __future__ import annotations

import asyncio
import sys

from deployments import settings
from deployments.automations import apply_automations
from deployments.check import check_spec
from deployments.pool import PoolConflict, ensure_pool
from deployments.spec import SpecError
from deployments.strict_parameters import apply_strict_parameters

USAGE = "usage: python -m deployments.provision before-deploy [POOL_NAME] | after-deploy"


def before_deploy(pool_name: str) -> int:
    """prefect.yaml first, so a broken file stops here before the server changes."""
    try:
        names = check_spec()
        outcome = asyncio.run(ensure_pool(pool_name))
    except (SpecError, PoolConflict) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{settings.PREFECT_YAML.name} OK: {', '.join(names)}; work pool {pool_name!r} {outcome}")
    return 0


async def _after_deploy() -> tuple[list[str], dict]:
    return await apply_strict_parameters(), await apply_automations()


def after_deploy() -> int:
    try:
        strict, automations = asyncio.run(_after_deploy())
    except Exception as exc:  # the API's answer, e.g. a deployment that was not deployed
        print(f"error: could not finish the deployments: {exc}", file=sys.stderr)
        return 1
    print(f"unknown parameters now refused by: {', '.join(strict) or 'all (unchanged)'}")
    print(f"automations applied: {', '.join(automations)}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["before-deploy"] and len(argv) <= 2:
        return before_deploy(argv[1] if len(argv) == 2 else settings.WORK_POOL_NAME)
    if argv == ["after-deploy"]:
        return after_deploy()
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
