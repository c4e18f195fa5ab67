from __future__ import annotations

import copy

import pytest
import yaml
from django.conf import settings

from pqc.catalogue import CatalogueError, build_policy, load_catalogue, parse_catalogue


@pytest.fixture
def raw() -> dict:
    with open(settings.PQC_CONFIG_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def test_catalogue_has_the_thirteen_benchmark_configurations_and_three_hybrids() -> None:
    configs = load_catalogue()
    matrix = [c for c in configs if not c.hybrid]
    hybrids = {c.group for c in configs if c.hybrid}

    assert [c.id for c in matrix] == list(range(13))
    assert hybrids == {"X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024"}
    kem_by_sig = {(c.group, c.signature) for c in matrix if c.group.startswith("MLKEM")}
    assert len(kem_by_sig) == 12  # 3 ML-KEM x (ECDSA + 3 ML-DSA)


def test_default_configuration_is_mlkem768_with_ecdsa_p256() -> None:
    config = next(c for c in load_catalogue() if c.id == 1)
    assert (config.group, config.signature, config.group_code) == ("MLKEM768", "ecdsa-p256", 0x0201)


def test_only_the_x25519_baseline_is_classical() -> None:
    assert [c.group for c in load_catalogue() if c.classical] == ["x25519"]


def test_default_policy_refuses_classical_and_prefers_the_default() -> None:
    policy = build_policy(allow_classical=False, prefer=1)
    assert not policy.allows_classical
    assert "x25519" not in policy.groups
    assert policy.configurations[0].id == 1
    assert policy.groups[0] == "MLKEM768"


def test_policy_allows_classical_when_the_setting_says_so(settings) -> None:
    settings.PQC_ALLOW_CLASSICAL = True
    assert build_policy().allows_classical


def test_explicit_accept_list_can_name_the_classical_baseline() -> None:
    policy = build_policy(accept=[6, 4], allow_classical=False, prefer=4)
    assert [c.id for c in policy.configurations] == [4, 6]
    assert policy.signature_algorithms == ["mldsa65", "ecdsa_secp256r1_sha256"]


def test_unknown_config_id_is_named_in_the_error() -> None:
    with pytest.raises(CatalogueError, match=r"accept: unknown config ids \[99\]"):
        build_policy(accept=[1, 99])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["configurations"][0].pop("group"), r"configurations\[0\]\.group: missing"),
        (lambda d: d["configurations"][1].update(id="one"), r"configurations\[1\]\.id: expected int"),
        (lambda d: d["configurations"][2].update(signature="rsa"), r"configurations\[2\]\.signature"),
        (lambda d: d["configurations"][3].update(signature_algorithm="mldsa87"),
         r"configurations\[3\]\.signature_algorithm"),
        (lambda d: d["configurations"][4].update(id=0), "ids must be unique"),
        (lambda d: d["configurations"][0].update(colour="red"), "unknown fields"),
    ],
)  # fmt: skip
def test_invalid_catalogue_is_rejected_naming_the_field(raw: dict, mutate, message: str) -> None:
    broken = copy.deepcopy(raw)
    mutate(broken)
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(broken)
