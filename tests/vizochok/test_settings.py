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
        "django.core.exceptions.ImproperlyConfigured: CATALOG_JOB_RETENTION_DAYS must be at "
        f"most 36500 (100 years), got {days}. 0 keeps every job." in result.stderr
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
