from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import CommandError, call_command

from ecus.models import EcuType, RegistryEcu, RegistryZone


def _registry_document() -> dict:
    return yaml.safe_load(Path(settings.ECU_REGISTRY_FILE).read_text())


def _write(tmp_path: Path, document: dict) -> str:
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_imports_the_shipped_registry(db, capsys) -> None:
    call_command("import_registry", str(settings.ECU_REGISTRY_FILE))
    assert RegistryEcu.objects.count() == 100
    assert RegistryZone.objects.count() == 6
    assert set(RegistryEcu.objects.values_list("ecu_id", flat=True)) == {
        f"ECU_{n:03d}" for n in range(1, 101)
    }
    out = capsys.readouterr().out
    assert "ECUs 100/100" in out
    assert "ecus: 100 created" in out


def test_second_run_changes_nothing(db, capsys) -> None:
    call_command("import_registry", str(settings.ECU_REGISTRY_FILE))
    before = list(RegistryEcu.objects.values().order_by("ecu_id"))
    call_command("import_registry", str(settings.ECU_REGISTRY_FILE))
    assert list(RegistryEcu.objects.values().order_by("ecu_id")) == before
    assert "ecus: 0 created, 0 updated, 100 unchanged" in capsys.readouterr().out


def test_changed_entry_is_updated_in_place(db, tmp_path) -> None:
    call_command("import_registry", str(settings.ECU_REGISTRY_FILE))
    original_pk = RegistryEcu.objects.get(ecu_id="ECU_007").pk
    document = _registry_document()
    document["ecus"][6]["default_sw_version"] = "9.9.9"
    call_command("import_registry", _write(tmp_path, document))
    entry = RegistryEcu.objects.get(ecu_id="ECU_007")
    assert entry.pk == original_pk
    assert entry.default_sw_version == "9.9.9"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["ecus"][3].pop("type"), "ecus[3] (ECU_004): field 'type' is missing"),
        (lambda d: d["ecus"][4].update(type="NOPE"), "unknown ECU type 'NOPE'"),
        (lambda d: d["ecus"][5].update(zone="ZGW_MARS"), "unknown zone 'ZGW_MARS'"),
        (lambda d: d["ecus"][6].update(default_sw_version="one"), "field 'default_sw_version'"),
        (lambda d: d["ecus"][7].update(doip_logical_address="0x1FFFF"), "16-bit DoIP address"),
        (lambda d: d["ecus"][8].update(ecu_id="ECU_001"), "duplicate ecu_id 'ECU_001'"),
        (lambda d: d["ecus"][9].update(ecu_id="ECU_9"), "field 'ecu_id' has an invalid value"),
        (lambda d: d["zones"][0].update(zone_number=99), "field 'zone_number' must be 1..16"),
        (lambda d: d.update(ecus=[]), "'ecus' must be a non-empty list"),
        (
            lambda d: d["ecus"][2].update(update_prioity=1),
            "ecus[2] (ECU_003): unknown field 'update_prioity' (did you mean 'update_priority'?)",
        ),
        (
            lambda d: d["zones"][1].update(colour="red"),
            "zones[1] (ZGW_REAR): unknown field 'colour'; known fields: doip_logical_address, "
            "gateway_id, name, zone_number",
        ),
        (lambda d: d["ecu_types"][0].update(nmae="x"), "ecu_types[0]: unknown field 'nmae'"),
        (lambda d: d.update(ecu=[]), "registry: unknown key 'ecu' (did you mean 'ecus'?)"),
        (
            lambda d: d.update(version=2),
            "registry: format version 2 is not supported (this server reads version 1)",
        ),
        (lambda d: d.update(version="1"), "registry: format version '1' is not supported"),
        (lambda d: d.pop("version"), "registry: key 'version' is missing (version: 1)"),
    ],
)
def test_bad_registry_gives_clear_error_and_changes_nothing(db, tmp_path, mutate, message) -> None:
    call_command("import_registry", str(settings.ECU_REGISTRY_FILE))
    before = list(RegistryEcu.objects.values().order_by("ecu_id"))
    document = _registry_document()
    document["ecus"][0]["name"] = "renamed before the bad entry"
    mutate(document)
    with pytest.raises(CommandError, match="registry not imported") as excinfo:
        call_command("import_registry", _write(tmp_path, document))
    assert message in str(excinfo.value)
    assert list(RegistryEcu.objects.values().order_by("ecu_id")) == before


def test_unreadable_and_non_yaml_files_are_refused(db, tmp_path) -> None:
    with pytest.raises(CommandError, match="cannot be read"):
        call_command("import_registry", str(tmp_path / "missing.yaml"))
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("ecus: [unclosed")
    with pytest.raises(CommandError, match="not valid YAML"):
        call_command("import_registry", str(garbage))
    assert not EcuType.objects.exists()
