"""Square numbers concurrently, one Prefect task per number.

Run in-process: ``python -m flows.squares 2 4 6``.
"""

from __future__ import annotations

import sys

from prefect import flow, task


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
    """Square every number concurrently; the results keep the input order."""
    return square.map(numbers).result()


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
