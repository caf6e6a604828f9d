"""benchmarks/chat_load.py run end to end, and its option parsing.

The end-to-end test starts the script as a process on the test database: it starts
gunicorn, uvicorn, the reference merchant and the scripted model itself, so the test
commits its data (``transaction=True``).
"""

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from django.db import connection

from conversations.models import Conversation
from tenants.models import Tenant
from tests.factories import TenantFactory

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "chat_load.py"


@pytest.fixture
def chat_load(monkeypatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    return importlib.import_module("chat_load")


def _test_database_url() -> str:
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params["PASSWORD"] else ""
    return (
        f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/{params['NAME']}"
    )


@pytest.mark.django_db(transaction=True)
def test_three_shoppers_end_to_end():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--shoppers=3", "--tenants=1", "--messages=2"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": _test_database_url(), "GUNICORN_WORKERS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1]}
    # transport, shoppers, turns, msg/s, p50, p95, p99, rejections
    for transport in ("json", "sse", "ws"):
        assert rows[transport][1:3] == ["1", "2"]
        assert rows[transport][-1] == "-"
    assert rows["all"][1:3] == ["3", "6"]
    assert "checks: all passed" in lines
    # 3 shoppers and 9 warm-up conversations (8 JSON, 1 WebSocket); each shopper's second
    # message adds the first product found.
    assert "carts compared: 12 conversations, 3 with items" in lines
    assert not Tenant.objects.filter(slug__startswith="chat-load-").exists()
    assert not Conversation.objects.exists()


def test_mix_parses_weights(chat_load):
    assert chat_load.parse_mix("json=2,ws") == {"json": 2, "sse": 0, "ws": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("xml=1", "unknown transport 'xml' in --mix"),
        ("json=a", "invalid weight 'a' for json in --mix"),
        ("json=-1", "weight of json in --mix must be 0 or more"),
        ("json=0", "--mix needs at least one transport with weight above 0"),
    ],
)
def test_mix_rejects_invalid(chat_load, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        chat_load.parse_mix(text)

    assert message in str(error.value)


def test_transports_interleave_by_weight(chat_load):
    order = chat_load.assign_transports(8, {"json": 2, "sse": 1, "ws": 1})

    assert order == ["json", "sse", "ws", "json", "json", "sse", "ws", "json"]


def test_shopper_texts_cycle_search_add_cart(chat_load):
    texts = chat_load.shopper_texts(number=1, messages=5, words=["молоко", "хліб"])

    assert texts == ["знайди хліб", "додай перший", "покажи кошик", "знайди молоко", "додай перший"]


def test_websocket_needs_its_url_with_running_app(chat_load, capsys):
    with pytest.raises(SystemExit) as exit_info:
        chat_load.parse_args(["--app-url", "http://127.0.0.1:8000"])

    assert exit_info.value.code == 2
    assert "--app-url with WebSocket shoppers needs --websocket-url too" in capsys.readouterr().err


def test_merchant_url_needs_secret(chat_load, monkeypatch, capsys):
    monkeypatch.delenv("MERCHANT_WEBHOOK_SECRET", raising=False)

    with pytest.raises(SystemExit) as exit_info:
        chat_load.parse_args(["--merchant-url", "http://127.0.0.1:8001"])

    assert exit_info.value.code == 2
    assert "needs the merchant's secret in MERCHANT_WEBHOOK_SECRET" in capsys.readouterr().err


def test_merchant_url_rejects_short_secret(chat_load, monkeypatch, capsys):
    monkeypatch.setenv("MERCHANT_WEBHOOK_SECRET", "s" * 23)

    with pytest.raises(SystemExit) as exit_info:
        chat_load.parse_args(["--merchant-url", "http://127.0.0.1:8001"])

    assert exit_info.value.code == 2
    assert (
        "MERCHANT_WEBHOOK_SECRET has 23 characters; a webhook secret needs at least 24"
        in capsys.readouterr().err
    )


def test_merchant_url_accepts_secret_of_minimum_length(chat_load, monkeypatch):
    monkeypatch.setenv("MERCHANT_WEBHOOK_SECRET", "s" * 24)

    args = chat_load.parse_args(["--merchant-url", "http://127.0.0.1:8001"])

    assert args.merchant_url == "http://127.0.0.1:8001"


@pytest.mark.django_db
def test_delete_run_tenants_keeps_other_runs(chat_load):
    TenantFactory(slug="chat-load-abc123-1")
    TenantFactory(slug="chat-load-abc123-2")
    TenantFactory(slug="chat-load-def456-1")
    TenantFactory(slug="shop-a")

    chat_load.delete_run_tenants(run_id="abc123")

    assert sorted(Tenant.objects.values_list("slug", flat=True)) == [
        "chat-load-def456-1",
        "shop-a",
    ]
