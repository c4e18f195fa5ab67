from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.deltas import DeltaAlgorithm, DeltaError, apply_delta, make_delta

ALGORITHMS = [DeltaAlgorithm.ZSTD_PATCH_FROM, DeltaAlgorithm.BSDIFF4]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=30, deadline=None)
@given(
    base=st.binary(max_size=3000),
    edits=st.lists(st.tuples(st.integers(0, 3000), st.binary(max_size=20)), max_size=5),
)
def test_delta_round_trips(
    algorithm: DeltaAlgorithm, base: bytes, edits: list[tuple[int, bytes]]
) -> None:
    target = bytearray(base)
    for position, data in edits:
        target[position:position] = data
    delta = make_delta(algorithm, base, bytes(target))
    assert apply_delta(algorithm, base, delta, max_size=len(target)) == bytes(target)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_delta_larger_than_the_declared_limit_is_refused(algorithm: DeltaAlgorithm) -> None:
    delta = make_delta(algorithm, b"a" * 100, b"a" * 5000)
    with pytest.raises(DeltaError, match="limit 4999"):
        apply_delta(algorithm, b"a" * 100, delta, max_size=4999)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=100, deadline=None)
@given(garbage=st.binary(max_size=200))
def test_garbage_delta_raises_delta_error_only(algorithm: DeltaAlgorithm, garbage: bytes) -> None:
    with pytest.raises(DeltaError):
        apply_delta(algorithm, b"base image", garbage, max_size=1000)
