from __future__ import annotations

import pytest

from flows.squares_input import DEFAULT_CHUNK_SIZE, SquaresInputError, plan_squares


def test_numbers_alone_run_one_task_each() -> None:
    plan = plan_squares([3, 1, 2], None, None, None)
    assert plan.numbers == [3, 1, 2]
    assert plan.chunks is None


def test_numbers_with_a_chunk_size_are_split_in_order() -> None:
    plan = plan_squares([5, 4, 3, 2, 1], None, None, 2)
    assert plan.chunks == [[5, 4], [3, 2], [1]]


def test_a_range_defaults_to_chunks_of_the_default_size() -> None:
    plan = plan_squares(None, 0, 2 * DEFAULT_CHUNK_SIZE + 1, None)
    assert [len(chunk) for chunk in plan.chunks] == [DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE, 1]
    assert [n for chunk in plan.chunks for n in chunk] == list(plan.numbers)


def test_a_range_excludes_stop_and_may_be_negative_or_empty() -> None:
    assert list(plan_squares(None, -2, 2, 3).numbers) == [-2, -1, 0, 1]
    empty = plan_squares(None, 5, 5, None)
    assert list(empty.numbers) == [] and empty.chunks == []


@pytest.mark.parametrize(
    ("numbers", "start", "stop", "chunk_size", "named"),
    [
        ([1], 0, 2, None, "either `numbers` or the range `start`..`stop`, not both"),
        ([1], None, 2, None, "not both"),
        (None, None, None, None, "`start` and `stop` missing"),
        (None, 1, None, None, "`stop` missing"),
        (None, None, 5, None, "`start` missing"),
        (None, 5, 1, None, "`stop` (1) must not be less than `start` (5)"),
        ([1], None, None, 0, "chunk_size must be at least 1, not 0"),
    ],
)
def test_bad_combinations_are_named(numbers, start, stop, chunk_size, named) -> None:
    with pytest.raises(SquaresInputError) as refused:
        plan_squares(numbers, start, stop, chunk_size)
    assert named in str(refused.value)
