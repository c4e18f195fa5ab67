from __future__ import annotations

import datetime
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from core.models import AuditEvent
from core.tokens import create_token, migrate_plain_tokens, revoke_token

pytestmark = pytest.mark.django_db
OPERATOR_ENDPOINT = "/api/v1/vehicles"
LOGIN = "/api/v1/auth/login"


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()
    yield
    cache.clear()


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def _stored_values(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
        return [str(value) for row in cursor.fetchall() for value in row]


def test_token_is_stored_only_as_a_hash(fleet_operator) -> None:
    token, plain = create_token(fleet_operator, actor=fleet_operator, lifetime=None)

    stored = _stored_values(AuthToken._meta.db_table)
    assert stored, "the token row is in the table"
    assert not any(plain in value for value in stored)
    assert token.digest != plain and len(token.digest) == 128
    assert _client(plain).get(OPERATOR_ENDPOINT).status_code == 200


def test_creation_and_revocation_are_audited(fleet_operator, admin_user) -> None:
    token, plain = create_token(
        fleet_operator, actor=admin_user, lifetime=datetime.timedelta(days=1)
    )
    revoke_token(token, actor=admin_user)

    created, revoked = AuditEvent.objects.filter(action__startswith="auth.token_")
    assert (created.action, created.actor, created.object_id) == (
        "auth.token_created",
        admin_user,
        token.token_key,
    )
    assert created.details["user"] == fleet_operator.username
    assert created.details["expires_at"]
    assert (revoked.action, revoked.object_id) == ("auth.token_revoked", token.token_key)
    assert not any(plain in str(event.details) for event in (created, revoked))
    assert _client(plain).get(OPERATOR_ENDPOINT).status_code == 401


def test_expired_token_is_refused(fleet_operator) -> None:
    token, plain = create_token(fleet_operator, actor=None, lifetime=datetime.timedelta(hours=1))
    assert _client(plain).get(OPERATOR_ENDPOINT).status_code == 200
    AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - datetime.timedelta(1))

    response = _client(plain).get(OPERATOR_ENDPOINT)

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid token."


def test_login_logout_and_logout_all(fleet_operator) -> None:
    first = APIClient().post(LOGIN, {"username": "olga", "password": "pw-olga"}, format="json")
    second = APIClient().post(LOGIN, {"username": "olga", "password": "pw-olga"}, format="json")
    assert first.status_code == 200, first.json()
    body = first.json()
    assert set(body) == {"token", "expiry"}
    expiry = datetime.datetime.fromisoformat(body["expiry"])
    assert datetime.timedelta(hours=9) < expiry - timezone.now() <= datetime.timedelta(hours=10)
    one, two = body["token"], second.json()["token"]
    assert _client(one).get(OPERATOR_ENDPOINT).status_code == 200

    assert _client(one).post("/api/v1/auth/logout").status_code == 204
    assert _client(one).get(OPERATOR_ENDPOINT).status_code == 401
    assert _client(two).get(OPERATOR_ENDPOINT).status_code == 200

    third = APIClient().post(LOGIN, {"username": "olga", "password": "pw-olga"}, format="json")
    assert _client(two).post("/api/v1/auth/logout-all").status_code == 204
    assert _client(two).get(OPERATOR_ENDPOINT).status_code == 401
    assert _client(third.json()["token"]).get(OPERATOR_ENDPOINT).status_code == 401
    assert AuthToken.objects.filter(user=fleet_operator).count() == 0
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("auth.token_created") == 3
    assert actions.count("auth.token_revoked") == 3


def test_login_names_a_missing_field(fleet_operator) -> None:
    response = APIClient().post(LOGIN, {"username": "olga"}, format="json")
    assert response.status_code == 400
    assert "password" in response.json()["error"]["fields"]
    assert AuthToken.objects.count() == 0


def test_wrong_password_is_refused_and_audited_without_the_password(fleet_operator) -> None:
    response = APIClient().post(
        LOGIN, {"username": "olga", "password": "guess-1234"}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.details["username"] == "olga"
    assert "guess-1234" not in str(event.details) + str(event.after) + str(event.before)
    assert AuthToken.objects.count() == 0


def test_login_is_throttled(fleet_operator, settings) -> None:
    settings.OTA_TOKEN_LOGIN_THROTTLE = "3/minute"
    codes = [
        APIClient().post(LOGIN, {"username": "olga", "password": "pw-olga"}, format="json")
        for _ in range(4)
    ]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert codes[-1].has_header("Retry-After")


def test_command_creates_lists_and_revokes(fleet_operator) -> None:
    out = StringIO()
    call_command("api_token", "create", "olga", "--days", "7", stdout=out)
    plain = out.getvalue().split("token: ")[1].split()[0]
    token = AuthToken.objects.get(user=fleet_operator)
    assert plain.startswith(token.token_key)
    assert datetime.timedelta(days=6) < token.expiry - timezone.now() <= datetime.timedelta(days=7)
    assert _client(plain).get(OPERATOR_ENDPOINT).status_code == 200

    listing = StringIO()
    call_command("api_token", "list", "olga", stdout=listing)
    assert token.token_key in listing.getvalue()
    assert plain not in listing.getvalue()

    call_command("api_token", "revoke", "olga", token.token_key, stdout=StringIO())
    assert _client(plain).get(OPERATOR_ENDPOINT).status_code == 401
    revoked = AuditEvent.objects.get(action="auth.token_revoked")
    assert revoked.actor_label == "system:api_token"


def test_command_errors_are_one_line(fleet_operator) -> None:
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("api_token", "create", "nobody")
    with pytest.raises(CommandError, match="olga has no token starting with 'abc'"):
        call_command("api_token", "revoke", "olga", "abc")
    with pytest.raises(CommandError, match="--days must be between 1 and 365"):
        call_command("api_token", "create", "olga", "--days", "0")


def test_plain_tokens_of_the_old_table_become_hashed_and_keep_working(fleet_operator) -> None:
    plain = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp, "
            "user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [plain, timezone.now(), fleet_operator.pk],
        )

    assert migrate_plain_tokens(connection) == 1

    assert "authtoken_token" not in connection.introspection.table_names()
    assert not any(plain in value for value in _stored_values(AuthToken._meta.db_table))
    assert _client(plain).get(OPERATOR_ENDPOINT).status_code == 200
    assert AuditEvent.objects.get(action="auth.token_created").details["migrated"] is True
    assert migrate_plain_tokens(connection) == 0


def test_admin_revokes_tokens_through_the_audited_service(fleet_operator, admin_user) -> None:
    from django.test import Client

    token, plain = create_token(fleet_operator, actor=None, lifetime=datetime.timedelta(days=1))
    client = Client()
    client.force_login(admin_user)
    changelist = "/admin/knox/authtoken/"
    assert token.token_key in client.get(changelist).content.decode()
    assert client.get(f"{changelist}add/").status_code == 403

    response = client.post(
        changelist, {"action": "revoke_selected", "_selected_action": [token.pk]}
    )

    assert response.status_code == 302
    assert _client(plain).get(OPERATOR_ENDPOINT).status_code == 401
    revoked = AuditEvent.objects.get(action="auth.token_revoked")
    assert revoked.actor == admin_user
