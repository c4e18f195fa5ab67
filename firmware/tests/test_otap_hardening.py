"""What an independent reader of docs/PACKAGE_FORMAT.md found the reference reader let through.

Each hostile package here is validly signed (the tests hold the signing key), so only the
format rules stand between it and the vehicle.
"""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from pathlib import Path

import pytest
import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import otap
from firmware.deltas import DeltaAlgorithm, make_delta
from firmware.tests.otap_helpers import (
    NOW,
    KeyRing,
    assemble,
    build_bytes,
    raw_entry,
    write_images,
)

IMAGE = b"engine map " * 300


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing(tmp_path_factory.mktemp("keys") / "signing")


def _zstd_entry(data: bytes, image: bytes, **fields: object) -> tuple[dict[str, object], bytes]:
    return raw_entry(
        data, image_size=len(image), image_sha256=hashlib.sha256(image).digest(), **fields
    )


def _extract(data: bytes, dest: Path, keys: KeyRing, **options: object) -> dict[str, Path]:
    return otap.extract_package(io.BytesIO(data), dest, trust=keys.trust, now=NOW, **options)


# --- text fields: full matches only --------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["ecu_id", "current_version", "target_version", "delta_base_version"]
)
def test_reader_refuses_an_entry_text_field_ending_in_a_newline(keys: KeyRing, field: str) -> None:
    values = {"ecu_id": b"ECU_001", "current_version": b"1.2.2", "target_version": b"2.0.0"}
    values[field] = values.get(field, b"1.0.0") + b"\n"
    entry = _zstd_entry(IMAGE, IMAGE, compression=otap.COMPRESSION_NONE, **values)
    with pytest.raises(otap.OtapError, match=field):
        otap.parse_package(io.BytesIO(assemble(keys, [entry])))


def test_reader_refuses_a_gateway_id_ending_in_a_newline(keys: KeyRing) -> None:
    entry = _zstd_entry(IMAGE, IMAGE, compression=otap.COMPRESSION_NONE)
    with pytest.raises(otap.OtapError, match="zonal_gateway_id"):
        otap.parse_package(io.BytesIO(assemble(keys, [entry], gateway=b"ZGW_FRONT\n")))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("current_version", "1.2.2\n"),
        ("target_version", "2.0.0\n"),
        ("ecu_id", "ECU_001\n"),
    ],
)
def test_writer_refuses_a_text_field_ending_in_a_newline(
    keys: KeyRing, tmp_path: Path, field: str, value: str
) -> None:
    (tmp_path / "i.bin").write_bytes(IMAGE)
    fields = {"ecu_id": "ECU_001", "target_version": "2.0.0", field: value}
    with pytest.raises(otap.OtapError, match=field):
        build_bytes(keys, [otap.EntrySource(image_path=tmp_path / "i.bin", **fields)])
    with pytest.raises(otap.OtapError, match="zonal_gateway_id"):
        build_bytes(keys, write_images(tmp_path, [IMAGE]), gateway="ZGW_FRONT\n")


VERSION_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+-"


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=70))
def test_version_pattern_is_exactly_the_documented_charset_and_length(text: str) -> None:
    documented = len(text) <= 64 and all(c in VERSION_CHARS for c in text)
    assert bool(otap.VERSION_RE.fullmatch(text)) == documented
    assert bool(otap.VERSION_RE.match(text)) == documented


# --- full images: bounded decoding, all frames, nothing after them ------------------------


def test_zstd_bomb_stops_at_image_size_with_bounded_memory(keys: KeyRing, tmp_path: Path) -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(64 << 20))
    claimed = b"\0" * 100
    data = assemble(keys, [_zstd_entry(bomb, claimed)])
    assert len(bomb) < 4096
    tracemalloc.start()
    try:
        with pytest.raises(otap.OtapError, match="larger than image_size"):
            _extract(data, tmp_path / "out", keys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The old reader decoded a whole 1 MiB input chunk at once: 64 MiB for this entry.
    assert peak < 4 << 20, f"peak {peak} bytes"
    assert not list((tmp_path / "out").iterdir())


def test_full_image_of_several_frames_is_decoded_to_the_end(keys: KeyRing, tmp_path: Path) -> None:
    first, second = IMAGE, b"calibration " * 500
    frames = zstandard.ZstdCompressor().compress(first) + zstandard.ZstdCompressor().compress(
        second
    )
    data = assemble(keys, [_zstd_entry(frames, first + second)])
    _extract(data, tmp_path, keys)
    assert (tmp_path / "ECU_001.bin").read_bytes() == first + second


@pytest.mark.parametrize(
    ("trailer", "reason"),
    [
        (b"\0\0\0\0", "not a zstd frame"),
        (b"junk", "not a zstd frame"),
        # A skippable frame (RFC 8878 3.1.2) could smuggle unsigned-looking payloads past a
        # lenient decoder; the format allows Zstandard frames only.
        ((0x184D2A50).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"abcd", "skippable"),
        (zstandard.ZstdCompressor().compress(b"x")[:6], "truncated"),
    ],
)
def test_anything_after_the_last_full_frame_is_refused(
    keys: KeyRing, tmp_path: Path, trailer: bytes, reason: str
) -> None:
    frame = zstandard.ZstdCompressor().compress(IMAGE)
    data = assemble(keys, [_zstd_entry(frame + trailer, IMAGE)])
    with pytest.raises(otap.OtapError, match=reason):
        _extract(data, tmp_path, keys)


def test_a_truncated_frame_is_refused(keys: KeyRing, tmp_path: Path) -> None:
    frame = zstandard.ZstdCompressor().compress(IMAGE)
    data = assemble(keys, [_zstd_entry(frame[:-2], IMAGE)])
    with pytest.raises(otap.OtapError, match="truncated"):
        _extract(data, tmp_path, keys)


def test_a_zstd_entry_needs_at_least_one_frame(keys: KeyRing, tmp_path: Path) -> None:
    data = assemble(keys, [_zstd_entry(b"", b"")])
    with pytest.raises(otap.OtapError, match="no zstd frame"):
        _extract(data, tmp_path, keys)


def test_a_window_larger_than_the_documented_maximum_is_refused(
    keys: KeyRing, tmp_path: Path
) -> None:
    params = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=otap.ZSTD_MAX_WINDOW_LOG + 1
    )
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    frame = cobj.compress(IMAGE) + cobj.flush()
    data = assemble(keys, [_zstd_entry(frame, IMAGE)])
    with pytest.raises(otap.OtapError, match="window"):
        _extract(data, tmp_path, keys)


def test_writer_keeps_the_window_within_the_maximum_at_any_level(
    keys: KeyRing, tmp_path: Path
) -> None:
    image = bytes(range(256)) * 40000 + IMAGE  # 10 MiB, larger than the maximum window
    data = build_bytes(
        keys, write_images(tmp_path / "in", [image]), options=otap.BuildOptions(level=20)
    )
    package = otap.parse_package(io.BytesIO(data))
    stored = data[package.data_offset :]
    window = zstandard.get_frame_parameters(stored).window_size
    assert 0 < window <= 1 << otap.ZSTD_MAX_WINDOW_LOG
    _extract(data, tmp_path / "out", keys)
    assert (tmp_path / "out" / "ECU_001.bin").read_bytes() == image


# --- deltas: exactly one frame, declaring image_size -------------------------------------

BASE = bytes(range(256)) * 200
TARGET = BASE[:3000] + b"patched" + BASE[3000:]


def _delta_entry(delta: bytes, target: bytes = TARGET) -> tuple[dict[str, object], bytes]:
    return _zstd_entry(
        delta,
        target,
        compression=otap.COMPRESSION_NONE,
        delta_algorithm=int(DeltaAlgorithm.ZSTD_PATCH_FROM),
        delta_base_version=b"1.0.0",
        base_sha256=hashlib.sha256(BASE).digest(),
    )


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "ECU_001.bin").write_bytes(BASE)
    return tmp_path / "base"


def test_zstd_delta_of_one_frame_applies(keys: KeyRing, tmp_path: Path, base_dir: Path) -> None:
    delta = make_delta(DeltaAlgorithm.ZSTD_PATCH_FROM, BASE, TARGET)
    _extract(assemble(keys, [_delta_entry(delta)]), tmp_path / "o", keys, base_dir=base_dir)
    assert (tmp_path / "o" / "ECU_001.bin").read_bytes() == TARGET


@pytest.mark.parametrize(
    "trailer", [b"\0\0\0\0", zstandard.ZstdCompressor().compress(b"second frame")]
)
def test_zstd_delta_with_anything_after_its_frame_is_refused(
    keys: KeyRing, tmp_path: Path, base_dir: Path, trailer: bytes
) -> None:
    delta = make_delta(DeltaAlgorithm.ZSTD_PATCH_FROM, BASE, TARGET) + trailer
    with pytest.raises(otap.OtapError, match="exactly one zstd frame|not a zstd frame"):
        _extract(assemble(keys, [_delta_entry(delta)]), tmp_path / "o", keys, base_dir=base_dir)


# --- anti-rollback: a replay of the installed package is refused --------------------------


def test_the_installed_package_replayed_is_refused(keys: KeyRing, tmp_path: Path) -> None:
    data = build_bytes(keys, write_images(tmp_path, [IMAGE]), package_version=7)
    otap.verify_package(io.BytesIO(data), trust=keys.trust, installed_package_version=6, now=NOW)
    for installed in (7, 8):
        with pytest.raises(otap.OtapError, match="replay or rollback refused"):
            otap.verify_package(
                io.BytesIO(data), trust=keys.trust, installed_package_version=installed, now=NOW
            )


# --- ECDSA: strict DER, low S ---------------------------------------------------------------


def _with_ecdsa_signature(data: bytes, signature: bytes) -> bytes:
    offset = otap.signed_size_for(1) + 2 + otap.MLDSA65_SIGNATURE_SIZE
    patched = bytearray(data)
    patched[offset : offset + 2 + 72] = len(signature).to_bytes(2, "big") + signature.ljust(
        72, b"\0"
    )
    return bytes(patched)


def test_writer_stores_low_s_signatures_and_reader_refuses_high_s(
    keys: KeyRing, tmp_path: Path
) -> None:
    sources = write_images(tmp_path, [IMAGE])
    for version in range(1, 17):
        data = build_bytes(keys, sources, package_version=version)
        package = otap.parse_package(io.BytesIO(data))
        r, s = decode_dss_signature(package.ecdsa_signature)
        assert s <= otap.P256_ORDER // 2
        high_s = encode_dss_signature(r, otap.P256_ORDER - s)
        # The high-S twin is a valid ECDSA signature: only the format rule refuses it.
        keys.trust.ecdsa[package.ecdsa_key_id].verify(
            high_s,
            otap.MLDSA_CONTEXT + b"\0" + package.signed_bytes,
            ec.ECDSA(hashes.SHA256()),
        )
        with pytest.raises(otap.OtapError, match="high S"):
            otap.parse_package(io.BytesIO(_with_ecdsa_signature(data, high_s)))


def test_reader_refuses_ecdsa_signatures_not_in_strict_der(keys: KeyRing, tmp_path: Path) -> None:
    data = build_bytes(keys, write_images(tmp_path, [IMAGE]))
    signature = otap.parse_package(io.BytesIO(data)).ecdsa_signature
    long_form = b"\x30\x81" + signature[1:]  # the same SEQUENCE with a BER long-form length
    padded_r = b"\x30" + bytes([signature[1] + 1]) + b"\x02" + bytes([signature[3] + 1])
    padded_r += b"\0" + signature[4:]  # an INTEGER with a superfluous leading zero
    for bad in (long_form, padded_r):
        with pytest.raises(otap.OtapError, match="strict DER"):
            otap.parse_package(io.BytesIO(_with_ecdsa_signature(data, bad)))
