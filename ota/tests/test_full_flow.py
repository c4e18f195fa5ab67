"""Registration, VCI, campaign, update check, download, status reports, success: all over the API."""

from __future__ import annotations

import hashlib

from conftest import vehicle_api_client
from core.audit import verify_chain
from core.models import AuditEvent
from ecus.models import Ecu
from ota.choices import CampaignStatus, UpdateState
from ota.engine import run_tick
from ota.models import Campaign, OtaUpdate
from ota.tests.conftest import make_release

VIN = "5YJ3E1EA7KF317003"


def test_an_update_goes_from_registration_to_verified_success(
    registry, operator_client, settings, tmp_path
) -> None:
    settings.SIGNING_KEY_DIR = tmp_path / "signing"
    settings.PACKAGE_DIR = tmp_path / "packages"
    car = vehicle_api_client(VIN, cert_fingerprint="c" * 64)
    registered = car.post(
        "/api/v1/vehicles/register",
        {"vin": VIN, "model_name": "Aurora", "model_year": 2026},
        format="json",
    )
    assert registered.status_code == 201

    ecus = [{"ecu_id": "ECU_001", "sw_version": "1.1.1", "hw_version": "2.0"}]
    vci = {"vin": VIN, "timestamp": 1767225600, "trigger": "power_on", "ecus": ecus}
    assert car.post(f"/api/v1/vehicles/{VIN}/vci", vci, format="json").status_code == 201

    tcm = make_release("TCM", "3.0.0", hardware=("2.0", "2.1"))
    ecm = make_release("ECM", "2.0.0", hardware=("2.0",), requires={"TCM": "3.0.0"})
    created = operator_client.post(
        "/api/v1/campaigns",
        {"name": "ECM 2.0", "firmware_ids": [ecm.pk, tcm.pk], "wave_percentages": [100]},
        format="json",
    ).json()
    assert operator_client.post(f"/api/v1/campaigns/{created['id']}/start").status_code == 202
    run_tick()

    plan = car.post("/api/v1/ota/check", {}, format="json").json()
    assert plan["update_available"] is True
    order = [item["ecu_id"] for item in plan["items"]]
    assert order.index("ECU_002") < order.index("ECU_001")  # TCM before the ECM that needs it
    [package] = plan["packages"]
    download = car.get(f"/api/v1/ota/package/{package['package_id']}")
    assert download.status_code == 200
    body = b"".join(download.streaming_content) if download.streaming else download.content
    assert hashlib.sha256(body).hexdigest() == package["sha256"]
    assert len(body) == package["size"]

    update_id = plan["update_id"]
    for sequence, state in enumerate([1, 2, 3, 4], start=1):
        response = car.post(
            "/api/v1/ota/status",
            {"update_id": update_id, "vmg_state": state, "sequence": sequence, "percentage": 100},
            format="json",
        )
        assert response.status_code == 200
    assert OtaUpdate.objects.get(pk=update_id).state == UpdateState.AWAITING_REBOOT

    after_reboot = [
        {"ecu_id": i["ecu_id"], "sw_version": i["to_version"], "hw_version": i["hardware_version"]}
        for i in plan["items"]
    ]
    vci = {"vin": VIN, "timestamp": 1767229200, "trigger": "power_on", "ecus": after_reboot}
    settled = car.post(f"/api/v1/vehicles/{VIN}/vci", vci, format="json").json()
    assert settled["settled_update_state"] == UpdateState.SUCCEEDED
    assert Ecu.objects.get(vehicle__vin=VIN, ecu_id="ECU_001").sw_version == "2.0.0"

    run_tick()
    assert Campaign.objects.get(pk=created["id"]).status == CampaignStatus.COMPLETED
    outcome = AuditEvent.objects.get(action="ota.update.succeeded", vehicle_vin=VIN)
    assert outcome.before["ECU_001"] == "1.1.1"
    assert outcome.after["ECU_001"] == "2.0.0"
    assert verify_chain() is None
