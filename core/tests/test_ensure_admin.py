from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from core.accounts import ensure_administrator
from core.models import AuditEvent


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


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "This password is too short. It must contain at least 8 characters."),
        ("password123", "This password is too common."),
    ],
)
def test_a_weak_password_from_the_environment_is_refused(db, monkeypatch, password, reason) -> None:
    monkeypatch.setenv("OTA_ADMIN_PASSWORD", password)
    with pytest.raises(CommandError) as refused:
        call_command("ensure_admin")
    assert str(refused.value) == f"OTA_ADMIN_PASSWORD is refused: {reason}"
    assert not get_user_model().objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_weak_password_does_not_replace_a_good_one(db, monkeypatch) -> None:
    monkeypatch.setenv("OTA_ADMIN_PASSWORD", "correct horse battery")
    call_command("ensure_admin")
    monkeypatch.setenv("OTA_ADMIN_PASSWORD", "12345678")
    with pytest.raises(CommandError, match="^OTA_ADMIN_PASSWORD is refused: "):
        call_command("ensure_admin")
    assert authenticate(username="admin", password="correct horse battery") is not None


def test_the_service_refuses_a_weak_password(db) -> None:
    with pytest.raises(ValidationError):
        ensure_administrator(
            username="ops", password="qwerty", password_source="test", actor="system:test"
        )
    assert not get_user_model().objects.exists()


def test_a_user_name_django_would_not_accept_is_refused(db, monkeypatch) -> None:
    monkeypatch.setenv("OTA_ADMIN_USERNAME", "root op!")
    monkeypatch.setenv("OTA_ADMIN_PASSWORD", "correct horse battery")
    with pytest.raises(CommandError) as refused:
        call_command("ensure_admin")
    assert str(refused.value).startswith("OTA_ADMIN_USERNAME is refused: Enter a valid username.")
    assert not get_user_model().objects.exists()
