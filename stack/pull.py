"""prefect.yaml's pull step: each flow-run process enters the flow code before Prefect imports
the flow.

    pull:
      - stack.pull.enter_flow_code: {}

The code directory is FLOW_CODE_DIR when the worker's environment sets it (the image sets
/opt/flows; a clone at another path sets its own), else the flow-run process's working
directory, which is the worker's (the `working_dir` job variable). The step changes into it and
returns it as `directory`, as Prefect's set_working_directory step does. A directory without
flows/ fails the step with a message that names the fix and changes nothing, before any flow code
is imported.

One Python step: it runs inside the flow-run process, with no shell to start, and Prefect opens
one pull-step events connection per step.
"""

from __future__ import annotations

import os
from pathlib import Path

from deployments.settings import FLOW_CODE_DIR_ENV


class FlowCodeNotFound(RuntimeError):
    """The code directory holds no flows/ package."""


def enter_flow_code() -> dict[str, str]:
    """Changes into the flow code's directory and returns it as {"directory": absolute path};
    raises FlowCodeNotFound."""
    configured = os.environ.get(FLOW_CODE_DIR_ENV) or None
    directory = Path(configured or os.getcwd()).resolve()
    if not (directory / "flows").is_dir():
        raise FlowCodeNotFound(
            f"no flows/ in [{directory}]: start the worker from the repository root, or set "
            f"{FLOW_CODE_DIR_ENV} in the worker environment to the repository path"
        )
    os.chdir(directory)
    return {"directory": str(directory)}
