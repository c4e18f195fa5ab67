"""The byte tables in docs/PACKAGE_FORMAT.md must describe exactly what the parser reads."""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import pytest

from firmware import otap

DOC = Path(__file__).resolve().parents[2] / "docs" / "PACKAGE_FORMAT.md"
TYPE_SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "i64": 8}
STRUCT_TYPES = {"B": "u8", "H": "u16", "I": "u32", "Q": "u64", "q": "i64"}


def _doc_table(title: str) -> list[tuple[int, int, str, str]]:
    section = DOC.read_text().split(f"### {title}\n", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        match = re.match(r"^\| (\d+) \| (\d+) \| (\S+) \| (\w+) \|", line)
        if match:
            rows.append((int(match[1]), int(match[2]), match[3], match[4]))
    return rows


def _struct_fields(layout: struct.Struct) -> list[tuple[int, str]]:
    fields = []
    for count, code in re.findall(r"(\d*)([a-zA-Z])", layout.format.lstrip(">")):
        if code == "s":
            fields.append((int(count), f"bytes[{count}]"))
        else:
            fields.append((struct.calcsize(">" + code), STRUCT_TYPES[code]))
    return fields


@pytest.mark.parametrize(
    ("title", "layout"),
    [
        ("Header", otap.HEADER),
        ("Entry", otap.ENTRY),
        ("Manifest", otap.MANIFEST),
        ("Signature block", otap.SIGNATURES),
    ],
)
def test_document_table_matches_the_parser_struct(title: str, layout: struct.Struct) -> None:
    rows = _doc_table(title)
    assert rows, f"no table under '### {title}'"
    assert [(size, kind) for _, size, kind, _ in rows] == _struct_fields(layout)
    offset = 0
    for row_offset, size, kind, name in rows:
        assert row_offset == offset, f"{title}.{name} documented at {row_offset}, is at {offset}"
        if kind in TYPE_SIZES:
            assert size == TYPE_SIZES[kind]
        offset += size
    assert offset == layout.size
    assert otap.ENTRY.format.startswith(">"), "the format is big-endian"


def test_document_states_the_fixed_sizes() -> None:
    text = DOC.read_text()
    assert f"S = {otap.HEADER_SIZE + otap.MANIFEST_SIZE} + {otap.ENTRY_SIZE} N" in text
    assert f"Signature block        {otap.SIGNATURE_BLOCK_SIZE} bytes" in text
    assert f"`{otap.MLDSA_CONTEXT.decode()}`" in text
    assert f"1..{otap.MAX_ECU_COUNT}" in text


def test_document_states_the_limits_the_reader_enforces() -> None:
    text = " ".join(DOC.read_text().split())
    assert f"at most 2^{otap.ZSTD_MAX_WINDOW_LOG} bytes" in text
    assert f"window up to 2^{otap.DELTA_MAX_WINDOW_LOG}" in text
    assert otap.MAX_DELTA_IMAGE_SIZE == 1 << 31
    assert "`image_size` and `stored_size` are at most 2^31" in text
    assert f"up to {int(otap.MAX_CLOCK_SKEW.total_seconds())} seconds ahead" in text
    assert f"`created_at > now + {int(otap.MAX_CLOCK_SKEW.total_seconds())} s`" in text
    assert f"`{otap.P256_ORDER:064X}`" in text
    assert "**strictly greater**" in text


@pytest.mark.parametrize("family", ["mldsa", "ecdsa"])
def test_document_describes_the_bytes_hashed_into_a_key_id(family: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, mldsa

    from firmware import signing

    if family == "mldsa":
        key = mldsa.MLDSA65PrivateKey.generate().public_key()
        name = "ML-DSA-65"
    else:
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        name = "ECDSA P-256"
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = " ".join(DOC.read_text().split())
    documented = re.search(rf"\* {name}: (\d+) bytes;.*?It starts `([0-9a-f ]+)`", text)
    assert documented, f"no key encoding for {name}"
    assert int(documented[1]) == len(der)
    assert der.startswith(bytes.fromhex(documented[2]))
    assert signing.key_id(key) == hashlib.sha256(der).digest()[:16]
