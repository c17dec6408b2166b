"""Square numbers concurrently, one Prefect task per number.

Run in-process: ``python -m flows.squares 2 4 6``.
"""

from __future__ import annotations

import sys

from prefect import flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFutureList, as_completed

from flows.reports import progress_checkpoints, squares_summary, squares_table

# Inputs at least this long get a progress bar in the UI, updated about PROGRESS_STEPS times.
PROGRESS_MIN_NUMBERS = 50
PROGRESS_STEPS = 20


def square_number(n: int) -> int:
    """The plain computation, kept free of Prefect so it is trivially testable."""
    return n * n


# No task timeout: sync tasks run in threads, where Prefect cannot interrupt them;
# the flow timeout bounds the whole run instead.
@task(retries=2, retry_delay_seconds=1)
def square(n: int) -> int:
    """Square one number."""
    return square_number(n)


@flow(retries=1, retry_delay_seconds=10, timeout_seconds=600, persist_result=True)
def compute_squares(numbers: list[int]) -> list[int]:
    """Square every number concurrently; the results keep the input order.

    Publishes a table of (number, square) and a summary (count, sum, min, max) as artifacts,
    and a progress bar while long inputs run.
    """
    futures = square.map(numbers)
    if len(numbers) >= PROGRESS_MIN_NUMBERS:
        _report_progress(futures)
    squares = futures.result()
    create_table_artifact(
        key="squares-table",
        table=squares_table(numbers, squares),
        description="Each number and its square",
    )
    create_markdown_artifact(
        key="squares-summary", markdown=squares_summary(squares), description="Summary"
    )
    return squares


def _report_progress(futures: PrefectFutureList) -> None:
    """Move a progress artifact forward as the square tasks complete."""
    artifact_id = create_progress_artifact(progress=0.0, description="Numbers squared")
    checkpoints = progress_checkpoints(len(futures), PROGRESS_STEPS)
    for done, _ in enumerate(as_completed(futures), start=1):
        if done in checkpoints:
            update_progress_artifact(artifact_id, progress=100 * done / len(futures))


def main(argv: list[str]) -> int:
    try:
        numbers = [int(arg) for arg in argv]
    except ValueError as exc:
        print(f"usage: python -m flows.squares N [N ...] (integers only): {exc}", file=sys.stderr)
        return 2
    print(compute_squares(numbers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
