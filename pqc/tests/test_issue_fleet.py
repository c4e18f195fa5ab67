from __future__ import annotations

import json
from io import StringIO

import pytest
from cryptography import x509
from django.core.management import CommandError, call_command

from core.models import AuditEvent
from pqc.models import CertificateEvent
from pqc.pki import PkiError, common_name, fleet_vin, key_family, parse_shares, spread_shares

pytestmark = pytest.mark.django_db


@pytest.fixture
def pki_dir(settings, tmp_path):
    settings.PKI_DIR = tmp_path / "pki"
    call_command("pqc_pki", "init", "--family", "ecdsa-p256", "--family", "ml-dsa-65",
                 stdout=StringIO())  # fmt: skip
    return settings.PKI_DIR


def test_issue_fleet_gives_each_vehicle_its_own_key_in_the_asked_mix(pki_dir, tmp_path) -> None:
    out, err = StringIO(), StringIO()
    call_command("pqc_pki", "issue-fleet", "--count", "5", "--out", str(tmp_path / "fleet"),
                 "--families", "ecdsa-p256:60,ml-dsa-65:40", stdout=out, stderr=err)  # fmt: skip

    manifest = json.loads((tmp_path / "fleet" / "fleet.json").read_text())["vehicles"]
    assert [v["vin"] for v in manifest] == [fleet_vin(i) for i in range(5)]
    assert sorted(v["family"] for v in manifest) == ["ecdsa-p256"] * 3 + ["ml-dsa-65"] * 2
    keys = set()
    for vehicle in manifest:
        pem = (tmp_path / "fleet" / vehicle["vin"] / "vehicle.crt").read_bytes()
        cert = x509.load_pem_x509_certificates(pem)[0]
        assert common_name(cert) == vehicle["vin"]
        assert key_family(cert.public_key()) == vehicle["family"]
        keys.add((tmp_path / "fleet" / vehicle["vin"] / "vehicle.key").read_bytes())
    assert len(keys) == 5
    assert (tmp_path / "fleet" / "ca-bundle.pem").exists()
    assert "issued 5/5" in err.getvalue()
    assert CertificateEvent.objects.filter(action="issued").count() == 5
    assert AuditEvent.objects.filter(action="certificate.issued").count() == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "count: between 1"),
        (["--count", "2", "--families", "rsa-2048"], "family: 'rsa-2048'"),
        (["--count", "2", "--families", "ecdsa-p256:x"], "families: 'ecdsa-p256:x'"),
        (["--count", "2", "--vin-prefix", "WFLEETIO"], "vin: "),
    ],
)
def test_issue_fleet_refuses_bad_input_naming_it(pki_dir, tmp_path, args, message) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("pqc_pki", "issue-fleet", "--out", str(tmp_path / "f"), *args,
                     stdout=StringIO(), stderr=StringIO())  # fmt: skip
    assert not CertificateEvent.objects.filter(action="issued").exists()


def test_spread_shares_interleaves_the_mix() -> None:
    mix = spread_shares(parse_shares("1:60,13:30,4:10", name="configs"), 10)
    assert sorted(mix) == sorted(["1"] * 6 + ["13"] * 3 + ["4"])
    # Any half of the fleet has about the same mix as the whole.
    assert mix[:5].count("1") == 3
    with pytest.raises(PkiError, match="configs"):
        parse_shares("1:-5", name="configs")
