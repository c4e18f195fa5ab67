"""Byte ranges of a package served to a vehicle, kept as a short list of merged intervals.

Downloads are resumed and their progress is recorded from several requests whose records can
arrive in any order (a cut response is closed after its resumption has started), so the
evidence is a union of ranges rather than a single high-water mark.
"""

from __future__ import annotations

# A vehicle asking for many scattered ranges cannot grow the record without bound: past this
# many disjoint intervals, new disjoint ones are not kept (the vehicle then fetches again).
MAX_INTERVALS = 32

Intervals = list[list[int]]


def add_range(intervals: Intervals, start: int, end: int) -> Intervals:
    """`intervals` with [start, end) added, merged and sorted; touching intervals join."""
    if end <= start:
        return [list(interval) for interval in intervals]
    merged: Intervals = []
    for low, high in sorted([*intervals, [start, end]]):
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    if len(merged) > MAX_INTERVALS:
        return [list(interval) for interval in intervals]
    return merged


def covers(intervals: Intervals, size: int) -> bool:
    """True when the intervals cover every byte of [0, size)."""
    return any(low <= 0 and high >= size for low, high in intervals)
