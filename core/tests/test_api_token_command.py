from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from core.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_revoke_without_a_key_or_all_is_refused_and_revokes_nothing(fleet_operator) -> None:
    call_command("api_token", "create", fleet_operator.username, "--days", "1")
    with pytest.raises(CommandError, match="give the key shown by `api_token list .+`, or --all"):
        call_command("api_token", "revoke", fleet_operator.username)
    assert not AuditEvent.objects.filter(action="auth.token_revoked").exists()


def test_revoke_all_revokes_every_token_with_an_event_each(fleet_operator) -> None:
    for _ in range(2):
        call_command("api_token", "create", fleet_operator.username, "--days", "1")
    call_command("api_token", "revoke", fleet_operator.username, "--all")
    assert AuditEvent.objects.filter(action="auth.token_revoked").count() == 2
