"""Checks GET /api/v1/health against a reachable and an unreachable database."""

import contextlib
import logging
import socket
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import Client

# A transaction test, so that the test can close the connection and open it elsewhere.
pytestmark = pytest.mark.django_db(transaction=True)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _database_at_closed_port() -> Iterator[int]:
    """Point the default connection at a closed port of 127.0.0.1; yield that port."""
    saved = {key: connection.settings_dict[key] for key in ("HOST", "PORT")}
    port = _closed_port()
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(port))
    try:
        yield port
    finally:
        connection.close()
        connection.settings_dict.update(saved)


@pytest.fixture
def database_down() -> Iterator[int]:
    with _database_at_closed_port() as port:
        yield port


def test_health_with_database_up():
    response = Client().get("/api/v1/health")

    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_health_with_database_down(database_down, caplog):
    response = Client().get("/api/v1/health")

    assert response.status_code == 503
    assert response.json() == {
        "detail": (
            "The database cannot be queried. Check that PostgreSQL runs and that DATABASE_URL "
            "points at it."
        ),
        "code": "database_unavailable",
    }
    # django.request adds its usual "Service Unavailable" line for every 5xx response.
    errors = [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR and record.name != "django.request"
    ]
    assert [record.getMessage() for record in errors] == ["health.database_unavailable"]
    assert errors[0].error_type == "OperationalError"
    assert f'"127.0.0.1", port {database_down} failed' in errors[0].error
    assert errors[0].exc_info is None


def test_health_recovers_with_database():
    with _database_at_closed_port():
        down = Client().get("/api/v1/health")

    up = Client().get("/api/v1/health")

    assert down.status_code == 503
    assert up.status_code == 200
    assert up.json() == {"ok": True}
