"""The server's repositories end to end: offline release signing, upload over the operator
API, the director signing a vehicle's targets, and the vehicle verifying both over the API."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface

from core.models import AuditEvent
from ecus.models import Ecu
from firmware.tests.factories import firmware as make_firmware
from uptane import release, services
from uptane.models import SignedMetadata
from uptane.verifier import PrimaryVerifier, VerificationError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
IMAGE_URL = "https://ota.test/api/v1/uptane/image/"
DIRECTOR_URL = "https://ota.test/api/v1/uptane/director/"


class ClientFetcher(FetcherInterface):
    """Fetches metadata through the API as the vehicle (the TLS identity rides in the client)."""

    def __init__(self, client) -> None:
        self.client = client

    def _fetch(self, url: str):
        response = self.client.get(urlparse(url).path)
        if response.status_code != 200:
            raise DownloadHTTPError(f"{url}: {response.status_code}", response.status_code)
        return iter([response.content])


@pytest.fixture(scope="session")
def offline_keys(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("release-engineer")
    release.keygen(directory, ["root", "targets"])
    return directory


def _upload(client, role: str, data: bytes):
    return client.post(
        f"/api/v1/uptane/image/upload/{role}", data=data, content_type="application/json"
    )


def _install_root(engineer_client, offline_keys: Path, tmp_path: Path, **root_args) -> bytes:
    online = tmp_path / "online.json"
    online.write_text(json.dumps(engineer_client.get("/api/v1/uptane/image/online-keys").json()))
    out = tmp_path / "root.json"
    args = ["root", "--keys", str(offline_keys), "--online", str(online), "--out", str(out)]
    for name, value in root_args.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    assert release.main(args) == 0
    return out.read_bytes()


def _sign_draft(engineer_client, key_dir: Path, tmp_path: Path) -> bytes:
    draft = tmp_path / "draft.json"
    draft.write_text(json.dumps(engineer_client.get("/api/v1/uptane/image/targets-draft").json()))
    out = tmp_path / "targets.json"
    args = ["sign", "--keys", str(key_dir), "--draft", str(draft), "--out", str(out)]
    assert release.main(args) == 0
    return out.read_bytes()


@pytest.fixture
def repositories(engineer_client, fleet_engineer, offline_keys, tmp_path):
    services.create_online_keys(actor=fleet_engineer)
    response = _upload(
        engineer_client, "root", _install_root(engineer_client, offline_keys, tmp_path)
    )
    assert response.status_code == 201, response.json()
    return offline_keys


@pytest.fixture
def ecm_release(repositories, engineer_client, tmp_path, registry):
    firmware = make_firmware(code="ECM", version="2.0.0", hardware_versions=("2.0",))
    signed = _sign_draft(engineer_client, repositories, tmp_path)
    response = _upload(engineer_client, "targets", signed)
    assert response.status_code == 201, response.json()
    return firmware


def _verifier(vehicle_client, tmp_path: Path, first_time: bool = True) -> PrimaryVerifier:
    ecus = {
        ecu.ecu_id: services.hardware_id(ecu.ecu_type.code, ecu.hardware_version)
        for ecu in Ecu.objects.select_related("ecu_type").filter(vehicle__vin="WVWZZZ1JZ3W386752")
    }
    get = vehicle_client.get
    return PrimaryVerifier(
        state_dir=tmp_path / "vmg",
        image_url=IMAGE_URL,
        director_url=DIRECTOR_URL,
        fetcher=ClientFetcher(vehicle_client),
        ecus=ecus,
        image_root=get("/api/v1/uptane/image/1.root.json").content if first_time else None,
        director_root=get("/api/v1/uptane/director/1.root.json").content if first_time else None,
    )


def test_vehicle_verifies_the_image_its_campaign_offers(
    ecm_release, vehicle, vehicle_client, tmp_path
) -> None:
    assert _verifier(vehicle_client, tmp_path).refresh() == []
    # What planning an offered update records: ECU_001 should run 2.0.0.
    Ecu.objects.filter(vehicle=vehicle, ecu_id="ECU_001").update(target_sw_version="2.0.0")
    (approved,) = _verifier(vehicle_client, tmp_path, first_time=False).refresh()
    assert (approved.ecu_id, approved.path, approved.sha256) == (
        "ECU_001",
        "ECM/2.0.0",
        ecm_release.sha256,
    )
    assert AuditEvent.objects.filter(action="uptane.director_signed", vehicle_vin=vehicle.vin)


def test_director_metadata_is_the_calling_vehicles_own(
    ecm_release, vehicle, other_vehicle, vehicle_client, viewer_client
) -> None:
    Ecu.objects.filter(vehicle=vehicle, ecu_id="ECU_001").update(target_sw_version="2.0.0")
    vehicle_client.get("/api/v1/uptane/director/timestamp.json")
    mine = json.loads(vehicle_client.get("/api/v1/uptane/director/targets.json").content)
    assert list(mine["signed"]["targets"]) == ["ECM/2.0.0"]
    from conftest import vehicle_api_client

    other = vehicle_api_client(other_vehicle.vin)
    other.get("/api/v1/uptane/director/timestamp.json")
    theirs = json.loads(other.get("/api/v1/uptane/director/targets.json").content)
    assert theirs["signed"]["targets"] == {}
    assert viewer_client.get("/api/v1/uptane/director/targets.json").status_code == 403
    assert viewer_client.get("/api/v1/uptane/image/targets.json").status_code == 200


def test_campaign_refuses_firmware_without_an_offline_signature(
    repositories, fleet_operator, registry
) -> None:
    from core.api import DomainError
    from ota.campaigns import create_campaign

    unsigned = make_firmware(code="ECM", version="3.0.0", hardware_versions=("2.0",))
    with pytest.raises(DomainError, match="not released") as refused:
        create_campaign(operator=fleet_operator, firmware_ids=[unsigned.pk], name="c")
    assert refused.value.field == "firmware_ids"


def test_campaign_api_names_the_field_for_unreleased_firmware(
    repositories, operator_client, registry
) -> None:
    unsigned = make_firmware(code="ECM", version="3.0.0", hardware_versions=("2.0",))
    response = operator_client.post(
        "/api/v1/campaigns", {"name": "c", "firmware_ids": [unsigned.pk]}, format="json"
    )
    assert response.status_code == 400
    assert "firmware_ids" in response.json()["error"]["fields"]


def test_released_firmware_can_be_rolled_out(ecm_release, fleet_operator) -> None:
    from ota.campaigns import create_campaign

    assert create_campaign(operator=fleet_operator, firmware_ids=[ecm_release.pk], name="c")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "metadata"),
        (b'{"signed": {"_type": "timestamp"}, "signatures": []}', "metadata"),
        (b"", "metadata"),
    ],
)
def test_garbage_uploads_are_refused_naming_the_field(
    repositories, engineer_client, body: bytes, field: str
) -> None:
    before = SignedMetadata.objects.count()
    response = _upload(engineer_client, "targets", body)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert SignedMetadata.objects.count() == before


def test_targets_not_signed_offline_or_naming_unknown_images_are_refused(
    repositories, engineer_client, tmp_path, registry, tmp_path_factory
) -> None:
    make_firmware(code="ECM", version="2.0.0", hardware_versions=("2.0",))
    intruder = tmp_path_factory.mktemp("intruder")
    release.keygen(intruder, ["targets"])
    forged = _upload(engineer_client, "targets", _sign_draft(engineer_client, intruder, tmp_path))
    assert forged.status_code == 400
    assert "signatures" in forged.json()["error"]["fields"]
    draft = engineer_client.get("/api/v1/uptane/image/targets-draft").json()
    draft["targets"]["ECM/9.9.9"] = dict(draft["targets"]["ECM/2.0.0"])
    (tmp_path / "draft.json").write_text(json.dumps(draft))
    out = tmp_path / "t.json"
    release.main(
        [
            "sign",
            "--keys",
            str(repositories),
            "--draft",
            str(tmp_path / "draft.json"),
            "--out",
            str(out),
        ]
    )
    unknown = _upload(engineer_client, "targets", out.read_bytes())
    assert unknown.status_code == 400
    assert "targets.ECM/9.9.9" in unknown.json()["error"]["fields"]
    assert not SignedMetadata.objects.filter(role="targets", repository="image").exists()


def test_replayed_targets_version_is_refused(ecm_release, engineer_client) -> None:
    installed = SignedMetadata.objects.get(repository="image", role="targets")
    replay = _upload(engineer_client, "targets", bytes(installed.body))
    assert replay.status_code == 400
    assert "version" in replay.json()["error"]["fields"]


def test_root_rotation_needs_the_previous_root_keys(
    repositories, engineer_client, tmp_path, tmp_path_factory
) -> None:
    new_keys = tmp_path_factory.mktemp("new-root")
    release.keygen(new_keys, ["root", "targets"])
    alone = _install_root(engineer_client, new_keys, tmp_path, version=2)
    refused = _upload(engineer_client, "root", alone)
    assert refused.status_code == 400
    assert "signatures" in refused.json()["error"]["fields"]
    rotated = _install_root(
        engineer_client, new_keys, tmp_path, version=2, previous_keys=repositories
    )
    assert _upload(engineer_client, "root", rotated).status_code == 201
    assert AuditEvent.objects.filter(action="uptane.image_root_installed").count() == 2


def test_a_root_one_algorithm_could_sign_is_refused_by_the_tool(
    repositories, engineer_client, tmp_path, capsys
) -> None:
    online = tmp_path / "online.json"
    online.write_text(json.dumps(engineer_client.get("/api/v1/uptane/image/online-keys").json()))
    code = release.main(
        [
            "root",
            "--keys",
            str(repositories),
            "--online",
            str(online),
            "--out",
            str(tmp_path / "r.json"),
            "--version",
            "2",
            "--threshold",
            "targets=1",
        ]
    )
    assert code == 2
    assert "not be hybrid" in capsys.readouterr().err


def test_director_key_rotation_is_followed_by_the_vehicle(
    ecm_release, vehicle, vehicle_client, fleet_engineer, tmp_path
) -> None:
    Ecu.objects.filter(vehicle=vehicle, ecu_id="ECU_001").update(target_sw_version="2.0.0")
    assert _verifier(vehicle_client, tmp_path).refresh()
    services.rotate_director_key(role="targets", actor=fleet_engineer)
    SignedMetadata.objects.filter(repository="director", vehicle=vehicle).delete()
    assert _verifier(vehicle_client, tmp_path, first_time=False).refresh()


def test_unknown_metadata_names_are_404(repositories, vehicle_client) -> None:
    assert vehicle_client.get("/api/v1/uptane/image/x.root.json").status_code == 404
    assert vehicle_client.get("/api/v1/uptane/image/targets.json").status_code == 404


def test_director_only_signature_is_refused_by_the_vehicle(
    ecm_release, vehicle, vehicle_client, tmp_path
) -> None:
    # The director names ECM 2.0.0 but with the bytes of another, unreleased build.
    other = make_firmware(code="ECM", version="2.0.1", hardware_versions=("2.0",))
    Ecu.objects.filter(vehicle=vehicle, ecu_id="ECU_001").update(target_sw_version="2.0.1")
    with pytest.raises(VerificationError, match="not a signed release"):
        _verifier(vehicle_client, tmp_path).refresh()
    assert other.pk


def test_timestamps_near_expiry_are_renewed_when_fetched(
    ecm_release, vehicle, vehicle_client
) -> None:
    import datetime as dt

    from uptane.metadata import now

    vehicle_client.get("/api/v1/uptane/director/timestamp.json")
    soon = now() + dt.timedelta(hours=1)
    SignedMetadata.objects.filter(role="timestamp").update(expires_at=soon)
    for repository in ("image", "director"):
        before = SignedMetadata.objects.filter(repository=repository, role="timestamp").count()
        body = vehicle_client.get(f"/api/v1/uptane/{repository}/timestamp.json").content
        signed = json.loads(body)["signed"]
        assert signed["version"] == before + 1
        assert signed["expires"] > (now() + dt.timedelta(hours=20)).isoformat()
    assert AuditEvent.objects.filter(action="uptane.image_timestamp_renewed").count() == 1


def test_a_supplier_signs_and_uploads_its_own_images(
    repositories, engineer_client, tmp_path, tmp_path_factory, registry
) -> None:
    ecm = make_firmware(code="ECM", version="2.0.0", hardware_versions=("2.0",))
    bcm = make_firmware(code="BCM", version="1.2.0", hardware_versions=("1.0",))
    acme = tmp_path_factory.mktemp("acme")
    release.keygen(acme, ["supplier-acme"])
    draft = engineer_client.get("/api/v1/uptane/image/targets-draft").json()
    ours = {**draft, "targets": {p: t for p, t in draft["targets"].items() if p.startswith("ECM/")}}
    theirs = {
        **draft,
        "targets": {p: t for p, t in draft["targets"].items() if p.startswith("BCM/")},
    }

    def sign(body: dict, key_dir: Path, *extra: str) -> bytes:
        (tmp_path / "d.json").write_text(json.dumps(body))
        out = tmp_path / "s.json"
        args = ["sign", "--keys", str(key_dir), "--draft", str(tmp_path / "d.json")]
        assert release.main([*args, "--out", str(out), *extra]) == 0
        return out.read_bytes()

    top = sign(ours, repositories, "--delegate", f"supplier-acme:BCM/*:{acme}")
    assert _upload(engineer_client, "targets", top).status_code == 201
    assert services.unreleased_firmware([ecm, bcm]) == [bcm]
    supplier = sign(theirs, acme, "--role", "supplier-acme")
    assert _upload(engineer_client, "supplier-acme", supplier).status_code == 201
    assert services.unreleased_firmware([ecm, bcm]) == []
    stranger = _upload(engineer_client, "supplier-other", supplier)
    assert stranger.status_code == 400
    assert "role" in stranger.json()["error"]["fields"]
