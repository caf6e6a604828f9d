"""Checks that API requests get 503 database_unavailable while the database is unreachable."""

import logging

import pytest
from django.db import connection

from tests.database import database_at_closed_port

# A transaction test, so that the test can close the connection and open it elsewhere.
pytestmark = pytest.mark.django_db(transaction=True)

DETAIL = "The service cannot reach its database. Retry in a moment."


def _app_errors(caplog) -> list[logging.LogRecord]:
    # django.request adds its usual "Service Unavailable" line for every 5xx response.
    return [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR and record.name != "django.request"
    ]


@pytest.mark.parametrize(
    ("client_name", "method", "path", "body"),
    [
        ("chat_client", "post", "/api/v1/conversations", {"store_id": "store-1"}),
        ("server_client", "get", "/api/v1/catalog/jobs", None),
        ("server_client", "get", "/api/v1/admin/assistant", None),
    ],
)
def test_request_with_database_down(request, caplog, client_name, method, path, body):
    client = request.getfixturevalue(client_name)

    with database_at_closed_port() as port:
        response = getattr(client, method)(path, body, format="json")

    assert response.status_code == 503
    assert response.json() == {"detail": DETAIL, "code": "database_unavailable"}
    assert response["Retry-After"] == "5"
    errors = _app_errors(caplog)
    assert [record.getMessage() for record in errors] == ["api.database_unavailable"]
    assert errors[0].error_type == "OperationalError"
    assert f'"127.0.0.1", port {port} failed' in errors[0].error
    assert errors[0].exc_info is None


def test_query_error_stays_internal_error(server_client, caplog, monkeypatch):
    from django.db import OperationalError

    from catalog import apis

    def failing_jobs(**kwargs):
        raise OperationalError("canceling statement due to statement timeout")

    monkeypatch.setattr(apis, "catalog_jobs_list", failing_jobs)

    response = server_client.get("/api/v1/catalog/jobs")

    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert connection.is_usable()
    messages = [record.getMessage() for record in _app_errors(caplog)]
    assert messages == ["api.unhandled_error"]
