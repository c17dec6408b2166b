from __future__ import annotations

import pytest

from flows.reports import (
    escape_markdown,
    greeting_summary,
    progress_checkpoints,
    squares_summary,
    squares_table,
)


def test_table_pairs_each_number_with_its_square() -> None:
    assert squares_table([2, -3], [4, 9]) == [
        {"number": 2, "square": 4},
        {"number": -3, "square": 9},
    ]


def test_table_is_capped_for_long_inputs() -> None:
    numbers = list(range(1000))
    rows = squares_table(numbers, [n * n for n in numbers], limit=100)
    assert len(rows) == 100
    assert rows[-1] == {"number": 99, "square": 9801}


def test_summary_states_count_sum_min_max() -> None:
    summary = squares_summary([4, 16, 36])
    for row in ("| count | 3 |", "| sum | 56 |", "| min | 4 |", "| max | 36 |"):
        assert row in summary


def test_summary_of_nothing_says_so() -> None:
    assert "nothing to square" in squares_summary([])


def test_summary_says_when_the_table_is_truncated() -> None:
    assert "first 100 of 101" in squares_summary(list(range(101)), limit=100)
    assert "first" not in squares_summary(list(range(100)), limit=100)


@pytest.mark.parametrize(
    ("raw", "must_not_contain"),
    [
        ("<script>alert(1)</script>", "<script"),
        ("[click](http://example.com)", "[click]("),
        ("**bold**", "**bold**"),
    ],
)
def test_user_input_is_escaped_in_markdown(raw: str, must_not_contain: str) -> None:
    assert must_not_contain not in escape_markdown(raw)
    assert must_not_contain not in greeting_summary(raw, f"Hello, {raw}!")


def test_greeting_summary_names_the_person() -> None:
    assert "**Marvin**" in greeting_summary("Marvin", "Hello, Marvin!")


@pytest.mark.parametrize(("total", "steps"), [(1, 20), (7, 20), (50, 20), (1000, 20), (999, 7)])
def test_progress_checkpoints_are_bounded_and_end_at_total(total: int, steps: int) -> None:
    checkpoints = progress_checkpoints(total, steps)
    assert max(checkpoints) == total
    assert len(checkpoints) <= steps + 1
    assert all(1 <= c <= total for c in checkpoints)


def test_no_checkpoints_without_tasks() -> None:
    assert progress_checkpoints(0, 20) == set()
