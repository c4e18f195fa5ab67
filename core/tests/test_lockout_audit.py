"""Clearing a login lock-out is an audited act of the operator who does it."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.test import Client
from django.urls import reverse

from core.models import AuditEvent

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"


def _locked_out(settings) -> Client:
    settings.AXES_FAILURE_LIMIT = 2
    client = Client()
    for _ in range(2):
        client.post(LOGIN, {"username": "olga", "password": "not-it"}, secure=True)
    right = client.post(LOGIN, {"username": "olga", "password": "pw-olga"}, secure=True)
    assert right.status_code == 429
    return client


def test_clearing_a_lockout_in_the_admin_is_audited_and_lets_the_user_in(
    fleet_operator, admin_user, settings
) -> None:
    vehicle_side = _locked_out(settings)
    attempt = AccessAttempt.objects.get(username="olga")
    operator = Client()
    operator.force_login(admin_user)

    response = operator.post(
        reverse("admin:axes_accessattempt_changelist"),
        {"action": "clear_lockouts", "_selected_action": [attempt.pk]},
    )

    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    event = AuditEvent.objects.get(action="auth.lockout_cleared")
    assert event.actor_label == f"user:{admin_user.username}"
    assert event.details["username"] == "olga"
    assert event.details["client_address"] == "127.0.0.1"
    assert event.details["locked_out"] is True
    again = vehicle_side.post(LOGIN, {"username": "olga", "password": "pw-olga"}, secure=True)
    assert again.status_code == 302


def test_login_records_cannot_be_deleted_unaudited(fleet_operator, admin_user, settings) -> None:
    _locked_out(settings)
    attempt = AccessAttempt.objects.get(username="olga")
    # Kept only with AXES_ENABLE_ACCESS_FAILURE_LOG; the page exists either way.
    failure = AccessFailureLog.objects.create(
        username="olga", ip_address="127.0.0.1", user_agent="", http_accept="", path_info=LOGIN
    )
    operator = Client()
    operator.force_login(admin_user)

    for url in (
        reverse("admin:axes_accessattempt_delete", args=[attempt.pk]),
        reverse("admin:axes_accessfailurelog_delete", args=[failure.pk]),
    ):
        assert operator.post(url, {"post": "yes"}).status_code == 403
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()
    assert AccessFailureLog.objects.filter(pk=failure.pk).exists()
