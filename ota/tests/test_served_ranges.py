from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ota.served_ranges import MAX_INTERVALS, add_range, covers


def test_touching_and_overlapping_ranges_merge() -> None:
    intervals = add_range([], 10, 20)
    intervals = add_range(intervals, 0, 10)
    intervals = add_range(intervals, 15, 30)
    assert intervals == [[0, 30]]
    assert covers(intervals, 30)
    assert not covers(intervals, 31)


def test_a_gap_is_not_covered_and_an_empty_range_changes_nothing() -> None:
    intervals = add_range(add_range([], 0, 10), 11, 20)
    assert intervals == [[0, 10], [11, 20]]
    assert not covers(intervals, 20)
    assert add_range(intervals, 5, 5) == intervals
    assert not covers([], 1)


def test_scattered_ranges_past_the_limit_are_not_kept() -> None:
    intervals: list[list[int]] = []
    for i in range(MAX_INTERVALS):
        intervals = add_range(intervals, 2 * i, 2 * i + 1)
    assert len(intervals) == MAX_INTERVALS
    assert add_range(intervals, 1000, 1001) == intervals
    # A range that joins existing ones is still kept.
    assert len(add_range(intervals, 0, 2 * MAX_INTERVALS)) == 1


@given(st.permutations(list(range(10))), st.integers(1, 50))
def test_any_order_of_adjacent_pieces_covers_the_whole(order: list[int], piece: int) -> None:
    intervals: list[list[int]] = []
    for index in order:
        intervals = add_range(intervals, index * piece, (index + 1) * piece)
    assert intervals == [[0, 10 * piece]]
    assert covers(intervals, 10 * piece)
