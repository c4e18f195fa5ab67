from __future__ import annotations

import io
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import otap, signing
from firmware.deltas import DeltaAlgorithm
from firmware.tests.otap_helpers import LATER, NOW, KeyRing, build_bytes, write_images


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing(tmp_path_factory.mktemp("keys") / "signing")


@pytest.fixture(scope="module")
def small_package(keys: KeyRing, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    images = [b"firmware-" * 40, bytes(range(256)) * 2]
    return build_bytes(keys, write_images(tmp_path_factory.mktemp("img"), images))


def _images_strategy() -> st.SearchStrategy[list[bytes]]:
    # Mix compressible runs with random bytes so both zstd and stored-raw entries occur.
    image = st.one_of(
        st.binary(max_size=4096),
        st.tuples(st.binary(min_size=1, max_size=64), st.integers(0, 3000)).map(
            lambda pair: pair[0] * pair[1]
        ),
    )
    return st.lists(image, min_size=1, max_size=6)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(images=_images_strategy())
def test_round_trip_reproduces_every_image_byte_for_byte(
    keys: KeyRing, images: list[bytes]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = build_bytes(keys, write_images(work / "in", images))
        package = otap.parse_package(io.BytesIO(data))
        extracted = otap.extract_package(io.BytesIO(data), work / "out", trust=keys.trust, now=NOW)
        contents = {ecu_id: path.read_bytes() for ecu_id, path in extracted.items()}
    assert package.total_size == len(data)
    assert [e.ecu_id for e in package.entries] == [
        f"ECU_{n:03d}" for n in range(1, len(images) + 1)
    ]
    assert contents == {f"ECU_{n:03d}": image for n, image in enumerate(images, start=1)}


def test_large_image_round_trips_through_several_chunks(keys: KeyRing, tmp_path: Path) -> None:
    image = (b"\x00" * 700_000 + bytes(range(256)) * 3000) * 2  # > 2 MiB, several read chunks
    data = build_bytes(keys, write_images(tmp_path / "in", [image]))
    assert len(data) < len(image) // 4
    otap.extract_package(io.BytesIO(data), tmp_path / "out", trust=keys.trust, now=NOW)
    assert (tmp_path / "out" / "ECU_001.bin").read_bytes() == image


@pytest.mark.parametrize("algorithm", [DeltaAlgorithm.ZSTD_PATCH_FROM, DeltaAlgorithm.BSDIFF4])
def test_delta_entry_round_trips_when_base_image_is_given(
    keys: KeyRing, tmp_path: Path, algorithm: DeltaAlgorithm
) -> None:
    base = bytes(range(256)) * 400 + b"tail" * 1000
    target = base[:5000] + b"new code" + base[5000:60000] + base[60100:]
    (tmp_path / "base.bin").write_bytes(base)
    (tmp_path / "target.bin").write_bytes(target)
    source = otap.EntrySource(
        ecu_id="ECU_011",
        current_version="1.0.0",
        target_version="1.1.0",
        image_path=tmp_path / "target.bin",
        base_path=tmp_path / "base.bin",
    )
    data = build_bytes(keys, [source], options=otap.BuildOptions(delta_algorithm=algorithm))
    entry = otap.parse_package(io.BytesIO(data)).entries[0]
    assert entry.delta_algorithm == algorithm
    assert entry.delta_base_version == "1.0.0"
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "ECU_011.bin").write_bytes(base)
    otap.extract_package(
        io.BytesIO(data), tmp_path / "out", trust=keys.trust, base_dir=tmp_path / "current", now=NOW
    )
    assert (tmp_path / "out" / "ECU_011.bin").read_bytes() == target


def test_delta_entry_refuses_a_base_image_of_another_version(keys: KeyRing, tmp_path: Path) -> None:
    base = b"abcdefgh" * 5000
    (tmp_path / "base.bin").write_bytes(base)
    (tmp_path / "target.bin").write_bytes(base + b"more")
    source = otap.EntrySource(
        "ECU_001", "2.0.0", tmp_path / "target.bin", "1.0.0", tmp_path / "base.bin"
    )
    data = build_bytes(keys, [source])
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "ECU_001.bin").write_bytes(b"not the base")
    with pytest.raises(otap.OtapError, match="base image is not version 1.0.0"):
        otap.extract_package(
            io.BytesIO(data),
            tmp_path / "o",
            trust=keys.trust,
            base_dir=tmp_path / "current",
            now=NOW,
        )
    assert not (tmp_path / "o" / "ECU_001.bin").exists()


def test_full_image_is_kept_when_the_delta_is_not_smaller(keys: KeyRing, tmp_path: Path) -> None:
    (tmp_path / "base.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "target.bin").write_bytes(b"z" * 5000)
    source = otap.EntrySource(
        "ECU_001", "2.0.0", tmp_path / "target.bin", "1.0.0", tmp_path / "base.bin"
    )
    entry = otap.parse_package(io.BytesIO(build_bytes(keys, [source]))).entries[0]
    assert entry.delta_algorithm == DeltaAlgorithm.NONE
    assert entry.compression == otap.COMPRESSION_ZSTD


def test_flipping_any_byte_of_the_package_fails_verification(
    keys: KeyRing, small_package: bytes
) -> None:
    for offset in range(len(small_package)):
        damaged = bytearray(small_package)
        damaged[offset] ^= 0xFF
        with pytest.raises(otap.OtapError) as excinfo:
            otap.verify_package(io.BytesIO(bytes(damaged)), trust=keys.trust, now=NOW)
        assert str(excinfo.value), f"empty message at offset {offset}"


def test_flipped_signature_bytes_name_the_failing_signature(
    keys: KeyRing, small_package: bytes
) -> None:
    signed = otap.signed_size_for(2)
    for offset, expected in [
        (signed + 2 + 100, "ML-DSA-65"),
        (signed + 2 + 3309 + 2 + 10, "ECDSA"),
    ]:
        damaged = bytearray(small_package)
        damaged[offset] ^= 0x01
        with pytest.raises(otap.OtapError, match=expected):
            otap.verify_package(io.BytesIO(bytes(damaged)), trust=keys.trust, now=NOW)


def test_flipped_data_byte_names_the_entry(keys: KeyRing, small_package: bytes) -> None:
    damaged = bytearray(small_package)
    damaged[-1] ^= 0x01
    with pytest.raises(otap.OtapError, match=r"entry 1 \(ECU_002\): data_sha256 mismatch"):
        otap.verify_package(io.BytesIO(bytes(damaged)), trust=keys.trust, now=NOW)


def test_every_truncation_is_rejected(keys: KeyRing, small_package: bytes) -> None:
    for length in range(len(small_package)):
        with pytest.raises(otap.OtapError, match="truncated|total_size"):
            otap.verify_package(io.BytesIO(small_package[:length]), trust=keys.trust, now=NOW)


def test_appended_bytes_are_rejected(keys: KeyRing, small_package: bytes) -> None:
    with pytest.raises(otap.OtapError, match="total_size"):
        otap.parse_package(io.BytesIO(small_package + b"\0"))


@pytest.mark.parametrize("count", [0, otap.MAX_ECU_COUNT + 1, 0xFFFF])
def test_out_of_range_ecu_count_is_rejected(small_package: bytes, count: int) -> None:
    damaged = bytearray(small_package)
    struct.pack_into(">H", damaged, 10, count)
    with pytest.raises(otap.OtapError, match=f"ecu_count {count} is outside"):
        otap.parse_package(io.BytesIO(bytes(damaged)))


def test_ecu_count_larger_than_the_file_is_rejected_as_truncated(small_package: bytes) -> None:
    damaged = bytearray(small_package)
    struct.pack_into(">H", damaged, 10, 100)
    with pytest.raises(otap.OtapError, match="ecu_count 100 needs at least"):
        otap.parse_package(io.BytesIO(bytes(damaged)))


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=8000))
def test_garbage_is_rejected_with_otap_error_only(garbage: bytes) -> None:
    with pytest.raises(otap.OtapError):
        otap.parse_package(io.BytesIO(garbage))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_damage_never_leaks_other_exceptions(
    keys: KeyRing, small_package: bytes, data: st.DataObject
) -> None:
    damaged = bytearray(small_package)
    for _ in range(data.draw(st.integers(1, 8))):
        offset = data.draw(st.integers(0, len(damaged) - 1))
        damaged[offset] = data.draw(st.integers(0, 255))
    if bytes(damaged) == small_package:
        return
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(otap.OtapError):
        otap.extract_package(io.BytesIO(bytes(damaged)), Path(tmp), trust=keys.trust, now=NOW)


def test_expired_package_is_refused(keys: KeyRing, small_package: bytes) -> None:
    with pytest.raises(otap.OtapError, match="expired"):
        otap.verify_package(io.BytesIO(small_package), trust=keys.trust, now=LATER)


def test_rolled_back_package_is_refused(keys: KeyRing, small_package: bytes) -> None:
    otap.verify_package(
        io.BytesIO(small_package), trust=keys.trust, installed_package_version=6, now=NOW
    )
    with pytest.raises(otap.OtapError, match="rollback refused"):
        otap.verify_package(
            io.BytesIO(small_package), trust=keys.trust, installed_package_version=8, now=NOW
        )


def test_package_from_an_untrusted_key_is_refused(small_package: bytes, tmp_path: Path) -> None:
    stranger = KeyRing(tmp_path / "other")
    with pytest.raises(otap.OtapError, match="ML-DSA-65 key .* is not trusted"):
        otap.verify_package(io.BytesIO(small_package), trust=stranger.trust, now=NOW)


def test_both_signatures_are_required(keys: KeyRing, small_package: bytes, tmp_path: Path) -> None:
    stranger = KeyRing(tmp_path / "other")
    # A verifier that trusts our ML-DSA key but not our ECDSA key must still refuse.
    half = signing.TrustSet(keys.trust.mldsa.values(), stranger.trust.ecdsa.values())
    with pytest.raises(otap.OtapError, match="ECDSA-P256 key .* is not trusted"):
        otap.verify_package(io.BytesIO(small_package), trust=half, now=NOW)
    other_half = signing.TrustSet(stranger.trust.mldsa.values(), keys.trust.ecdsa.values())
    with pytest.raises(otap.OtapError, match="ML-DSA-65 key .* is not trusted"):
        otap.verify_package(io.BytesIO(small_package), trust=other_half, now=NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [("ecu_id", "../../etc"), ("target_version", "1.0/2"), ("ecu_id", "ECU_0000000000000001")],
)
def test_writer_refuses_unsafe_names(keys: KeyRing, tmp_path: Path, field: str, value: str) -> None:
    (tmp_path / "i.bin").write_bytes(b"x")
    fields = {"ecu_id": "ECU_001", "target_version": "1.0.0", field: value}
    source = otap.EntrySource(image_path=tmp_path / "i.bin", **fields)
    with pytest.raises(otap.OtapError, match=field):
        build_bytes(keys, [source])


def test_writer_refuses_duplicate_ecu_ids(keys: KeyRing, tmp_path: Path) -> None:
    sources = write_images(tmp_path, [b"a", b"b"])
    sources[1] = otap.EntrySource("ECU_001", "2.0.0", sources[1].image_path)
    with pytest.raises(otap.OtapError, match="appears twice"):
        build_bytes(keys, sources)


def test_command_line_verifies_and_extracts(
    keys: KeyRing, small_package: bytes, tmp_path: Path
) -> None:
    package = tmp_path / "zone.otap"
    package.write_bytes(small_package)
    lines: list[str] = []
    shutil.copy(keys.trust_path, tmp_path / "trust.pem")
    code = otap.main(
        [
            "verify",
            str(package),
            "--trust",
            str(tmp_path / "trust.pem"),
            "--extract",
            str(tmp_path / "x"),
        ],
        stdout=lines.append,
        now=NOW,
    )
    assert code == 0
    assert lines[-1].startswith("OK")
    assert (tmp_path / "x" / "ECU_001.bin").read_bytes() == b"firmware-" * 40


def test_command_line_reports_rejection_without_a_traceback(
    keys: KeyRing, small_package: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "zone.otap"
    package.write_bytes(small_package[:-1])
    code = otap.main(["verify", str(package), "--trust", str(keys.trust_path)], now=NOW)
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("REJECTED: ")
    assert "Traceback" not in err
