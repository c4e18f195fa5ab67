from __future__ import annotations

from ota.planning import Candidate, EcuState, Requirement, analyse_vehicle, build_plan
from ota.tests.conftest import make_release


def ecu(
    ecu_id: str, type_id: int, version_key: str, *, priority: int = 3, hw: str = "2.0"
) -> EcuState:
    return EcuState(
        ecu_id, type_id, f"T{type_id}", "ZGW_FRONT", hw, version_key, version_key, priority
    )


def candidate(firmware_id: int, type_id: int, version_key: str, hw: str = "2.0") -> Candidate:
    return Candidate(firmware_id, type_id, version_key, version_key, hw)


def test_outdated_ecus_get_the_newest_compatible_release() -> None:
    plan = build_plan(
        [ecu("E1", 1, "1"), ecu("E2", 1, "3"), ecu("E3", 1, "1", hw="9.9")],
        [candidate(10, 1, "2"), candidate(11, 1, "4", hw="9.9")],
        [],
    )
    assert [(i.ecu_id, i.to_version) for i in plan.items] == [("E1", "2"), ("E3", "4")]


def test_required_ecu_is_updated_first_even_with_lower_priority() -> None:
    plan = build_plan(
        [ecu("E1", 1, "1", priority=1), ecu("E2", 2, "1", priority=4)],
        [candidate(10, 1, "2"), candidate(20, 2, "5")],
        [Requirement(10, 2, "T2", "5", "5")],
        firmware_ids={10},
    )
    assert [(i.ecu_id, i.reason) for i in plan.items] == [("E2", "dependency"), ("E1", "outdated")]
    assert plan.items[1].requires == ["E2"]


def test_dependency_on_hardware_without_a_release_refuses_the_plan(vehicle) -> None:
    make_release("TCM", "3.0.0", hardware=("2.0",))  # nothing for ECU_018's hardware 2.1
    make_release("ECM", "2.0.0", hardware=("2.0",), requires={"TCM": "3.0.0"})
    plan = analyse_vehicle(vehicle.pk)
    assert plan.items == []
    assert "ECU_018 (hardware 2.1)" in plan.refused


def test_unsatisfiable_dependency_refuses_the_plan_with_a_reason() -> None:
    plan = build_plan(
        [ecu("E1", 1, "1"), ecu("E2", 2, "1")],
        [candidate(10, 1, "2"), candidate(20, 2, "3")],
        [Requirement(10, 2, "T2", "5", "5")],
    )
    assert plan.items == []
    assert "needs T2 >= 5" in plan.refused
    assert "E2" in plan.refused


def test_dependency_on_a_missing_ecu_type_refuses_the_plan() -> None:
    plan = build_plan(
        [ecu("E1", 1, "1")], [candidate(10, 1, "2")], [Requirement(10, 7, "T7", "1", "1")]
    )
    assert "does not have" in plan.refused


def test_circular_dependencies_refuse_the_plan() -> None:
    plan = build_plan(
        [ecu("E1", 1, "1"), ecu("E2", 2, "1")],
        [candidate(10, 1, "2"), candidate(20, 2, "2")],
        [Requirement(10, 2, "T2", "2", "2"), Requirement(20, 1, "T1", "2", "2")],
    )
    assert "circular" in plan.refused


def test_satisfied_dependency_adds_nothing() -> None:
    plan = build_plan(
        [ecu("E1", 1, "1"), ecu("E2", 2, "6")],
        [candidate(10, 1, "2")],
        [Requirement(10, 2, "T2", "5", "5")],
    )
    assert [i.ecu_id for i in plan.items] == ["E1"]


def test_zone_restriction_leaves_other_zones_alone() -> None:
    plan = build_plan([ecu("E1", 1, "1")], [candidate(10, 1, "2")], [], zones=["ZGW_REAR"])
    assert plan.items == []


def test_analysis_of_a_registered_vehicle_uses_real_releases(
    vehicle, django_assert_max_num_queries
) -> None:
    make_release("TCM", "3.0.0", hardware=("2.0", "2.1"))
    make_release("ECM", "2.0.0", hardware=("2.0",), requires={"TCM": "3.0.0"})
    with django_assert_max_num_queries(3):
        plan = analyse_vehicle(vehicle.pk)
    order = [item.ecu_id for item in plan.items]
    assert set(order) == {"ECU_001", "ECU_017", "ECU_002", "ECU_010", "ECU_018"}
    # Every TCM precedes the ECMs that need it.
    assert max(order.index(e) for e in ("ECU_002", "ECU_010", "ECU_018")) < min(
        order.index("ECU_001"), order.index("ECU_017")
    )
