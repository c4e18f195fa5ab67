"""Full and partial verification on the vehicle, and Uptane's attacks against it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from uptane import keys
from uptane import metadata as md
from uptane.tests.fleet import DIRECTOR_URL, IMAGE, IMAGE_PATH, new_fleet
from uptane.verifier import PartialVerifier, VerificationError, verify_image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def template_fleet(tmp_path_factory: pytest.TempPathFactory):
    # Key generation dominates: build the repositories once, copy per test.
    return new_fleet(tmp_path_factory.mktemp("template"))


@pytest.fixture
def fleet(template_fleet, tmp_path: Path):
    import copy

    fleet = copy.deepcopy(template_fleet)
    fleet.state_dir = tmp_path / "vehicle"
    return fleet


def _refused(fleet, reason: str, **kwargs) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        fleet.verifier(**kwargs).refresh()
    assert reason in caught.value.reason, caught.value
    return caught.value


def test_vehicle_installs_what_both_repositories_sign(fleet) -> None:
    (approved,) = fleet.verifier().refresh()
    assert (approved.ecu_id, approved.path, approved.length) == ("ECM-01", IMAGE_PATH, len(IMAGE))
    verify_image(approved, IMAGE)
    with pytest.raises(VerificationError, match="SHA-256"):
        verify_image(approved, IMAGE[:-1] + b"!")
    with pytest.raises(VerificationError, match="bytes"):
        verify_image(approved, IMAGE + b"x")


def test_trusted_metadata_survives_a_restart(fleet) -> None:
    fleet.verifier().refresh()
    fleet.direct(data=IMAGE)
    (approved,) = fleet.verifier(first_time=False).refresh()
    assert approved.path == IMAGE_PATH
    assert (fleet.state_dir / "director" / "timestamp.json").exists()


def test_stolen_director_keys_cannot_install_an_unreleased_image(fleet) -> None:
    fleet.direct(path="ECM/6.6.6", data=b"malware")
    _refused(fleet, "not_in_image_repository")


def test_stolen_director_keys_cannot_swap_the_bytes_of_a_released_image(fleet) -> None:
    fleet.direct(data=b"malware with the released name")
    _refused(fleet, "image_mismatch")


def test_one_algorithm_family_alone_signs_nothing(fleet) -> None:
    ecdsa_only = [s for s in fleet.director.signers["targets"] if s.public_key.keytype == "ecdsa"]
    fleet.direct(signers=ecdsa_only)
    _refused(fleet, "UnsignedMetadataError")
    mldsa_only = [s for s in fleet.director.signers["targets"] if s.public_key.keytype == "ml-dsa"]
    fleet.direct(signers=mldsa_only)
    _refused(fleet, "UnsignedMetadataError")


def test_replayed_metadata_is_refused(fleet) -> None:
    old = fleet.director.snapshot_files()
    fleet.direct()
    fleet.verifier().refresh()
    fleet.director.files = old
    _refused(fleet, "director_BadVersionNumberError", first_time=False)


def test_frozen_metadata_is_refused_once_the_timestamp_expires(fleet) -> None:
    past = md.now() - dt.timedelta(minutes=1)
    fleet.director.publish_snapshot_and_timestamp(timestamp_expires=past)
    _refused(fleet, "director_ExpiredMetadataError")


def test_rolled_back_image_targets_are_refused(fleet) -> None:
    released_v1 = fleet.image.snapshot_files()
    fleet.release(path="ECM/2.0.0")
    fleet.verifier().refresh()
    # An attacker serves the older (validly signed) image repository again.
    fleet.image.files = released_v1
    _refused(fleet, "image_BadVersionNumberError", first_time=False)


def test_mix_and_match_of_metadata_from_different_times_is_refused(fleet) -> None:
    old_targets = fleet.director.files[fleet.director.url("targets.json")]
    fleet.direct()
    fleet.director.files[fleet.director.url("targets.json")] = old_targets
    _refused(fleet, "director_BadVersionNumberError")


def test_endless_data_is_cut_off(fleet) -> None:
    fleet.serve()
    url = DIRECTOR_URL + "timestamp.json"
    fleet.director.files[url] = b" " * (10 * 1024 * 1024)
    _refused(fleet, "director_DownloadLengthMismatchError")


def test_wrong_hardware_is_refused(fleet) -> None:
    fleet.direct(hardware="ECM-HW-1.0")
    _refused(fleet, "wrong_hardware")


def test_an_image_released_for_other_hardware_is_refused(fleet) -> None:
    fleet.release(hardware="ECM-HW-9.9")
    _refused(fleet, "wrong_hardware")


def test_an_ecu_the_vehicle_does_not_have_is_refused(fleet) -> None:
    fleet.direct(ecu_id="TCU-99")
    _refused(fleet, "unknown_ecu")


def test_a_root_that_one_algorithm_family_could_sign_is_refused(fleet) -> None:
    with pytest.raises(md.MetadataPolicyError, match="one algorithm family"):
        fleet.director.publish_root(thresholds={"targets": 1})


def test_root_rotation_revokes_the_old_targets_keys(fleet) -> None:
    fleet.verifier().refresh()
    old_root, old_targets = fleet.director.signers["root"], fleet.director.signers["targets"]
    fleet.director.signers["root"] = keys.generate_role_signers("root")
    fleet.director.signers["targets"] = keys.generate_role_signers("targets")
    fleet.director.publish_root(signed_by=old_root)
    fleet.direct()
    assert fleet.verifier(first_time=False).refresh()
    # Metadata still signed by the revoked keys is refused from now on.
    fleet.direct(signers=old_targets)
    _refused(fleet, "UnsignedMetadataError", first_time=False)


def test_a_root_not_signed_by_the_previous_root_is_refused(fleet) -> None:
    fleet.verifier().refresh()
    fleet.director.signers["root"] = keys.generate_role_signers("root")
    fleet.director.publish_root()
    _refused(fleet, "director_UnsignedMetadataError", first_time=False)


def test_raised_threshold_needs_the_added_keys(fleet) -> None:
    fleet.verifier().refresh()
    old_targets = list(fleet.director.signers["targets"])
    fleet.director.signers["targets"] = old_targets + keys.generate_role_signers("targets")
    fleet.director.publish_root(signed_by=fleet.director.signers["root"], thresholds={"targets": 3})
    fleet.direct(signers=old_targets)
    _refused(fleet, "UnsignedMetadataError", first_time=False)
    fleet.direct(signers=fleet.director.signers["targets"][:3])
    assert fleet.verifier(first_time=False).refresh()


def _partial(fleet, tmp_path: Path, hardware: str = "ECM-HW-2.0") -> PartialVerifier:
    return PartialVerifier(
        state_file=tmp_path / "gateway.json",
        director_root=fleet.director.root_bytes(),
        ecu_id="ECM-01",
        hardware_id=hardware,
    )


def _director_targets(fleet) -> bytes:
    return fleet.director.files[fleet.director.url("targets.json")]


def test_partial_verification_finds_this_ecus_image(fleet, tmp_path: Path) -> None:
    image = _partial(fleet, tmp_path).verify(_director_targets(fleet))
    assert image is not None and image.path == IMAGE_PATH
    assert _partial(fleet, tmp_path).verify(_director_targets(fleet)) == image


def test_partial_verification_refuses_rollback_forgery_expiry_and_hardware(
    fleet, tmp_path: Path
) -> None:
    old = _director_targets(fleet)
    fleet.direct()
    _partial(fleet, tmp_path).verify(_director_targets(fleet))
    with pytest.raises(VerificationError, match="rollback"):
        _partial(fleet, tmp_path).verify(old)
    ecdsa_only = [s for s in fleet.director.signers["targets"] if s.public_key.keytype == "ecdsa"]
    fleet.direct(signers=ecdsa_only)
    with pytest.raises(VerificationError, match="director_targets_unsigned"):
        _partial(fleet, tmp_path).verify(_director_targets(fleet))
    fleet.direct(expires=md.now() - dt.timedelta(seconds=1))
    with pytest.raises(VerificationError, match="expired"):
        _partial(fleet, tmp_path).verify(_director_targets(fleet))
    fleet.direct()
    with pytest.raises(VerificationError, match="wrong_hardware"):
        _partial(fleet, tmp_path, hardware="ECM-HW-1.0").verify(_director_targets(fleet))
    with pytest.raises(VerificationError, match="malformed"):
        _partial(fleet, tmp_path).verify(b"{not json")


def test_packages_must_carry_exactly_the_approved_images(fleet) -> None:
    from types import SimpleNamespace

    from uptane.verifier import check_packages

    (approved,) = fleet.verifier().refresh()

    def package(ecu_id: str, data: bytes):
        import hashlib

        entry = SimpleNamespace(
            ecu_id=ecu_id, image_sha256=hashlib.sha256(data).digest(), image_size=len(data)
        )
        return SimpleNamespace(entries=[entry])

    check_packages([approved], [package("ECM-01", IMAGE)])
    with pytest.raises(VerificationError, match="package_mismatch|is not"):
        check_packages([approved], [package("ECM-01", b"other build")])
    with pytest.raises(VerificationError, match="the director does not"):
        check_packages([approved], [package("ECM-01", IMAGE), package("BCM-01", b"x")])


def _delegate_bcm(fleet, supplier_signers):
    import hashlib

    role, keys_by_id = md.supplier_delegation(
        "supplier-acme", [s.public_key for s in supplier_signers], paths=["BCM/*"]
    )
    fleet.image.delegated_signers["supplier-acme"] = supplier_signers
    data = b"BCM firmware 1.2.0"
    ecm = md.image_target(
        IMAGE_PATH,
        length=len(IMAGE),
        sha256=hashlib.sha256(IMAGE).hexdigest(),
        ecu_type="ECM",
        hardware_ids=["ECM-HW-2.0"],
    )
    fleet.image.publish_targets([ecm], delegations=md.delegations_of([(role, keys_by_id)]))
    bcm = md.image_target(
        "BCM/1.2.0",
        length=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        ecu_type="BCM",
        hardware_ids=["BCM-HW-1.0"],
    )
    return bcm, data


def test_a_supplier_delegation_releases_its_own_images(fleet) -> None:
    supplier = keys.generate_role_signers("supplier-acme")
    bcm, data = _delegate_bcm(fleet, supplier)
    fleet.image.publish_targets([bcm], role="supplier-acme")
    fleet.image.publish_snapshot_and_timestamp()
    fleet.direct(path="BCM/1.2.0", data=data, ecu_id="BCM-01", hardware="BCM-HW-1.0")
    (approved,) = fleet.verifier().refresh()
    assert (approved.ecu_id, approved.path) == ("BCM-01", "BCM/1.2.0")


def test_a_supplier_cannot_sign_outside_its_paths_or_with_one_algorithm(fleet) -> None:
    supplier = keys.generate_role_signers("supplier-acme")
    bcm, data = _delegate_bcm(fleet, supplier)
    # The supplier signs an ECM image (not under BCM/*): clients never ask it for ECM paths.
    evil = md.image_target(
        "ECM/6.6.6", length=3, sha256="00" * 32, ecu_type="ECM", hardware_ids=["ECM-HW-2.0"]
    )
    fleet.image.publish_targets([bcm, evil], role="supplier-acme")
    fleet.image.publish_snapshot_and_timestamp()
    fleet.direct(path="ECM/6.6.6", data=b"xyz")
    _refused(fleet, "not_in_image_repository")
    ecdsa_only = [s for s in supplier if s.public_key.keytype == "ecdsa"]
    fleet.image.publish_targets([bcm], role="supplier-acme", signers=ecdsa_only)
    fleet.image.publish_snapshot_and_timestamp()
    fleet.direct(path="BCM/1.2.0", data=data, ecu_id="BCM-01", hardware="BCM-HW-1.0")
    _refused(fleet, "UnsignedMetadataError")


def test_a_delegation_one_algorithm_could_sign_is_refused_by_the_vehicle(fleet) -> None:
    from tuf.api.metadata import Metadata, Targets

    supplier = keys.generate_role_signers("supplier-acme")
    _delegate_bcm(fleet, supplier)
    # Forge what a careless offline tool could produce: the delegation's threshold lowered
    # to 1, validly signed by the targets keys.
    url = fleet.image.url("targets.json")
    metadata = Metadata[Targets].from_bytes(fleet.image.files[url])
    metadata.signed.delegations.roles["supplier-acme"].threshold = 1
    fleet.image.files[url] = md.to_bytes(md.sign(metadata, fleet.image.signers["targets"]))
    fleet.image.publish_snapshot_and_timestamp()
    _refused(fleet, "image_not_hybrid")
