from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command


def test_creates_an_administrator_with_a_printed_password(db, capsys, monkeypatch) -> None:
    monkeypatch.delenv("OTA_ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = out.rsplit("password: ", 1)[1].strip()
    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_superuser
    call_command("ensure_admin")
    assert "exists" in capsys.readouterr().out
    assert get_user_model().objects.count() == 1


def test_password_from_the_environment(db, monkeypatch) -> None:
    monkeypatch.setenv("OTA_ADMIN_USERNAME", "root-op")
    monkeypatch.setenv("OTA_ADMIN_PASSWORD", "correct horse battery")
    call_command("ensure_admin")
    assert authenticate(username="root-op", password="correct horse battery") is not None
