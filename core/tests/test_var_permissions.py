from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _manage(var_dir: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    """Run manage.py as an operator's shell would, with the usual 022 umask."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "MQTT_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "otaproject.settings", "OTA_VAR_DIR": str(var_dir)},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: os.umask(0o022),
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _open_to_others(var_dir: Path) -> list[str]:
    """Every path under var_dir that its group or other users could read, write or enter."""
    found = [str(var_dir)] if _mode(var_dir) & 0o077 else []
    for path in var_dir.rglob("*"):
        if not path.is_symlink() and _mode(path) & 0o077:
            found.append(f"{path.relative_to(var_dir)} {_mode(path):o}")
    return found


def test_settings_create_var_dir_and_secret_key_private(tmp_path) -> None:
    var_dir = tmp_path / "fresh" / "var"
    result = _manage(var_dir, "check")
    assert result.returncode == 0, result.stderr
    assert _mode(var_dir) == 0o700
    assert _mode(var_dir / "secret_key") == 0o600


def test_secure_var_repairs_modes_and_names_each_fix(tmp_path) -> None:
    var_dir = tmp_path / "var"
    (var_dir / "pki").mkdir(parents=True)
    var_dir.chmod(0o755)
    (var_dir / "pki").chmod(0o775)
    database = var_dir / "ota.sqlite3"
    database.write_bytes(b"tokens and password hashes")
    database.chmod(0o644)
    key = var_dir / "pki" / "ca-ml-dsa-65.key"
    key.write_bytes(b"private key")
    key.chmod(0o640)
    already_private = var_dir / "secret_key"
    already_private.write_text("k")
    already_private.chmod(0o600)

    result = _manage(var_dir, "secure_var")

    assert result.returncode == 0, result.stderr
    assert _open_to_others(var_dir) == []
    assert database.read_bytes() == b"tokens and password hashes"
    out = result.stdout
    assert f"{var_dir} 755 -> 700" in out
    assert "pki 775 -> 700" in out
    assert "ota.sqlite3 644 -> 600" in out
    assert "ca-ml-dsa-65.key 640 -> 600" in out
    assert "secret_key" not in out
    again = _manage(var_dir, "secure_var")
    assert "all private" in again.stdout


def test_secure_var_refuses_a_path_that_is_not_a_directory(tmp_path) -> None:
    not_a_dir = tmp_path / "var"
    not_a_dir.write_text("")
    result = _manage(not_a_dir, "secure_var")
    assert result.returncode != 0
    assert "OTA_VAR_DIR" in result.stderr


@pytest.mark.slow
def test_serve_initialisation_leaves_nothing_in_var_open_to_others(tmp_path) -> None:
    """The steps of scripts/serve before runota, on a fresh var/, under a 022 umask."""
    var_dir = tmp_path / "var"
    for step in (
        ["secure_var"],
        ["migrate", "--no-input"],
        ["collectstatic", "--no-input", "-v0"],
        ["pqc_pki", "init"],
        ["signing_keys", "generate", "--if-missing"],
        ["ensure_admin"],
        ["pqc_pki", "issue-vehicle", "WVWZZZ1JZ3W386752", "--out", str(var_dir / "vehicles/v1")],
    ):
        result = _manage(var_dir, *step, timeout=300)
        assert result.returncode == 0, (step, result.stderr)

    assert (var_dir / "ota.sqlite3").exists()
    assert (var_dir / "vehicles/v1/vehicle.key").exists()
    assert _open_to_others(var_dir) == []
