"""The log formatters keep credentials that a client put into a query string out of the log."""

import json
import logging

import pytest
from rest_framework.test import APIClient

from vizochok.logging import JsonFormatter, KeyValueFormatter

pytestmark = pytest.mark.django_db


def _request_record(caplog, secret_key) -> logging.LogRecord:
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = APIClient().get("/api/v1/catalog/jobs", {"api_key": secret_key.raw_key})

    assert response.status_code == 401
    records = [record for record in caplog.records if record.name == "django.request"]
    assert len(records) == 1
    assert secret_key.raw_key in repr(records[0].request)  # type: ignore[attr-defined]
    return records[0]


def test_text_line_omits_query_string(caplog, secret_key):
    record = _request_record(caplog, secret_key)

    line = KeyValueFormatter().format(record)

    assert secret_key.raw_key not in line
    assert line.endswith(
        "Unauthorized: /api/v1/catalog/jobs status_code=401 request='GET /api/v1/catalog/jobs'"
    )


def test_json_line_omits_query_string(caplog, secret_key):
    record = _request_record(caplog, secret_key)

    line = JsonFormatter().format(record)

    assert secret_key.raw_key not in line
    assert json.loads(line)["request"] == "GET /api/v1/catalog/jobs"


def test_text_line_starts_with_utc_date_and_time():
    record = logging.LogRecord("vizochok.test", logging.INFO, __file__, 1, "test.event", (), None)
    # 2026-12-06 14:31:48.25 UTC.
    record.created = 1796567508.25

    line = KeyValueFormatter().format(record)

    assert line == "2026-12-06T14:31:48Z INFO    vizochok.test test.event"
