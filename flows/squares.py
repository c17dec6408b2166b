"""Square numbers concurrently as Prefect tasks: one task per number, or one per chunk.

Run in-process: ``python -m flows.squares 2 4 6`` or ``python -m flows.squares --range 0 1000000``.

The tasks run on Prefect's default thread pool, or, when DASK_SCHEDULER_ADDRESS is set where the
flow starts (a deployment's job-variable env, or the shell), on that Dask cluster. Its workers must
import this repository (PYTHONPATH at a clone or the image's /opt/flows) with the same Prefect,
prefect-dask and distributed versions, and reach the Prefect API (PREFECT_API_URL, and
PREFECT_API_AUTH_STRING when the server has basic auth).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Annotated

from prefect import flow, get_client, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.futures import PrefectFutureList, as_completed
from prefect.task_runners import TaskRunner
from prefect.variables import Variable
from pydantic import Field

from deployments import settings
from flows.chunked_squares import ChunkedSquares
from flows.reports import progress_checkpoints, squares_summary, squares_table
from flows.squares_input import (
    DEFAULT_CHUNK_SIZE,
    SquaresInput,
    SquaresInputError,
    plan_squares,
)

# Declared in prefect.yaml: the chunk size of a range run that gives none (a Prefect variable),
# and the global concurrency limit every chunk task holds a slot of while it squares.
CHUNK_SIZE_VARIABLE = "squares_chunk_size"
CHUNK_LIMIT = "squares-chunks"
# A chunk's slot is leased for this long and renewed while the chunk squares. When its process is
# killed, the server frees the slot once the lease runs out: with Prefect's 300 s, every other
# range run waited five minutes. 60 s is the least the server accepts.
SLOT_LEASE_S = 60

# Inputs at least this long get a progress bar in the UI, updated about PROGRESS_STEPS times.
PROGRESS_MIN_TASKS = 50
PROGRESS_STEPS = 20


def square_number(n: int) -> int:
    """The plain computation, kept free of Prefect so it is trivially testable."""
    return n * n


def square_numbers(numbers: range | list[int]) -> list[int]:
    """Square a whole chunk: the plain loop that one chunk task runs."""
    return [n * n for n in numbers]


# NO_CACHE: squaring is cheaper than hashing a task's inputs and source for a cache key, which
# Prefect's default policy does for every task run. No task timeout: sync tasks run in threads,
# where Prefect cannot interrupt them; the flow timeout bounds the whole run instead.
@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def square(n: int) -> int:
    """Square one number."""
    return square_number(n)


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def square_chunk(
    numbers: range | list[int], concurrency_limit: str | None = None
) -> ChunkedSquares:
    """Square one chunk of numbers (a ChunkedSquares, which Prefect does not walk), holding a
    slot of the global concurrency limit `concurrency_limit` while it does, when one is given."""
    slot = concurrency(concurrency_limit, occupy=1, lease_duration=SLOT_LEASE_S)
    with slot if concurrency_limit else nullcontext():
        return ChunkedSquares([square_numbers(numbers)])


def server_chunk_limit() -> str | None:
    """CHUNK_LIMIT when the server holds it (prefect.yaml declares it), else None: without it
    the chunks take no slot, rather than each logging that the limit is missing."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(CHUNK_LIMIT)
        except ObjectNotFound:
            return None
    return CHUNK_LIMIT


def configured_chunk_size() -> int | None:
    """The chunk size the server's variable CHUNK_SIZE_VARIABLE sets, None when it has none."""
    value = Variable.get(CHUNK_SIZE_VARIABLE, default=None)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SquaresInputError(
            f"the variable {CHUNK_SIZE_VARIABLE!r} must be a whole number of at least 1, "
            f"not {value!r}"
        )
    return value


def chunk_task_runner() -> TaskRunner | None:
    """A DaskTaskRunner on the cluster at DASK_SCHEDULER_ADDRESS, or None (Prefect's default
    thread pool) when it is unset. Read when this module is imported, that is when a flow run
    loads it."""
    address = os.environ.get(settings.DASK_SCHEDULER_ADDRESS_ENV)
    if not address:
        return None
    import cloudpickle
    from prefect_dask import DaskTaskRunner

    # A deployment run loads this file as a script (module `squares`), a name Dask workers cannot
    # import: its tasks travel by value instead. flows.chunked_squares and the rest of the
    # repository travel by reference, so the workers need the repository on their PYTHONPATH.
    if __name__ != "flows.squares":
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return DaskTaskRunner(address=address)


# No flow-level retries: the tasks retry on their own, and a retry of the whole flow would only
# repeat a deterministic failure such as a bad combination of parameters.
@flow(timeout_seconds=600, persist_result=True, task_runner=chunk_task_runner())
def compute_squares(
    numbers: list[int] | None = None,
    start: int | None = None,
    stop: int | None = None,
    # The schema says `minimum: 1`, so the API refuses 0 before a run exists.
    chunk_size: Annotated[int, Field(ge=1)] | None = None,
) -> Sequence[int]:
    """Square `numbers`, or every number from `start` up to (not including) `stop`, concurrently;
    the results keep the input order.

    Give either `numbers` (one task per number, the tutorial's way) or a range, which runs one
    task per chunk of `chunk_size` numbers (50,000 unless given). `chunk_size` also chunks a
    `numbers` list. The API refuses parameters over 512 KB, about 60,000 inline numbers: use a
    range for more. Returns a list with one task per number, otherwise a ChunkedSquares (a
    sequence equal to the same list). Publishes a table of (number, square), a summary (count,
    sum, min, max) and, for 50 tasks or more, a progress bar.
    """
    default_size = configured_chunk_size() if chunk_size is None and numbers is None else None
    plan = plan_squares(numbers, start, stop, chunk_size, default_size or DEFAULT_CHUNK_SIZE)
    if plan.chunks is None:
        futures = square.map(plan.numbers)
    else:
        limit = server_chunk_limit()
        futures = PrefectFutureList(
            [square_chunk.submit(chunk, concurrency_limit=limit) for chunk in plan.chunks]
        )
    if len(futures) >= PROGRESS_MIN_TASKS:
        _report_progress(futures)
    results = futures.result()
    squares = results if plan.chunks is None else ChunkedSquares.joined(results)
    _publish_artifacts(plan, squares)
    return squares


def _publish_artifacts(plan: SquaresInput, squares: Sequence[int]) -> None:
    create_table_artifact(
        key="squares-table",
        table=squares_table(plan.numbers, squares),
        description="Each number and its square",
    )
    create_markdown_artifact(
        key="squares-summary", markdown=squares_summary(squares), description="Summary"
    )


def _report_progress(futures: PrefectFutureList) -> None:
    """Move a progress artifact forward as the tasks complete."""
    artifact_id = create_progress_artifact(progress=0.0, description="Numbers squared")
    checkpoints = progress_checkpoints(len(futures), PROGRESS_STEPS)
    for done, _ in enumerate(as_completed(futures), start=1):
        if done in checkpoints:
            update_progress_artifact(artifact_id, progress=100 * done / len(futures))


USAGE = "usage: python -m flows.squares N [N ...] | --range START STOP [CHUNK_SIZE]"


def parse_arguments(argv: list[str]) -> dict[str, object]:
    """compute_squares' parameters from the command line; ValueError names what is wrong."""
    if argv[:1] == ["--range"]:
        if len(argv) not in (3, 4):
            raise ValueError("--range takes START STOP and an optional CHUNK_SIZE")
        start, stop, *chunk = (int(arg) for arg in argv[1:])
        return {"start": start, "stop": stop, "chunk_size": chunk[0] if chunk else None}
    return {"numbers": [int(arg) for arg in argv]}


def main(argv: list[str]) -> int:
    try:
        parameters = parse_arguments(argv)
    except ValueError as exc:
        print(f"{USAGE} (integers only): {exc}", file=sys.stderr)
        return 2
    try:
        squares = compute_squares(**parameters)
    except SquaresInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(squares if "numbers" in parameters else f"{len(squares)} squares, sum {sum(squares)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
