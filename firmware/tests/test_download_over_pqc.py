"""End to end: an uploaded image reaches a vehicle as a signed package over the PQC listener."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.test import Client

from firmware import otap, services, signing
from firmware.models import Firmware
from firmware.tests import factories
from pqc.catalogue import load_catalogue
from pqc.client import https_request
from pqc.tests.conftest import VIN_A, VIN_B, fleet, running  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _get(running, credentials, path: str, **headers: str):  # noqa: F811
    config = next(c for c in load_catalogue() if c.id == 1)
    return https_request(
        running.host,
        running.ports["vehicle"],
        "GET",
        path,
        headers=headers,
        config=config,
        credentials=credentials,
        server_hostname="localhost",
    )


def test_admin_upload_becomes_a_package_the_vehicle_resumes_over_pqc_tls(
    running,  # noqa: F811
    fleet,  # noqa: F811
    admin_user,
    tmp_path: Path,
) -> None:
    from vehicles.models import Vehicle

    factories.ecu_type("ECM")
    image = bytes(range(256)) * 900 + b"end of image"
    browser = Client()
    browser.force_login(admin_user)
    upload = browser.post(
        "/api/v1/firmware/upload",
        {"ecu_type": "ECM", "version": "4.0.0", "file": io.BytesIO(image)},
    )
    assert upload.status_code == 201, upload.content
    firmware = Firmware.objects.get(pk=upload.json()["id"])
    vehicle = Vehicle.objects.create(vin=VIN_A, model_name="Aurora", model_year=2026)
    Vehicle.objects.create(vin=VIN_B, model_name="Aurora", model_year=2026)
    package = services.get_or_build_zone_package(
        vehicle=vehicle,
        zonal_gateway_id="ZGW_FRONT",
        items=[services.PackageItem("ECU_011", firmware, "3.0.0", "")],
    )
    path = f"/api/v1/ota/package/{package.pk}"
    credentials = fleet.credentials[(VIN_A, "ecdsa-p256")]

    cut = package.size // 3
    first = _get(running, credentials, path, Range=f"bytes=0-{cut - 1}")
    assert first.status == 206
    rest = _get(running, credentials, path, Range=f"bytes={cut}-", **{"If-Range": package.etag})
    assert rest.status == 206
    assert rest.headers["content-range"] == f"bytes {cut}-{package.size - 1}/{package.size}"
    data = first.body + rest.body
    assert hashlib.sha256(data).hexdigest() == package.sha256
    assert data == default_storage.open(package.file.name).read()

    beyond = _get(running, credentials, path, Range=f"bytes={package.size}-")
    assert beyond.status == 416
    other = _get(running, fleet.credentials[(VIN_B, "ecdsa-p256")], path)
    assert other.status == 404

    trust = signing.load_trust_set(services.trust_bundle_path())
    extracted = otap.extract_package(io.BytesIO(data), tmp_path, trust=trust)
    assert extracted["ECU_011"].read_bytes() == image
