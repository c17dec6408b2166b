"""Serve say_hello on its 5-minute schedule without a work pool or worker, as the tutorial does.

    python -m deployments.serve

The process itself polls the server and runs the flow; stop it with Ctrl-C. The schedule comes
from prefect.yaml, so it is the same one the worker-based deployment uses.
"""

from __future__ import annotations

from deployments.spec import load_deployments
from flows.greetings import say_hello

DEPLOYMENT_NAME = "greeting-schedule"


def main() -> None:
    spec = next(s for s in load_deployments() if s.name == DEPLOYMENT_NAME)
    (schedule,) = spec.schedules
    say_hello.serve(
        name=spec.name,
        interval=schedule.interval,
        tags=spec.tags,
        description=spec.description,
        version=spec.version,
    )


if __name__ == "__main__":
    main()
