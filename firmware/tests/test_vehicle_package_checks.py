"""The reference vehicle's own checks of a verified package: replays, and whose package it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware import otap
from firmware.tests.otap_helpers import KeyRing, build_bytes
from simulator.ecus import load_build_sheet
from simulator.ota import OtaAgent

REGISTRY = Path(__file__).resolve().parents[2] / "config" / "ecu_registry.yaml"
VIN = "WVWZZZ1JZ3W386752"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing(tmp_path_factory.mktemp("keys") / "signing")


def _agent(keys: KeyRing, tmp_path: Path) -> OtaAgent:
    # Verification never touches the network, so the agent gets no HTTPS client.
    return OtaAgent(
        vin=VIN,
        api=None,  # type: ignore[arg-type]
        trust=keys.trust,
        ecus=load_build_sheet(REGISTRY, VIN),
        state_dir=tmp_path / "vehicle",
    )


def _package(
    keys: KeyRing, tmp_path: Path, *, gateway: str, ecu_id: str, package_version: int
) -> Path:
    (tmp_path / "image.bin").write_bytes(b"new engine map" * 100)
    source = otap.EntrySource(ecu_id, "2.0.0", tmp_path / "image.bin", current_version="1.1.1")
    path = tmp_path / f"{gateway}-{package_version}.otap"
    path.write_bytes(build_bytes(keys, [source], gateway=gateway, package_version=package_version))
    return path


def _plan(ecu_id: str) -> dict:
    return {"items": [{"ecu_id": ecu_id, "to_version": "2.0.0"}]}


def test_the_vehicle_refuses_the_package_it_installed_last(keys: KeyRing, tmp_path: Path) -> None:
    agent = _agent(keys, tmp_path)
    path = _package(keys, tmp_path, gateway="ZGW_FRONT", ecu_id="ECU_001", package_version=41)
    agent.min_package_version["ZGW_FRONT"] = 40
    assert agent._verify(_plan("ECU_001"), {"ZGW_FRONT": path}, tamper=False)
    agent.min_package_version["ZGW_FRONT"] = 41
    with pytest.raises(otap.OtapError, match="replay or rollback refused"):
        agent._verify(_plan("ECU_001"), {"ZGW_FRONT": path}, tamper=False)


def test_the_vehicle_refuses_a_package_for_an_ecu_behind_another_gateway(
    keys: KeyRing, tmp_path: Path
) -> None:
    agent = _agent(keys, tmp_path)
    rear = next(e for e in agent.ecus.values() if e.zone != "ZGW_FRONT").zone
    # Signed for the other gateway, offered under that gateway's name: only the vehicle's
    # knowledge of where ECU_001 sits catches it.
    path = _package(keys, tmp_path, gateway=rear, ecu_id="ECU_001", package_version=5)
    with pytest.raises(ValueError, match=f"ECU_001 is behind ZGW_FRONT, not {rear}"):
        agent._verify(_plan("ECU_001"), {rear: path}, tamper=False)


def test_the_vehicle_refuses_a_package_for_a_gateway_it_does_not_have(
    keys: KeyRing, tmp_path: Path
) -> None:
    agent = _agent(keys, tmp_path)
    path = _package(keys, tmp_path, gateway="ZGW_TRAILER", ecu_id="ECU_001", package_version=5)
    with pytest.raises(ValueError, match="no zonal gateway ZGW_TRAILER"):
        agent._verify(_plan("ECU_001"), {"ZGW_TRAILER": path}, tamper=False)
