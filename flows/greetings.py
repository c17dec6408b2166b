"""Greet someone through a task whose log line shows in the flow run's logs.

Run in-process: ``python -m flows.greetings Marvin``.
"""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.reports import greeting_summary


def greeting(name: str) -> str:
    """The plain greeting text."""
    return f"Hello, {name}!"


# No task timeout: sync tasks run in threads; the flow timeout bounds the run.
@task(retries=2, retry_delay_seconds=1)
def greet(name: str) -> str:
    """Log the greeting to the run's logs and return it."""
    message = greeting(name)
    get_run_logger().info(message)
    return message


@flow(retries=1, retry_delay_seconds=10, timeout_seconds=120, persist_result=True)
def say_hello(name: str = "Prefect") -> str:
    """Say hello to `name`; the greeting appears in the run's logs and as an artifact."""
    message = greet(name)
    create_markdown_artifact(
        key="greeting", markdown=greeting_summary(name, message), description="The greeting"
    )
    return message


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python -m flows.greetings [NAME]", file=sys.stderr)
        return 2
    print(say_hello(*argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
