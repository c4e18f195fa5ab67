#!/usr/bin/env python
from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError, ProgrammingError

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A setting the operator can fix: its one-line message, not a traceback.
        sys.exit(f"configuration error: {_first_line(exc)}")
    except (OperationalError, ProgrammingError) as exc:
        message = _first_line(exc)
        if "no such table" in message or "does not exist" in message:
            sys.exit(f"database error: {message} ({_database()}; run `manage.py migrate` first)")
        # Most often the database is down or DATABASE_URL names the wrong one.
        sys.exit(f"database error: {message} ({_database()}; check DATABASE_URL)")
    except OSError as exc:
        # A file or directory a command was given (or a setting names) cannot be used.
        sys.exit(f"error: {exc}")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _database() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    where = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}"
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite file {db['NAME']}"
    return f"database {db['NAME']!r} at {where}"


if __name__ == "__main__":
    main()
