"""Checks which of procrastinate's log records reach the console."""

import logging

import pytest
from django.conf import settings

from vizochok.logging import QueueLogFilter


def _record(name: str, level: int, action: str | None = None) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, "message", None, None)
    if action is not None:
        record.action = action
    return record


@pytest.mark.parametrize("action", ["start_worker", "stopping_worker", "ending_job", "stop_worker"])
def test_worker_lifecycle_passes_below_level(action):
    queue_filter = QueueLogFilter("WARNING")

    assert queue_filter.filter(_record("procrastinate.worker.host-1", logging.INFO, action))
    assert queue_filter.filter(_record("procrastinate.worker", logging.INFO, action))


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("procrastinate.worker.host-1", "start_job"),
        ("procrastinate.worker", "finish_task"),
        ("procrastinate.blueprints", None),
        ("procrastinate", None),
    ],
)
def test_other_queue_records_below_level_dropped(name, action):
    assert not QueueLogFilter("WARNING").filter(_record(name, logging.INFO, action))


def test_queue_records_at_level_pass():
    queue_filter = QueueLogFilter("warning")

    assert queue_filter.filter(_record("procrastinate.worker", logging.WARNING, "start_job"))
    assert queue_filter.filter(_record("procrastinate.jobs", logging.ERROR))


def test_other_loggers_pass_unchanged():
    queue_filter = QueueLogFilter("ERROR")

    assert queue_filter.filter(_record("catalog.jobs", logging.INFO))
    assert queue_filter.filter(_record("procrastinatex", logging.DEBUG))


def test_unknown_level_raises():
    with pytest.raises(ValueError, match="QUEUE_LOG_LEVEL must be a logging level name"):
        QueueLogFilter("LOUD")


def test_settings_attach_filter_to_console():
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["queue"]
    assert settings.LOGGING["filters"]["queue"]["level"] == settings.QUEUE_LOG_LEVEL
    assert settings.LOGGING["loggers"]["procrastinate"]["level"] == "INFO"
