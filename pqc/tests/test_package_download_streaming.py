"""Packages larger than one read stream byte-exact over the vehicle listener, whole or by range."""

from __future__ import annotations

import random

import pytest
from django.core.files.storage import default_storage

from firmware import services
from firmware.tests import factories
from pqc.catalogue import load_catalogue
from pqc.client import open_connection
from pqc.tests.conftest import VIN_A, FleetMaterial, RunningListeners

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _get(
    running: RunningListeners, fleet: FleetMaterial, path: str, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and every byte after the head until the server closes the connection.

    Reading to the close (not to Content-Length) also catches bytes sent beyond the body.
    """
    config = next(c for c in load_catalogue() if c.id == 1)
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with open_connection(
        running.host,
        running.ports["vehicle"],
        config=config,
        credentials=fleet.credentials[(VIN_A, "ecdsa-p256")],
        server_hostname="localhost",
    ) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = bytearray()
        while chunk := conn.recv(1 << 20):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


@pytest.fixture
def stored_package(db):
    from vehicles.models import Vehicle

    # Random bytes do not compress: the package spans several 1 MiB reads.
    image = random.Random(7).randbytes(5 * 1024 * 1024 + 12345)
    firmware = factories.firmware(code="ECM", version="5.0.0", data=image)
    vehicle = Vehicle.objects.create(vin=VIN_A, model_name="Aurora", model_year=2026)
    package = services.get_or_build_zone_package(
        vehicle=vehicle,
        zonal_gateway_id="ZGW_FRONT",
        items=[factories.item("ECU_011", firmware)],
    )
    with default_storage.open(package.file.name, "rb") as fh:
        return package, fh.read()


def test_whole_multi_mebibyte_package_arrives_byte_exact(
    running: RunningListeners, fleet: FleetMaterial, stored_package
) -> None:
    package, stored = stored_package
    assert len(stored) > 5 * 1024 * 1024

    status, headers, body = _get(running, fleet, f"/api/v1/ota/package/{package.pk}")

    assert status == 200
    assert headers["content-length"] == str(len(stored))
    assert body == stored


def test_range_across_read_boundaries_arrives_byte_exact(
    running: RunningListeners, fleet: FleetMaterial, stored_package
) -> None:
    package, stored = stored_package
    first, last = 1_000_003, 4_500_001  # neither on a 64 KiB piece nor on a 1 MiB read

    status, headers, body = _get(
        running,
        fleet,
        f"/api/v1/ota/package/{package.pk}",
        Range=f"bytes={first}-{last}",
        **{"If-Range": package.etag},
    )

    assert status == 206
    assert headers["content-range"] == f"bytes {first}-{last}/{len(stored)}"
    assert body == stored[first : last + 1]
