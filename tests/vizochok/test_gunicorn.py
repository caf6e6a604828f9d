"""gunicorn's timeouts follow the agent's turn limit, and its access lines hide credentials."""

import base64
import importlib
import logging
from datetime import timedelta

import pytest
from gunicorn.config import Config

import vizochok.gunicorn

SECRET_KEY = "sk_live_na5lNouL0izlxaLMYPpJZpnPme0qLbkh"


@pytest.fixture
def gunicorn_config(monkeypatch):
    for name in ("AGENT_TURN_TIMEOUT_SECONDS", "GUNICORN_TIMEOUT", "GUNICORN_GRACEFUL_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)

    def load(**environment):
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return importlib.reload(vizochok.gunicorn)

    yield load
    monkeypatch.undo()
    importlib.reload(vizochok.gunicorn)


def test_default_timeouts(gunicorn_config):
    config = gunicorn_config()

    assert (config.timeout, config.graceful_timeout) == (150, 130)


def test_timeouts_follow_turn_limit(gunicorn_config):
    config = gunicorn_config(AGENT_TURN_TIMEOUT_SECONDS="600")

    assert (config.timeout, config.graceful_timeout) == (630, 610)


def test_explicit_timeouts_win(gunicorn_config):
    config = gunicorn_config(
        AGENT_TURN_TIMEOUT_SECONDS="600", GUNICORN_TIMEOUT="90", GUNICORN_GRACEFUL_TIMEOUT="80"
    )

    assert (config.timeout, config.graceful_timeout) == (90, 80)


def test_fractional_turn_limit(gunicorn_config):
    config = gunicorn_config(AGENT_TURN_TIMEOUT_SECONDS="0.5")

    assert (config.timeout, config.graceful_timeout) == (30, 10)


def test_empty_turn_limit_keeps_default(gunicorn_config):
    config = gunicorn_config(AGENT_TURN_TIMEOUT_SECONDS="")

    assert (config.timeout, config.graceful_timeout) == (150, 130)


@pytest.mark.parametrize("value", ["abc", " ", "nan", "inf", "0", "-100", "86401"])
def test_invalid_turn_limit_raises(gunicorn_config, value):
    # gunicorn printed only "could not convert string to float: 'abc'" or "Value must be
    # positive: -70", which do not name the variable.
    with pytest.raises(ValueError, match="^Invalid AGENT_TURN_TIMEOUT_SECONDS") as raised:
        gunicorn_config(AGENT_TURN_TIMEOUT_SECONDS=value)

    assert str(raised.value) == (
        "Invalid AGENT_TURN_TIMEOUT_SECONDS: expected seconds above 0 and at most 86400 "
        f"(one day), got {value!r}."
    )


class _Response:
    status = "401 Unauthorized"
    sent = 85
    headers: list[tuple[str, str]] = []


def _access_line(config, *, raw_uri: str, authorization: str) -> str:
    settings = Config()
    settings.set("logger_class", config.logger_class)
    settings.set("accesslog", "-")
    access_logger = settings.logger_class(settings)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    access_logger.access_log.addHandler(handler)
    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "GET",
        "RAW_URI": raw_uri,
        "PATH_INFO": raw_uri.split("?", 1)[0],
        "QUERY_STRING": raw_uri.partition("?")[2],
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_AUTHORIZATION": authorization,
        "HTTP_USER_AGENT": "curl/8",
    }
    try:
        access_logger.access(_Response(), environ, environ, timedelta(milliseconds=3))
    finally:
        access_logger.access_log.removeHandler(handler)
    assert len(records) == 1
    return records[0].getMessage()


def test_access_line_omits_basic_user(gunicorn_config):
    config = gunicorn_config()
    basic = base64.b64encode(f"{SECRET_KEY}:".encode()).decode()

    line = _access_line(config, raw_uri="/api/v1/catalog/jobs", authorization=f"Basic {basic}")

    assert SECRET_KEY not in line
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /api/v1/catalog/jobs HTTP/1.1" 401 85 "-" "curl/8"' in line


def test_access_line_omits_query_string(gunicorn_config):
    config = gunicorn_config()

    line = _access_line(
        config,
        raw_uri=f"/api/v1/catalog/jobs?api_key={SECRET_KEY}&limit=5",
        authorization="",
    )

    assert SECRET_KEY not in line
    assert '"GET /api/v1/catalog/jobs HTTP/1.1" 401 85' in line
