from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from firmware.models import SigningKey

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("signing_keys", *args, stdout=out)
    return out.getvalue()


def test_generate_list_and_rotate_keep_disk_and_inventory_in_step() -> None:
    assert "generated k1" in _run("generate", "--name", "k1")
    private = Path(settings.SIGNING_KEY_DIR) / "k1" / "mldsa65.key.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "k2 is now active" in _run("rotate", "--name", "k2")
    listing = _run("list")
    assert "k1" in listing and "retired" in listing
    assert dict(SigningKey.objects.values_list("name", "status")) == {
        "k1": "retired",
        "k2": "active",
    }
    assert (Path(settings.SIGNING_KEY_DIR) / "trust.pem").read_text().count("BEGIN PUBLIC KEY") == 4


def test_second_generate_is_a_command_error() -> None:
    _run("generate")
    with pytest.raises(CommandError, match="rotate"):
        _run("generate")


def test_generate_if_missing_creates_one_key_and_then_leaves_it(capsys) -> None:
    call_command("signing_keys", "generate", "--if-missing")
    call_command("signing_keys", "generate", "--if-missing")
    assert SigningKey.objects.count() == 1
    assert "nothing generated" in capsys.readouterr().out
