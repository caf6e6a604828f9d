"""Cart guards and cart changes of the shared tools, against the reference merchant."""

import json
from dataclasses import replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler

import pytest

from conversations.leases import LeaseLost
from conversations.models import Conversation
from conversations.tools import SearchOutcome
from tests.conversations.shop_data import (
    APPLES,
    MILK_GALYCHYNA,
    MILK_LACTEL,
    MILK_SOLD_OUT,
    SESSION_ID,
    STORE_ID,
    show,
)
from tests.factories import ProductFactory
from tests.local_http import serving
from webhooks.dispatch import CartAction
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

# Apples sold by weight without a minimum quantity or a quantity step.
LOOSE_APPLES = replace(APPLES, sku="apple-loose", min_quantity=None, quantity_step=None)


def bread_cart() -> dict:
    """Return a cart snapshot with one loaf of the shop's bread, as the merchant confirmed it."""
    line = {
        "sku": "bread-01",
        "name": "Хліб Київхліб білий",
        "price": 32.0,
        "promo_price": None,
        "brand": None,
        "quantity": 1,
        "unit": "pcs",
    }
    return {"items": [line], "total": 32.0}


def cart_requests(merchant) -> list[dict]:
    return [
        json.loads(request.body)
        for request in merchant.requests
        if request.method == "POST" and request.path == "/vizochok/cart"
    ]


def stored_cart(conversation: Conversation) -> dict:
    return Conversation.objects.get(pk=conversation.pk).cart


def test_add_sends_last_seen_price(merchant, conversation, tools):
    show(conversation, MILK_LACTEL, MILK_GALYCHYNA)

    result = tools.add_to_cart("milk-002", 2)

    assert cart_requests(merchant) == [
        {
            "action": "add",
            "store_id": STORE_ID,
            "session_id": SESSION_ID,
            "sku": "milk-002",
            "name": "Молоко Галичина 3.2%",
            "quantity": 2,
            "price": 52.0,
        }
    ]
    assert result.ok is True
    assert result.reason is None
    expected_cart = {
        "items": [
            {
                "sku": "milk-002",
                "name": "Молоко Галичина 3.2%",
                "price": 52.0,
                "promo_price": 42.0,
                "brand": "Галичина",
                "quantity": 2,
                "unit": "pcs",
            }
        ],
        "total": 84.0,
    }
    assert result.cart == expected_cart
    assert stored_cart(conversation) == expected_cart


def test_add_merges_with_the_line_in_the_cart(merchant, conversation, tools):
    show(conversation, MILK_LACTEL)

    tools.add_to_cart("milk-001", 1)
    result = tools.add_to_cart("milk-001", 2)

    assert result.ok is True
    assert result.cart["items"][0]["quantity"] == 3
    assert result.cart["total"] == 137.7
    assert merchant.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 3


def test_add_of_unshown_sku_rejected(merchant, conversation, tools):
    show(conversation, MILK_LACTEL)

    result = tools.add_to_cart("bread-01", 1)

    assert result.ok is False
    assert result.reason == "sku_not_offered"
    assert result.webhook_called is False
    assert merchant.requests == []
    assert WebhookDelivery.objects.count() == 0
    assert stored_cart(conversation) == {"items": [], "total": 0.0}


def test_other_tenants_sku_is_not_offered(merchant, conversation, tools, other_tenant):
    ProductFactory(tenant=other_tenant, sku="b-only-1", name="Зюзюбрик тенанта B")

    added = tools.add_to_cart("b-only-1", 1)
    details = tools.product_details("b-only-1")
    found = tools.search_products("Зюзюбрик тенанта B")

    assert added.ok is False
    assert added.reason == "sku_not_offered"
    assert added.webhook_called is False
    assert details.to_tool_output() == {"ok": False, "sku": "b-only-1", "reason": "sku_not_offered"}
    assert found.outcome == SearchOutcome.NO_CATALOG_DATA
    assert found.products == []
    assert merchant.requests == []
    assert WebhookDelivery.objects.count() == 0
    assert stored_cart(conversation) == {"items": [], "total": 0.0}


def test_cart_line_gets_no_catalog_of_other_tenant(
    merchant, conversation, tools, lease, other_tenant
):
    ProductFactory(
        tenant=other_tenant, sku="bread-01", description="Опис тенанта B", country="Польща"
    )
    conversation.cart = bread_cart()
    lease.save(conversation, ["cart"])

    details = tools.product_details("bread-01")

    assert details.catalog is None
    assert details.to_tool_output() == {
        "ok": True,
        "sku": "bread-01",
        "name": "Хліб Київхліб білий",
        "brand": None,
        "price": 32.0,
        "promo_price": None,
        "promo_label": None,
        "unit": "pcs",
        "min_quantity": None,
        "quantity_step": None,
    }
    assert merchant.requests == []


@pytest.mark.parametrize(
    ("_case", "sku", "quantity", "reason"),
    [
        ("zero", "milk-001", 0, "invalid_quantity"),
        ("negative", "milk-001", -1, "invalid_quantity"),
        ("not a number", "milk-001", Decimal("NaN"), "invalid_quantity"),
        ("fraction of a piece", "milk-001", 1.5, "quantity_step_mismatch"),
        ("below the minimum", "apple-kg", 0.2, "below_min_quantity"),
        ("off the step", "apple-kg", 0.35, "quantity_step_mismatch"),
        ("zero once rounded to the gram", "apple-loose", Decimal("0.0004"), "invalid_quantity"),
    ],
)
def test_add_with_a_disallowed_quantity_calls_no_webhook(
    merchant, conversation, tools, _case, sku, quantity, reason
):
    show(conversation, MILK_LACTEL, APPLES, LOOSE_APPLES)

    result = tools.add_to_cart(sku, quantity)

    assert result.ok is False
    assert result.reason == reason
    assert result.webhook_called is False
    assert merchant.requests == []
    assert stored_cart(conversation) == {"items": [], "total": 0.0}


def test_update_to_rounded_zero_rejected(merchant, conversation, tools):
    show(conversation, LOOSE_APPLES)

    result = tools.update_quantity("apple-loose", Decimal("0.0004"))

    assert result.ok is False
    assert result.reason == "invalid_quantity"
    assert result.webhook_called is False
    assert merchant.requests == []
    assert stored_cart(conversation) == {"items": [], "total": 0.0}


def test_add_by_weight_respects_the_step(merchant, conversation, tools):
    show(conversation, APPLES)

    result = tools.add_to_cart("apple-kg", 0.5)

    assert result.ok is True
    assert cart_requests(merchant)[0]["quantity"] == 0.5
    assert result.cart["items"][0]["quantity"] == 0.5
    assert result.cart["total"] == 7.48


def test_merchant_rejection_leaves_the_cart_unchanged(merchant, conversation, tools):
    show(conversation, MILK_GALYCHYNA)
    tools.add_to_cart("milk-002", 1)
    cart_before = stored_cart(conversation)

    result = tools.add_to_cart("milk-002", 3)

    assert result.ok is False
    assert result.reason == "max_3_per_customer"
    assert result.webhook_called is True
    assert result.cart == cart_before
    assert stored_cart(conversation) == cart_before
    assert len(cart_requests(merchant)) == 2


def test_add_out_of_stock_rejected(merchant, conversation, tools):
    show(conversation, MILK_SOLD_OUT)

    result = tools.add_to_cart("milk-003", 1)

    assert result.ok is False
    assert result.reason == "out_of_stock"
    assert stored_cart(conversation) == {"items": [], "total": 0.0}


def test_failed_cart_call_reports_webhook_error(
    merchant, conversation, tools, tenant, closed_port_url
):
    tenant.webhook_settings.cart_url = closed_port_url
    tenant.webhook_settings.save()
    show(conversation, MILK_LACTEL)

    result = tools.add_to_cart("milk-001", 1)

    assert result.ok is False
    assert result.reason == "webhook_error"
    assert stored_cart(conversation) == {"items": [], "total": 0.0}


def cart_webhook_replying(body: bytes) -> type[BaseHTTPRequestHandler]:
    """Build a cart webhook handler that responds to every request with 200 and ``body``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output free of access logs."""

    return Handler


@pytest.mark.parametrize(
    ("body", "ok", "reason", "items"),
    [
        (b'{"ok": false, "reason": "out_of_stock", "ok": true}', False, "webhook_error", []),
        (
            b'{"ok": true, "reason": "out_of_stock", '
            b'"items": [{"sku": "milk-002", "quantity": 40}]}',
            True,
            None,
            [("milk-001", 2)],
        ),
    ],
    ids=["repeated ok", "ok with a contradicting cart"],
)
def test_cart_reply_contradicting_itself(
    merchant, conversation, tools, tenant, body, ok, reason, items
):
    show(conversation, MILK_LACTEL, MILK_GALYCHYNA)

    with serving(cart_webhook_replying(body)) as base_url:
        tenant.webhook_settings.cart_url = f"{base_url}/cart"
        tenant.webhook_settings.save()
        result = tools.add_to_cart("milk-001", 2)

    assert result.ok is ok
    assert result.to_tool_output().get("reason") == reason
    saved = stored_cart(conversation)
    assert [(item["sku"], item["quantity"]) for item in saved["items"]] == items
    assert [item["sku"] for item in result.cart["items"]] == [sku for sku, _ in items]


def test_update_quantity_and_remove(merchant, conversation, tools):
    show(conversation, MILK_LACTEL, MILK_GALYCHYNA)
    tools.add_to_cart("milk-001", 1)
    tools.add_to_cart("milk-002", 1)

    updated = tools.update_quantity("milk-001", 3)
    removed = tools.remove_from_cart("milk-002")

    assert updated.ok is True
    assert removed.ok is True
    assert cart_requests(merchant)[2:] == [
        {
            "action": "update_quantity",
            "store_id": STORE_ID,
            "session_id": SESSION_ID,
            "sku": "milk-001",
            "quantity": 3,
        },
        {"action": "remove", "store_id": STORE_ID, "session_id": SESSION_ID, "sku": "milk-002"},
    ]
    assert stored_cart(conversation)["items"] == [
        {
            "sku": "milk-001",
            "name": "Молоко Lactel 2.5%",
            "price": 45.9,
            "promo_price": None,
            "brand": "Lactel",
            "quantity": 3,
            "unit": "pcs",
        }
    ]
    assert stored_cart(conversation)["total"] == 137.7


def test_remove_not_in_cart_rejected(merchant, conversation, tools):
    show(conversation, MILK_LACTEL)

    result = tools.remove_from_cart("milk-001")

    assert result.ok is False
    assert result.reason == "not_in_cart"
    assert result.action == CartAction.REMOVE


def test_clear_empties_the_cart(merchant, conversation, tools):
    show(conversation, MILK_LACTEL)
    tools.add_to_cart("milk-001", 2)

    result = tools.clear_cart()

    assert result.ok is True
    assert cart_requests(merchant)[-1] == {
        "action": "clear",
        "store_id": STORE_ID,
        "session_id": SESSION_ID,
    }
    assert stored_cart(conversation) == {"items": [], "total": 0.0}
    assert merchant.store.cart_items(STORE_ID, SESSION_ID) == []


def test_cart_items_may_be_changed_without_being_shown(merchant, conversation, tools, lease):
    conversation.cart = bread_cart()
    lease.save(conversation, ["cart"])
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1)])

    result = tools.update_quantity("bread-01", 2)

    assert result.ok is True
    assert stored_cart(conversation)["items"][0]["quantity"] == 2
    assert stored_cart(conversation)["total"] == 64.0


def test_cart_writes_stop_when_the_lease_is_lost(merchant, conversation, tools):
    show(conversation, MILK_LACTEL)
    Conversation.objects.filter(pk=conversation.pk).update(turn_started_at=None)

    with pytest.raises(LeaseLost):
        tools.add_to_cart("milk-001", 1)

    assert stored_cart(conversation) == {"items": [], "total": 0.0}
