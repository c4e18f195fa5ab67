"""A database outage answers every vehicle request with 503 JSON and Retry-After, quickly."""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connection
from psycopg_pool import PoolTimeout


def _refuse(error: Exception):
    def wrapper(execute, sql, params, many, context):
        raise error

    return wrapper


@pytest.mark.parametrize(
    "error",
    [
        OperationalError('connection to server at "127.0.0.1", port 5432 failed: refused'),
        PoolTimeout("couldn't get a connection after 3.00 sec"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/ota/check", "/api/v1/ota/status"])
def test_an_unreachable_database_answers_503_json(vehicle_client, error, path) -> None:
    started = time.monotonic()
    with connection.execute_wrapper(_refuse(error)):
        response = vehicle_client.post(path, {"vmg_state": 1}, format="json")
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert response["Retry-After"].isdigit()
    assert response.json()["error"]["code"] == "database_unavailable"


def test_the_service_answers_again_once_the_database_is_back(vehicle_client) -> None:
    with connection.execute_wrapper(_refuse(OperationalError("server closed the connection"))):
        assert vehicle_client.post("/api/v1/ota/check", {}, format="json").status_code == 503
    response = vehicle_client.post("/api/v1/ota/check", {}, format="json")
    assert response.status_code == 200
    assert response.json()["update_available"] is False


def test_a_programming_error_is_not_disguised_as_an_outage() -> None:
    from core.db import is_database_unavailable

    assert not is_database_unavailable(ValueError("bug"))
    assert not is_database_unavailable(OperationalError("database is locked"))
