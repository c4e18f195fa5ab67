from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.tokens import (
    create_token,
    find_token,
    is_expired,
    revoke_all_tokens,
    revoke_token,
    tokens_of,
)

ACTOR = "system:api_token"
MAX_DAYS = 365


class Command(BaseCommand):
    help = "Operator API tokens: create one (shown once), list a user's tokens, revoke them."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="create a token and print it once")
        create.add_argument("username")
        create.add_argument(
            "--days", type=int, default=30, help=f"lifetime in days, 1..{MAX_DAYS} (default 30)"
        )
        listing = actions.add_parser("list", help="the user's tokens, by key prefix")
        listing.add_argument("username")
        revoke = actions.add_parser("revoke", help="revoke one token by its key prefix, or --all")
        revoke.add_argument("username")
        revoke.add_argument("key", nargs="?", default="", help="key prefix shown by list")
        revoke.add_argument("--all", action="store_true", help="revoke every token of the user")

    def handle(self, *args: Any, **options: Any) -> None:
        user = _user_named(options["username"])
        action = options["action"]
        if action == "create":
            self._create(user, options["days"])
        elif action == "list":
            self._list(user)
        elif options["all"]:
            count = revoke_all_tokens(user, actor=ACTOR)
            self.stdout.write(f"revoked {count} token(s) of {user.username}")
        else:
            if not options["key"]:
                raise CommandError(
                    f"give the key shown by `api_token list {user.username}`, or --all"
                )
            token = find_token(user, options["key"])
            if token is None:
                raise CommandError(
                    f"{user.username} has no token starting with {options['key']!r} "
                    f"(or several do); see `api_token list {user.username}`"
                )
            revoke_token(token, actor=ACTOR)
            self.stdout.write(f"revoked {token.token_key} of {user.username}")

    def _create(self, user: User, days: int) -> None:
        if not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--days must be between 1 and {MAX_DAYS}, got {days}")
        token, plain = create_token(user, actor=ACTOR, lifetime=datetime.timedelta(days=days))
        self.stdout.write(
            f"token: {plain}\nkey {token.token_key} of {user.username}, "
            f"expires {token.expiry:%Y-%m-%d %H:%M} UTC; it is not shown again"
        )

    def _list(self, user: User) -> None:
        tokens = tokens_of(user)
        for token in tokens:
            expiry = f"{token.expiry:%Y-%m-%d %H:%M} UTC" if token.expiry else "never"
            state = "expired" if is_expired(token) else "valid"
            self.stdout.write(
                f"{token.token_key}  created {token.created:%Y-%m-%d %H:%M} UTC  "
                f"expires {expiry}  {state}"
            )
        if not tokens:
            self.stdout.write(f"{user.username} has no tokens")


def _user_named(username: str) -> User:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user {username!r}")
    return user
