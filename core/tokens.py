"""Operator API tokens: created, listed and revoked here, stored only as SHA-512 digests (knox)."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS, knox_settings

from core.audit import record_event

OLD_PLAIN_TOKEN_TABLE = "authtoken_token"


def _token_facts(token: AuthToken) -> dict[str, Any]:
    return {
        "user": token.user.get_username(),
        "expires_at": token.expiry.isoformat() if token.expiry else None,
    }


@transaction.atomic
def create_token(
    user: User, *, actor: Any, lifetime: datetime.timedelta | None
) -> tuple[AuthToken, str]:
    """Create a token for `user`; the plain token is returned once and never stored.

    `lifetime=None` makes a token that never expires.
    """
    token, plain = AuthToken.objects.create(user=user, expiry=lifetime)
    record_event(
        action="auth.token_created",
        actor=actor,
        object_type="api_token",
        object_id=token.token_key,
        details=_token_facts(token),
    )
    return token, plain


@transaction.atomic
def revoke_token(token: AuthToken, *, actor: Any) -> None:
    """Revoke one token: it authenticates nothing from now on."""
    facts = _token_facts(token)
    token.delete()
    record_event(
        action="auth.token_revoked",
        actor=actor,
        object_type="api_token",
        object_id=token.token_key,
        details=facts,
    )


def revoke_all_tokens(user: User, *, actor: Any) -> int:
    """Revoke every token of `user`; returns how many there were."""
    tokens = list(AuthToken.objects.filter(user=user).select_related("user"))
    for token in tokens:
        revoke_token(token, actor=actor)
    return len(tokens)


def tokens_of(user: User) -> list[AuthToken]:
    return list(AuthToken.objects.filter(user=user).select_related("user").order_by("created"))


def is_expired(token: AuthToken) -> bool:
    return token.expiry is not None and token.expiry <= timezone.now()


def find_token(user: User, key_prefix: str) -> AuthToken | None:
    """The token of `user` whose public key prefix (shown by `api_token list`) is `key_prefix`."""
    if not key_prefix:
        return None
    matches = [t for t in tokens_of(user) if t.token_key.startswith(key_prefix)]
    return matches[0] if len(matches) == 1 else None


def migrate_plain_tokens(connection: BaseDatabaseWrapper) -> int:
    """Move tokens of DRF's plain-text table into hashed tokens, then drop that table.

    The old keys keep working (as "Token <key>") and expire after the default token lifetime.
    Returns how many tokens were moved.
    """
    if OLD_PLAIN_TOKEN_TABLE not in connection.introspection.table_names():
        return 0
    table = connection.ops.quote_name(OLD_PLAIN_TOKEN_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name('key')}, user_id FROM {table}")  # noqa: S608
        rows = cursor.fetchall()
    expiry = timezone.now() + knox_settings.TOKEN_TTL
    with transaction.atomic(using=connection.alias):
        for plain, user_id in rows:
            token = AuthToken(
                user_id=user_id,
                digest=hash_token(plain),
                token_key=plain[: CONSTANTS.TOKEN_KEY_LENGTH],
                expiry=expiry,
            )
            token.save(force_insert=True, using=connection.alias)
            record_event(
                action="auth.token_created",
                actor="system:migration",
                object_type="api_token",
                object_id=token.token_key,
                details={**_token_facts(token), "migrated": True},
            )
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {table}")
    return len(rows)
