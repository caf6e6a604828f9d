"""The widget's own client code (tests/widget/e2e_client.js) against a live server, the
reference merchant and the offline assistant."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conversations.shop_data import STORE_ID

ROOT = Path(__file__).resolve().parents[2]
E2E_CLIENT = ROOT / "tests" / "widget" / "e2e_client.js"
INSTALL_HINT = "run scripts/install-verifier-tools.sh as root (make test does)"

MILK_CARDS = ["milk-001", "milk-002"]
MILK_LACTEL_LINE = {
    "sku": "milk-001",
    "name": "Молоко Lactel 2.5%",
    "price": 45.9,
    "promo_price": None,
    "brand": "Lactel",
    "quantity": 1,
    "unit": "pcs",
}
MILK_HALYCHYNA_LINE = {
    "sku": "milk-002",
    "name": "Молоко Галичина 3.2%",
    "price": 52.0,
    "promo_price": 42.0,
    "brand": "Галичина",
    "quantity": 1,
    "unit": "pcs",
}
ADD_WORDS = {"uk": "Додай", "en": "Add", "ru": "Добавь"}
SEARCH_REPLY_STARTS = {
    "uk": "Ось що я знайшов за запитом «молоко»:\n",
    "en": "Here is what I found for “milk”:\n",
    "ru": "Вот что я нашёл по запросу «молоко»:\n",
}


def _run_client(live_server, raw_key: str, language: str, search_text: str) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"Node.js is not installed; {INSTALL_HINT}")
    completed = subprocess.run(
        [node, str(E2E_CLIENT), live_server.url, raw_key, STORE_ID, language, search_text],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("language", "search_text"),
    [
        ("uk", "молоко"),
        ("en", "find milk"),
        ("ru", "найди молоко"),
        # Fits Ukrainian and Russian, so the widget's language decides.
        ("ru", "покажи молоко"),
    ],
)
def test_widget_client_chats_with_offline_assistant(
    live_server, public_key, catalog, merchant, settings, language, search_text
):
    settings.OPENAI_BASE_URL = ""
    settings.OPENAI_API_KEY = ""

    result = _run_client(live_server, public_key.raw_key, language, search_text)

    assert result["conversation"]["store_id"] == STORE_ID
    assert result["conversation"]["conversation_id"].startswith("conv_")
    assert result["conversation"]["assistant"] == "offline"
    assert result["streamedTypes"] == [
        "status",
        "text_delta",
        "text_end",
        "product_cards",
        "response_complete",
    ]
    assert result["streamedText"].startswith(SEARCH_REPLY_STARTS[language])
    assert result["streamedMessageId"] is None
    assert result["cardSkus"] == MILK_CARDS

    first, second = result["adds"]
    assert first["text"] == f"{ADD_WORDS[language]} «Молоко Lactel 2.5%»"
    assert second["text"] == f"{ADD_WORDS[language]} «Молоко Галичина 3.2%»"
    for add in (first, second):
        assert add["hasMessageId"] is True
        assert add["types"][-1] == "response_complete"
        assert "cart_changed" in add["types"]
    assert first["cartEvents"] == [
        {
            "action": "item_selected",
            "sku": "milk-001",
            "name": "Молоко Lactel 2.5%",
            "quantity": 1,
            "price": 45.9,
            "items": [MILK_LACTEL_LINE],
            "total": 45.9,
        }
    ]
    assert second["cartEvents"] == [
        {
            "action": "item_selected",
            "sku": "milk-002",
            "name": "Молоко Галичина 3.2%",
            "quantity": 1,
            "price": 52.0,
            "items": [MILK_LACTEL_LINE, MILK_HALYCHYNA_LINE],
            "total": 87.9,
        }
    ]
    assert result["busy"] is False
    assert result["cart"] == {"items": [MILK_LACTEL_LINE, MILK_HALYCHYNA_LINE], "total": 87.9}
    assert result["entryRoles"] == ["user", "assistant"] * 3
    # The replayed add has the first add's events, and the merchant's cart below is unchanged.
    assert result["replayTypes"] == first["types"]

    assert result["restoredAssistant"] == "offline"
    assert result["restoredCart"] == result["cart"]
    assert result["restoredRoles"] == ["user", "assistant"] * 3

    unknown = result["unknownConversation"]
    assert unknown["status"] == 404
    assert unknown["code"] == "not_found"
    merchant_cart = merchant.store.cart_items(STORE_ID, result["conversation"]["session_id"])
    assert [(line["sku"], line["quantity"]) for line in merchant_cart] == [
        ("milk-001", 1),
        ("milk-002", 1),
    ]
