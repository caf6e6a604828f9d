"""Checks GET /api/v1/health against a reachable and an unreachable database."""

import logging
from collections.abc import Iterator

import pytest
from django.test import Client

from tests.database import database_at_closed_port

# A transaction test, so that the test can close the connection and open it elsewhere.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def database_down() -> Iterator[int]:
    with database_at_closed_port() as port:
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
    with database_at_closed_port():
        down = Client().get("/api/v1/health")

    up = Client().get("/api/v1/health")

    assert down.status_code == 503
    assert up.status_code == 200
    assert up.json() == {"ok": True}
