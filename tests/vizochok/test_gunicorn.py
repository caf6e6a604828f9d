"""gunicorn's timeouts follow the agent's turn limit."""

import importlib

import pytest

import vizochok.gunicorn


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
