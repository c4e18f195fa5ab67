from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pqc.catalogue import load_catalogue
from pqc.tests.conftest import VIN_A, FleetMaterial, RunningListeners

pytestmark = pytest.mark.slow


def _rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines()[3:]:
        cells = line.split()
        if len(cells) > 2 and cells[0].isdigit() and cells[1] != "of":
            rows[cells[0]] = cells
    return rows


def test_check_prints_the_matrix_of_the_vehicle_listener(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    args = []
    for family in ("ecdsa-p256", "ml-dsa-44", "ml-dsa-65", "ml-dsa-87"):
        credentials = fleet.credentials[(VIN_A, family)]
        args += ["--cert", str(credentials.cert), "--key", str(credentials.key)]
    out = StringIO()

    call_command(
        "pqc_check", "127.0.0.1", str(running.ports["vehicle"]),
        "--ca", str(fleet.pki.ca_bundle_path), "--settle-ms", "100", *args, stdout=out,
    )  # fmt: skip

    rows = _rows(out.getvalue())
    assert len(rows) == len(load_catalogue())
    for config in load_catalogue():
        row = rows[str(config.id)]
        if config.classical:
            assert "no" in row
        else:
            assert "yes" in row, row
            assert config.group in row
            assert config.signature in row
    assert "15 of 16 configurations accepted" in out.getvalue()


def test_check_without_a_client_certificate_shows_mutual_tls_refusals(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    out = StringIO()
    call_command(
        "pqc_check", "127.0.0.1", str(running.ports["mqtt"]),
        "--ca", str(fleet.pki.ca_bundle_path), "--settle-ms", "100", stdout=out,
    )  # fmt: skip
    assert "0 of 16 configurations accepted" in out.getvalue()
    assert "certificate required" in out.getvalue()


def test_check_requires_cert_and_key_together(fleet: FleetMaterial) -> None:
    with pytest.raises(CommandError, match="--cert and --key"):
        call_command("pqc_check", "127.0.0.1", "1", "--ca", str(fleet.pki.ca_bundle_path),
                     "--cert", "x.pem")  # fmt: skip
