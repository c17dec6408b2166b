"""What compute_squares was asked to square, checked and split into chunks: plain Python."""

from __future__ import annotations

from dataclasses import dataclass

# Numbers per chunk task when a range is given without a chunk size. Chosen with `make bench`
# (bench/measures.py, chunked_squares): larger chunks stop paying off once Prefect's per-task
# cost is small next to the squaring, and smaller ones let the progress bar move.
DEFAULT_CHUNK_SIZE = 50_000


class SquaresInputError(ValueError):
    """compute_squares got a combination of parameters it cannot square."""


@dataclass(frozen=True)
class SquaresInput:
    numbers: list[int] | range
    # None: one task per number; otherwise the slices that one task each squares.
    chunks: list[list[int] | range] | None


def plan_squares(
    numbers: list[int] | None,
    start: int | None,
    stop: int | None,
    chunk_size: int | None,
    default_chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SquaresInput:
    """Check the parameters and split the work: either `numbers` or `start`..`stop` (in chunks
    of `chunk_size`, else `default_chunk_size`)."""
    if chunk_size is not None and chunk_size < 1:
        raise SquaresInputError(f"chunk_size must be at least 1, not {chunk_size}")
    if numbers is not None:
        if start is not None or stop is not None:
            raise SquaresInputError("give either `numbers` or the range `start`..`stop`, not both")
        return SquaresInput(numbers, _chunks(numbers, chunk_size) if chunk_size else None)
    if start is None or stop is None:
        missing = (
            "`start` and `stop`"
            if start is None and stop is None
            else ("`start`" if start is None else "`stop`")
        )
        raise SquaresInputError(
            f"give `numbers`, or a range with `start` and `stop`: {missing} missing"
        )
    if stop < start:
        raise SquaresInputError(f"`stop` ({stop}) must not be less than `start` ({start})")
    span = range(start, stop)
    return SquaresInput(span, _chunks(span, chunk_size or default_chunk_size))


def _chunks(numbers: list[int] | range, size: int) -> list[list[int] | range]:
    return [numbers[i : i + size] for i in range(0, len(numbers), size)]
