"""Binary deltas between firmware images (used inside OTAP entries)."""

from __future__ import annotations

import bz2
import enum

import zstandard


class DeltaError(Exception):
    """A delta could not be made or applied."""


class DeltaAlgorithm(enum.IntEnum):
    """Delta algorithm code as stored in an OTAP entry (one byte)."""

    NONE = 0
    ZSTD_PATCH_FROM = 1
    BSDIFF4 = 2

    @property
    def label(self) -> str:
        return {0: "none", 1: "zstd-patch-from", 2: "bsdiff4"}[int(self)]

    @classmethod
    def from_label(cls, label: str) -> DeltaAlgorithm:
        for member in cls:
            if member.label == label:
                return member
        raise ValueError(f"unknown delta algorithm {label!r}")


def _window_log(base_len: int, target_len: int) -> int:
    # The window must reach from the end of the target back to the start of the base, as
    # zstd's --patch-from does; clamp to zstd's limits.
    needed = max(base_len + target_len, 1 << 10)
    return min(max(needed.bit_length(), zstandard.WINDOWLOG_MIN), 31)


# Search tables as large as the window (capped to bound memory) let low levels find matches
# anywhere in the base image; with the level defaults zstd barely uses the base at all
# (measured: 2.85 MB vs 57 kB for an 8 MB image at level 3, see bench/results/packages.md).
MAX_TABLE_LOG = 26


def _zstd_patch_params(
    base_len: int, target_len: int, level: int
) -> zstandard.ZstdCompressionParameters:
    window_log = _window_log(base_len, target_len)
    defaults = zstandard.ZstdCompressionParameters.from_level(level)
    table_log = min(window_log, MAX_TABLE_LOG)
    return zstandard.ZstdCompressionParameters.from_level(
        level,
        window_log=window_log,
        hash_log=max(defaults.hash_log, table_log),
        chain_log=max(defaults.chain_log, table_log),
        enable_ldm=True,
        write_content_size=True,
        write_checksum=False,
    )


def make_delta(algorithm: DeltaAlgorithm, base: bytes, target: bytes, *, level: int = 3) -> bytes:
    """Return the delta that turns base into target."""
    try:
        if algorithm == DeltaAlgorithm.ZSTD_PATCH_FROM:
            prefix = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            cctx = zstandard.ZstdCompressor(
                dict_data=prefix,
                compression_params=_zstd_patch_params(len(base), len(target), level),
            )
            return cctx.compress(target)
        if algorithm == DeltaAlgorithm.BSDIFF4:
            import bsdiff4  # only needed for this algorithm; the verifier runs without it

            return bsdiff4.diff(base, target)
    except (zstandard.ZstdError, ValueError, MemoryError) as exc:
        raise DeltaError(str(exc)) from None
    raise DeltaError(f"cannot make a delta with {algorithm!r}")


BSDIFF4_MAX_CONTROL_BYTES = 64 * 1024**2


def _bounded_bz2(data: bytes, limit: int, block: str) -> bytes:
    """Decompress one bzip2 stream into at most `limit` bytes, refusing more or trailing data."""
    decompressor = bz2.BZ2Decompressor()
    out = decompressor.decompress(data, max_length=limit + 1)
    if len(out) > limit:
        raise DeltaError(f"bsdiff4 {block} block decodes to more than {limit} bytes")
    if not decompressor.eof:
        raise DeltaError(f"bsdiff4 {block} block is cut short")
    if decompressor.unused_data:
        raise DeltaError(f"bsdiff4 {block} block has trailing data")
    return out


def _bsdiff4_blocks(delta: bytes, new_size: int) -> tuple[bytes, bytes, bytes]:
    """The three blocks of a BSDIFF40 patch, each decoded under a bound set by the new size.

    bsdiff4's own reader decompresses them without a limit, so a small patch could expand
    without bound before its declared size is ever compared with the output.
    """
    control_size = int.from_bytes(delta[8:16], "little")
    diff_size = int.from_bytes(delta[16:24], "little")
    if 32 + control_size + diff_size > len(delta):
        raise DeltaError("bsdiff4 block lengths run past the patch")
    control_end = 32 + control_size
    diff_end = control_end + diff_size
    # A control triple is 24 bytes and covers at least one output byte, except the last two
    # bsdiff may write; no real patch comes near the absolute cap.
    control_limit = min(24 * (new_size + 2), BSDIFF4_MAX_CONTROL_BYTES)
    control = _bounded_bz2(delta[32:control_end], control_limit, "control")
    if len(control) % 24:
        raise DeltaError("bsdiff4 control block is not whole triples")
    diff = _bounded_bz2(delta[control_end:diff_end], new_size, "diff")
    extra = _bounded_bz2(delta[diff_end:], new_size, "extra")
    return control, diff, extra


def apply_delta(algorithm: DeltaAlgorithm, base: bytes, delta: bytes, *, max_size: int) -> bytes:
    """Apply a delta to base; never returns more than max_size bytes."""
    try:
        if algorithm == DeltaAlgorithm.ZSTD_PATCH_FROM:
            prefix = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            params = zstandard.get_frame_parameters(delta)
            if params.content_size > max_size:
                raise DeltaError(f"delta declares {params.content_size} bytes, limit {max_size}")
            dctx = zstandard.ZstdDecompressor(dict_data=prefix, max_window_size=1 << 31)
            return dctx.decompress(delta, max_output_size=max_size)
        if algorithm == DeltaAlgorithm.BSDIFF4:
            # bsdiff4 declares the new size in its 32-byte header; check before allocating.
            if len(delta) < 32 or delta[:8] != b"BSDIFF40":
                raise DeltaError("not a bsdiff4 patch")
            new_size = int.from_bytes(delta[24:32], "little")
            if new_size > max_size:
                raise DeltaError(f"delta declares {new_size} bytes, limit {max_size}")
            from bsdiff4.core import patch

            control, diff, extra = _bsdiff4_blocks(delta, new_size)
            return patch(base, new_size, control, diff, extra)
    except DeltaError:
        raise
    except ImportError:
        raise DeltaError("bsdiff4 is not installed (pip install bsdiff4)") from None
    except (zstandard.ZstdError, ValueError, MemoryError, RuntimeError) as exc:
        raise DeltaError(str(exc) or type(exc).__name__) from None
    raise DeltaError(f"cannot apply a delta with {algorithm!r}")
