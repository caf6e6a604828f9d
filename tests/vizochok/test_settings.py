"""Checks that settings.py applies to environment values when Django starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _run_check(**extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT_DIR,
        env={**os.environ, **extra_env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("days", ["36501", "1000000"])
def test_settings_reject_retention_over_limit(days):
    result = _run_check(CATALOG_JOB_RETENTION_DAYS=days)

    assert result.returncode == 1
    assert (
        "django.core.exceptions.ImproperlyConfigured: CATALOG_JOB_RETENTION_DAYS must be from 0 "
        f"to 36500 (100 years), got {days}. 0 keeps every job." in result.stderr
    )


@pytest.mark.parametrize("days", ["0", "36500"])
def test_settings_accept_retention_at_limits(days):
    result = _run_check(CATALOG_JOB_RETENTION_DAYS=days)

    assert result.returncode == 0
    assert result.stdout == "System check identified no issues (0 silenced).\n"


@pytest.mark.parametrize("size", ["0", "-1"])
def test_settings_reject_batch_size_below_one(size):
    # A batch size of 0 raised ValueError in import_catalog after the products were saved.
    result = _run_check(EMBEDDING_BATCH_SIZE=size)

    assert result.returncode == 1
    assert (
        "django.core.exceptions.ImproperlyConfigured: EMBEDDING_BATCH_SIZE must be at least 1, "
        f"got {size}." in result.stderr
    )


def test_settings_accept_batch_size_one():
    result = _run_check(EMBEDDING_BATCH_SIZE="1")

    assert result.returncode == 0
    assert result.stdout == "System check identified no issues (0 silenced).\n"


@pytest.mark.parametrize(
    ("seconds", "shown"), [("86401", "86401"), ("100000000000", "1e+11"), ("0", "0"), ("-5", "-5")]
)
def test_settings_reject_turn_timeout_out_of_range(seconds, shown):
    # 100000000000 s made every message raise OverflowError when taking the conversation's
    # lock, whose expiry then fell before the year 1.
    result = _run_check(AGENT_TURN_TIMEOUT_SECONDS=seconds)

    assert result.returncode == 1
    assert (
        "django.core.exceptions.ImproperlyConfigured: AGENT_TURN_TIMEOUT_SECONDS must be above "
        f"0 and at most 86400 (one day), got {shown}." in result.stderr
    )


@pytest.mark.parametrize("seconds", ["0.5", "120", "86400"])
def test_settings_accept_turn_timeout_in_range(seconds):
    result = _run_check(AGENT_TURN_TIMEOUT_SECONDS=seconds)

    assert result.returncode == 0
    assert result.stdout == "System check identified no issues (0 silenced).\n"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "CATALOG_JOB_RETENTION_DAYS",
            "-1",
            "CATALOG_JOB_RETENTION_DAYS must be from 0 to 36500 (100 years), got -1."
            " 0 keeps every job.",
        ),
        ("CATALOG_JOB_MAX_RETRIES", "-1", "CATALOG_JOB_MAX_RETRIES must be 0 or more, got -1."),
        (
            "WEBHOOK_CONNECT_TIMEOUT",
            "0",
            "WEBHOOK_CONNECT_TIMEOUT must be above 0 seconds, got 0.0.",
        ),
        (
            "WEBHOOK_MAX_RESPONSE_BYTES",
            "0",
            "WEBHOOK_MAX_RESPONSE_BYTES must be at least 1, got 0.",
        ),
        (
            "WEBHOOK_RETRY_DELAY_SECONDS",
            "-1",
            "WEBHOOK_RETRY_DELAY_SECONDS must be from 0 to 10, got -1.0.",
        ),
        (
            "WEBHOOK_RETRY_DELAY_SECONDS",
            "11",
            "WEBHOOK_RETRY_DELAY_SECONDS must be from 0 to 10, got 11.0.",
        ),
        (
            "WEBHOOK_ALLOWED_NETWORKS",
            "127.0.0.0/8,10.0.0.1/8",
            "WEBHOOK_ALLOWED_NETWORKS contains an invalid network '10.0.0.1/8'"
            " (10.0.0.1/8 has host bits set); use CIDR notation such as 127.0.0.0/8.",
        ),
        (
            "WEBHOOK_CA_BUNDLE",
            "/nonexistent/ca.pem",
            "WEBHOOK_CA_BUNDLE '/nonexistent/ca.pem' is not a file.",
        ),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be text or json, got 'xml'."),
    ],
)
def test_settings_reject_unusable_values(variable, value, message):
    result = _run_check(**{variable: value})

    assert result.returncode == 1
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in result.stderr


def test_settings_accept_webhook_networks_and_json_logs():
    result = _run_check(WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8, ::1/128,", LOG_FORMAT="json")

    assert result.returncode == 0
    assert result.stdout == "System check identified no issues (0 silenced).\n"
