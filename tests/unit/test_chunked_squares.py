import pickle

import pytest

from flows.chunked_squares import ChunkedSquares
from flows.squares import square_chunk


def _joined() -> ChunkedSquares:
    return ChunkedSquares.joined(
        [ChunkedSquares([[0, 1, 4]]), ChunkedSquares([]), ChunkedSquares([[9], [16, 25]])]
    )


def test_reads_as_one_sequence_in_order() -> None:
    squares = _joined()
    assert list(squares) == [0, 1, 4, 9, 16, 25]
    assert len(squares) == 6 and sum(squares) == 55 and max(squares) == 25


def test_equals_lists_with_the_same_values_only() -> None:
    assert _joined() == [0, 1, 4, 9, 16, 25]
    assert [0, 1, 4, 9, 16, 25] == _joined()  # noqa: SIM300 (the list's side of ==)
    assert _joined() != [0, 1, 4]
    assert _joined() != [0, 1, 4, 9, 16, 36]
    assert _joined() != "014"
    assert ChunkedSquares() == []


@pytest.mark.parametrize(("index", "expected"), [(0, 0), (3, 9), (5, 25), (-1, 25), (-6, 0)])
def test_indexes_across_chunks(index: int, expected: int) -> None:
    assert _joined()[index] == expected


def test_slices_across_chunks() -> None:
    assert _joined()[2:5] == [4, 9, 16]
    assert _joined()[::-2] == [25, 9, 1]


@pytest.mark.parametrize("index", [6, -7])
def test_an_index_out_of_range_raises_index_error(index: int) -> None:
    with pytest.raises(IndexError, match="out of range"):
        _joined()[index]


def test_survives_pickling_as_persisted_results_do() -> None:
    assert pickle.loads(pickle.dumps(_joined())) == [0, 1, 4, 9, 16, 25]


def test_repr_shows_the_first_squares_and_the_count() -> None:
    assert repr(ChunkedSquares([range(3)])) == "ChunkedSquares([0, 1, 2])"
    assert repr(ChunkedSquares([range(7)])) == "ChunkedSquares([0, 1, 2, 3, 4, … 7 squares])"


def test_square_chunk_returns_a_chunked_sequence() -> None:
    result = square_chunk.fn(range(-2, 3))
    assert isinstance(result, ChunkedSquares) and result == [4, 1, 0, 1, 4]
