"""Refuse unknown parameters at the API: `python -m deployments.strict_parameters`.

The parameter schema Prefect derives from a flow's signature allows extra keys, so the API
accepts `{"numbers": [1], "colour": "red"}` and the run then crashes in its process with only
"Process exited with status code: 1" to show. With `additionalProperties: false` the server
refuses it up front (409, naming 'colour') and no run is created. `make up` and the compose
`deploy` service run this right after `prefect deploy --all`; the registration script builds
its schemas through `strict()` directly.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate

from deployments import settings
from deployments.spec import load_deployments


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "additionalProperties": False}


async def apply_strict_parameters(path: Path = settings.PREFECT_YAML) -> list[str]:
    """Make every prefect.yaml deployment's schema strict; return the names it changed."""
    changed = []
    async with get_client() as client:
        for spec in load_deployments(path):
            flow = spec.load_flow()
            deployment = await client.read_deployment_by_name(f"{flow.name}/{spec.name}")
            schema = deployment.parameter_openapi_schema or {}
            if schema.get("additionalProperties") is False:
                continue
            await client.update_deployment(
                deployment.id, DeploymentUpdate(parameter_openapi_schema=strict(schema))
            )
            changed.append(spec.name)
    return changed


def main() -> int:
    try:
        changed = asyncio.run(apply_strict_parameters())
    except Exception as exc:  # the API's answer, e.g. a deployment that was not deployed
        print(f"error: could not make the parameter schemas strict: {exc}", file=sys.stderr)
        return 1
    print(f"unknown parameters now refused by: {', '.join(changed) or 'all (unchanged)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
