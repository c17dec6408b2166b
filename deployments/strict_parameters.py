"""Parameter schemas that refuse unknown parameters.

The parameter schema Prefect derives from a flow's signature allows extra keys, so the API
accepts `{"numbers": [1], "colour": "red"}` and the run then crashes in its process with only
"Process exited with status code: 1" to show. With `additionalProperties: false` the server
refuses it up front (409, naming 'colour') and no run is created. The deployments kind declares
every schema through `strict()` (apply sets it after `prefect deploy`), and so does the
registration script.
"""

from __future__ import annotations

from typing import Any


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "additionalProperties": False}
