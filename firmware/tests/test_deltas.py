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


@pytest.mark.parametrize("block", ["control", "diff", "extra"])
def test_bsdiff4_block_expanding_past_the_declared_size_is_refused_without_expanding(
    block: str,
) -> None:
    import bz2
    import tracemalloc

    new_size = 100
    blocks = {"control": bz2.compress(b""), "diff": bz2.compress(b""), "extra": bz2.compress(b"")}
    # 64 MiB of zeros compress to about 50 bytes: a bomb unless decoding stops at the bound.
    blocks[block] = bz2.compress(bytes(64 * 1024**2))
    header = b"BSDIFF40" + b"".join(
        n.to_bytes(8, "little") for n in (len(blocks["control"]), len(blocks["diff"]), new_size)
    )
    delta = header + blocks["control"] + blocks["diff"] + blocks["extra"]
    tracemalloc.start()
    try:
        with pytest.raises(DeltaError, match=f"{block} block decodes to more than"):
            apply_delta(DeltaAlgorithm.BSDIFF4, b"base", delta, max_size=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024**2


def test_bsdiff4_block_with_trailing_data_is_refused() -> None:
    import bz2

    target = b"new image"
    delta = make_delta(DeltaAlgorithm.BSDIFF4, b"old image", target)
    with pytest.raises(DeltaError, match="extra block has trailing data"):
        apply_delta(DeltaAlgorithm.BSDIFF4, b"old image", delta + bz2.compress(b"x"), max_size=100)


def test_bsdiff4_round_trips_a_small_edit_with_more_triples_than_its_size_allows_per_byte() -> None:
    # Three control triples (72 bytes) for a 47-byte image: more than one per 24 output bytes.
    base = bytes.fromhex("a5c9dff43cab9d393d157db668f688690374425687dc768f8a497d9c2de8")
    target = bytes.fromhex(
        "a5c9dff4479f31a55add9ee0db79625e8ee0d2283cab9d393d157db668f6eb88690374425687dc768f8a49"
        "7d9c2de8"
    )
    delta = make_delta(DeltaAlgorithm.BSDIFF4, base, target)
    assert apply_delta(DeltaAlgorithm.BSDIFF4, base, delta, max_size=len(target)) == target
