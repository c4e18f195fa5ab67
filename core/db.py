"""Database faults the services survive: deadlocks retried, outages told apart from bugs."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# SQLSTATEs PostgreSQL gives a transaction that lost a race and may simply be run again.
RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
# SQLSTATE classes of a server that cannot be reached or is shutting down.
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57")


def _sqlstate(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return str(getattr(cause, "sqlstate", "") or getattr(exc, "sqlstate", "") or "")


def _driver_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """psycopg's own (OperationalError, InterfaceError): raw driver cursors are not wrapped."""
    try:
        import psycopg
    except ImportError:  # SQLite-only installations
        return (), ()
    return (psycopg.OperationalError,), (psycopg.InterfaceError,)


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure (PostgreSQL), or a busy database file (SQLite)."""
    if not isinstance(exc, (OperationalError, *_driver_errors()[0])):
        return False
    return _sqlstate(exc) in RETRYABLE_SQLSTATES or "database is locked" in str(exc)


def is_database_unavailable(exc: BaseException) -> bool:
    """True when the database cannot be reached at all (not when a query is wrong)."""
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # SQLite-only installations
        PoolTimeout = ()  # noqa: N806
    if PoolTimeout and isinstance(exc, PoolTimeout):
        return True
    operational, interface = _driver_errors()
    if isinstance(exc, (InterfaceError, *interface)):
        return True
    if not isinstance(exc, (OperationalError, *operational)) or is_retryable(exc):
        return False
    state = _sqlstate(exc)
    if state:
        return state.startswith(UNAVAILABLE_SQLSTATE_CLASSES)
    # psycopg raises connection failures without a SQLSTATE.
    return True


def retry_on_conflict(
    attempts: int = 4, *, base_delay: float = 0.02
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a transactional service again when it lost a deadlock or serialization race.

    Bounded: `attempts` runs in all, with a short random backoff. Inside an outer transaction
    nothing is retried (the outer transaction is already aborted), so the error propagates.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            connection = connections[DEFAULT_DB_ALIAS]
            for attempt in range(1, attempts + 1):
                outermost = not connection.in_atomic_block
                try:
                    return func(*args, **kwargs)
                except OperationalError as exc:
                    if not outermost or attempt == attempts or not is_retryable(exc):
                        raise
                    logger.warning(
                        "%s lost a database race (attempt %d): %s", func.__name__, attempt, exc
                    )
                    time.sleep(base_delay * attempt * (1 + random.random()))  # noqa: S311
            raise AssertionError("unreachable")

        return wrapper

    return decorate
