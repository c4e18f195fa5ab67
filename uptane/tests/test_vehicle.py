"""The reference vehicle with Uptane: a campaign's update installs only when both repositories
agree, in-process and over real PQC-TLS listeners."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.services import generate_signing_key, trust_bundle_path
from ota.choices import UpdateState
from ota.models import OtaUpdate
from ota.tests.conftest import launch_campaign, make_release
from simulator.ota import OtaAgent
from simulator.tests.in_process import VIN, make_agent
from simulator.uptane import primary_verifier
from uptane import release, services

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def set_up_repositories(tmp_path: Path) -> Path:
    """Online keys on the server, an offline root installed; returns the offline key dir."""
    services.create_online_keys(actor="system:test")
    offline = tmp_path / "release-engineer"
    release.keygen(offline, ["root", "targets"])
    online = tmp_path / "online.json"
    import json

    online.write_text(json.dumps(services.online_public_keys()))
    root = release.build_root(
        key_dir=offline,
        online=online,
        version=1,
        previous_key_dir=None,
        thresholds={},
        expires=release.md.now() + release.dt.timedelta(days=30),
    )
    services.install_image_root(data=release.md.to_bytes(root), actor="system:test")
    return offline


def sign_release(offline: Path, tmp_path: Path) -> None:
    import json

    draft = tmp_path / "draft.json"
    draft.write_text(json.dumps(services.targets_draft()))
    signed = release.sign_targets(key_dir=offline, draft=draft, role="targets", delegations=[])
    services.install_image_targets(data=release.md.to_bytes(signed), actor="system:test")


def provision_roots(directory: Path) -> Path:
    written = services.export_roots(directory)
    assert sorted(p.name for p in written) == ["director-root.json", "image-root.json"]
    return directory


def with_uptane(agent: OtaAgent, tmp_path: Path) -> OtaAgent:
    agent.uptane = primary_verifier(
        agent.api,
        state_dir=tmp_path / "vehicle" / "uptane",
        ecus=agent.ecus,
        roots_dir=provision_roots(tmp_path / "roots"),
    )
    return agent


@pytest.fixture
def package_keys(settings, tmp_path) -> Path:
    settings.SIGNING_KEY_DIR = tmp_path / "signing"
    settings.PACKAGE_DIR = tmp_path / "packages"
    generate_signing_key()
    return trust_bundle_path()


@pytest.mark.slow
def test_campaign_update_installs_after_both_repositories_agree(
    registry, package_keys, fleet_operator, tmp_path
) -> None:
    offline = set_up_repositories(tmp_path)
    agent = with_uptane(make_agent(tmp_path, package_keys), tmp_path)
    agent.register()
    agent.send_vci("power_on")
    ecm = make_release("ECM", "2.0.0", hardware=("2.0", "2.1"))
    sign_release(offline, tmp_path)
    launch_campaign(fleet_operator, [ecm])
    outcome = agent.run_update()
    assert outcome.result == "succeeded", outcome.detail
    assert OtaUpdate.objects.get(vehicle__vin=VIN).state == UpdateState.SUCCEEDED


@pytest.mark.slow
def test_a_compromised_server_cannot_install_what_release_engineers_did_not_sign(
    registry, package_keys, fleet_operator, tmp_path, monkeypatch
) -> None:
    offline = set_up_repositories(tmp_path)
    agent = with_uptane(make_agent(tmp_path, package_keys), tmp_path)
    agent.register()
    agent.send_vci("power_on")
    make_release("ECM", "2.0.0", hardware=("2.0", "2.1"))
    sign_release(offline, tmp_path)
    # The attacker holds the server: its package key, the director's keys, and it skips the
    # release check when creating a campaign for firmware nobody signed offline.
    rogue = make_release("ECM", "6.6.6", hardware=("2.0", "2.1"))
    monkeypatch.setattr("ota.campaigns.unreleased_firmware", lambda releases: [])
    launch_campaign(fleet_operator, [rogue])
    outcome = agent.run_update()
    assert outcome.result == "failed"
    assert "not a signed release" in outcome.detail
    assert {agent.ecus[e].sw_version for e in ("ECU_001", "ECU_009", "ECU_017")} != {"6.6.6"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_campaign_over_pqc_tls_with_uptane_metadata(
    registry, package_keys, fleet_operator, tmp_path, settings
) -> None:
    from otaproject.asgi import application
    from pqc.catalogue import get_configuration
    from pqc.client import ClientCredentials
    from pqc.pki import FleetPki
    from pqc.server import listeners_from_settings, start_in_thread, stop_in_thread
    from simulator.ecus import load_build_sheet
    from simulator.https import VehicleHttps
    from simulator.tests.conftest import close_other_threads_connections

    pki = FleetPki(tmp_path / "pki")
    pki.init(hostnames=["localhost"])
    listeners = listeners_from_settings(
        application=application,
        pki=pki,
        host="127.0.0.1",
        vehicle_port=0,
        console_port=0,
        with_mqtt=False,
        allow_classical=False,
    )
    ports = start_in_thread(listeners)
    settings.OTA_PUBLIC_BASE_URL = f"https://localhost:{ports['vehicle']}"
    vin = "WVWZZZ1JZ3W386752"
    issued = pki.issue_vehicle(vin, family="ml-dsa-65")
    pki.write_vehicle_bundle(issued, tmp_path / "certs")
    api = VehicleHttps(
        host="127.0.0.1",
        port=ports["vehicle"],
        config=get_configuration(13),  # X25519MLKEM768 with ML-DSA-65 certificates
        credentials=ClientCredentials.from_dir(tmp_path / "certs"),
        server_hostname="localhost",
    )
    try:
        offline = set_up_repositories(tmp_path)
        agent = OtaAgent(
            vin=vin,
            api=api,
            trust=__import__("firmware.signing").signing.load_trust_set(package_keys),
            ecus=load_build_sheet(Path(settings.ECU_REGISTRY_FILE), vin),
            state_dir=tmp_path / "vehicle",
        )
        with_uptane(agent, tmp_path)
        agent.register()
        agent.send_vci("power_on")
        ecm = make_release("ECM", "2.0.0", hardware=("2.0", "2.1"))
        sign_release(offline, tmp_path)
        launch_campaign(fleet_operator, [ecm])
        outcome = agent.run_update()
        assert outcome.result == "succeeded", outcome.detail
        assert OtaUpdate.objects.get(vehicle__vin=vin).state == UpdateState.SUCCEEDED
        assert {s.group for s in api.sessions} == {"X25519MLKEM768"}
        # Trusted metadata persisted on the vehicle, both repositories.
        assert (tmp_path / "vehicle" / "uptane" / "image" / "timestamp.json").exists()
        assert (tmp_path / "vehicle" / "uptane" / "director" / "targets.json").exists()
    finally:
        api.close()
        stop_in_thread(listeners)
        close_other_threads_connections()
