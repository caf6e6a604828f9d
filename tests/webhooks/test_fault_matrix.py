"""Fault matrix: every way a merchant endpoint can fail, against a real local server.

Each row is one failure mode. For each webhook kind the test asserts what the assistant
gets back from the dispatcher (the shopper-visible result: no products, or the cart
reason ``webhook_timeout`` / ``webhook_error``), the ``WebhookDelivery`` rows of every
attempt, and that the admin test API answers the same failure without a 500.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.schemas import ProductInput
from catalog.services import product_upsert_many, products_embed_pending
from tests.conversations.chat import reply_text, send
from tests.conversations.shop_data import CATALOG, SESSION_ID, STORE_ID
from tests.factories import ConversationFactory
from tests.webhooks.behaviours import (
    conflicting_content_lengths,
    connection_reset,
    dripped_reply,
    empty_reply,
    gzip_reply,
    json_reply,
    point_webhooks_at,
    raw_reply,
    redirect,
    reset_mid_body,
    sequence,
    slow,
)
from webhooks.dispatch import (
    CartAction,
    FailureReason,
    LiveProduct,
    cart_change,
    cart_fetch,
    products_fetch,
)
from webhooks.models import CircuitBreaker, WebhookDelivery

pytestmark = pytest.mark.django_db

SUCCESS = {
    "products": {"products": [{"sku": "a", "price": 12.5, "in_stock": True}]},
    "cart": {"ok": True},
    "cart_get": {"items": [{"sku": "a", "name": "A", "price": 12.5, "quantity": 1}]},
}
WRONG_TYPES = {
    "products": {"products": [{"sku": 1, "price": "12", "in_stock": "yes"}]},
    "cart": {"ok": "yes"},
    "cart_get": {"items": [{"sku": "a", "name": "A", "price": "12", "quantity": "1"}]},
}
# The same bodies with a member name that appears twice, which parsers read differently.
DUPLICATE_NAMES = {
    "products": b'{"products": [], "products": [{"sku": "a", "price": 12.5, "in_stock": true}]}',
    "cart": b'{"ok": false, "reason": "out_of_stock", "ok": true}',
    "cart_get": b'{"items": [{"sku": "a", "name": "A", "price": 99, "price": 12.5, "quantity": 1}]}',
}
# NaN is no JSON token, so a body with one is invalid JSON as a whole.
NAN_NUMBERS = {
    "products": b'{"products": [{"sku": "a", "price": NaN, "in_stock": true}]}',
    "cart": b'{"ok": false, "reason": "out_of_stock", "max_quantity": NaN}',
    "cart_get": b'{"items": [{"sku": "a", "name": "A", "price": 12.5, "quantity": NaN}]}',
}
HTML_ERROR_PAGE = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
ONE_MIB = 1024 * 1024
# 100,000 nested arrays: within the 256 KiB response limit, far past Python's recursion limit.
DEEPLY_NESTED_JSON = b"[" * 100_000 + b"]" * 100_000


@dataclass(frozen=True)
class Row:
    """One failure mode: how the server answers and what each attempt must record."""

    name: str
    behaviour: object
    # (attempt, outcome, status_code, error_code) of every WebhookDelivery row.
    attempts: list[tuple[int, str, int | None, str]]
    failure: FailureReason | None


def _rows(kind: str) -> list[Row]:
    success = SUCCESS[kind]
    timeout = ("timeout", None, "timeout")
    return [
        Row("slow past timeout", slow(1.5, json_reply(200, success)), [(1, *timeout), (2, *timeout)], FailureReason.TIMEOUT),
        Row("500", json_reply(500, {"error": "boom"}), [(1, "http_error", 500, "http_500"), (2, "http_error", 500, "http_500")], FailureReason.ERROR),
        Row("503 then 200", sequence(json_reply(503, {"error": "busy"}), json_reply(200, success)), [(1, "http_error", 503, "http_503"), (2, "success", 200, "")], None),
        Row("400", json_reply(400, {"error": "invalid_request"}), [(1, "http_error", 400, "http_400")], FailureReason.ERROR),
        Row("404", json_reply(404, {"error": "not_found"}), [(1, "http_error", 404, "http_404")], FailureReason.ERROR),
        Row("301 to metadata", redirect("http://169.254.169.254/latest/meta-data/"), [(1, "http_error", 301, "http_301")], FailureReason.ERROR),
        Row("malformed JSON", raw_reply(200, b'{"products": [{"sku": "a",'), [(1, "invalid_response", 200, "invalid_json")], FailureReason.ERROR),
        Row("1 MiB body", raw_reply(200, b"[" + b"0," * (ONE_MIB // 2) + b"0]"), [(1, "invalid_response", 200, "response_too_large")], FailureReason.ERROR),
        Row("1 MiB 503 page", raw_reply(503, b"x" * ONE_MIB, "text/html"), [(1, "http_error", 503, "http_503"), (2, "http_error", 503, "http_503")], FailureReason.ERROR),
        Row("1 MiB 404 page", raw_reply(404, b"x" * ONE_MIB, "text/html"), [(1, "http_error", 404, "http_404")], FailureReason.ERROR),
        Row("connection reset", connection_reset, [(1, "connection_error", None, "connection_reset")], FailureReason.ERROR),
        Row("conflicting Content-Length", conflicting_content_lengths, [(1, "connection_error", None, "protocol_error")], FailureReason.ERROR),
        Row("empty body", raw_reply(200, b""), [(1, "invalid_response", 200, "invalid_json")], FailureReason.ERROR),
        Row("deeply nested JSON", raw_reply(200, DEEPLY_NESTED_JSON), [(1, "invalid_response", 200, "invalid_json")], FailureReason.ERROR),
        Row("HTML error page", raw_reply(502, HTML_ERROR_PAGE, "text/html"), [(1, "http_error", 502, "http_502"), (2, "http_error", 502, "http_502")], FailureReason.ERROR),
        Row("body dripped past timeout", dripped_reply(success, seconds_per_byte=0.1), [(1, *timeout), (2, *timeout)], FailureReason.TIMEOUT),
        Row("reset mid-body", reset_mid_body, [(1, "connection_error", None, "connection_reset")], FailureReason.ERROR),
        Row("gzip bomb", gzip_reply(64 * ONE_MIB), [(1, "invalid_response", 200, "response_too_large")], FailureReason.ERROR),
        Row("duplicate names", raw_reply(200, DUPLICATE_NAMES[kind]), [(1, "invalid_response", 200, "invalid_json")], FailureReason.ERROR),
        Row("NaN price", raw_reply(200, NAN_NUMBERS[kind]), [(1, "invalid_response", 200, "invalid_json")], FailureReason.ERROR),
        Row("text/plain", raw_reply(200, json.dumps(success).encode(), "text/plain"), [(1, "invalid_response", 200, "wrong_content_type")], FailureReason.ERROR),
        Row("302 to loopback", redirect("http://127.0.0.1:9/products", status=302), [(1, "http_error", 302, "http_302")], FailureReason.ERROR),
        Row("307 to metadata", redirect("http://169.254.169.254/latest/meta-data/", status=307), [(1, "http_error", 307, "http_307")], FailureReason.ERROR),
        Row("503 with Retry-After then 200", sequence(empty_reply(503, {"Retry-After": "3600"}), json_reply(200, success)), [(1, "http_error", 503, "http_503"), (2, "success", 200, "")], None),
        Row("429 with Retry-After", empty_reply(429, {"Retry-After": "1"}), [(1, "http_error", 429, "http_429")], FailureReason.ERROR),
    ]  # fmt: skip


def _wrong_types_row(kind: str) -> Row:
    if kind == "cart":
        return Row("wrong types", json_reply(200, WRONG_TYPES[kind]), [(1, "invalid_response", 200, "invalid_schema")], FailureReason.ERROR)  # fmt: skip
    # A products or cart GET list of invalid items is a valid response whose items are all
    # dropped: the call succeeds and nothing is shown.
    return Row("wrong types", json_reply(200, WRONG_TYPES[kind]), [(1, "success", 200, "")], None)  # fmt: skip


def matrix(kind: str) -> list:
    rows = [*_rows(kind), _wrong_types_row(kind)]
    return [pytest.param(row, id=row.name) for row in rows]


@pytest.fixture
def fault_settings(local_webhooks, settings):
    settings.WEBHOOK_RETRY_DELAY_SECONDS = 0.01
    return settings


def recorded_attempts(tenant, kind: str) -> list[tuple[int, str, int | None, str]]:
    return list(
        WebhookDelivery.objects.filter(tenant=tenant, kind=kind)
        .order_by("created_at", "pk")
        .values_list("attempt", "outcome", "status_code", "error_code")
    )


@pytest.mark.parametrize("row", matrix("products"))
def test_products_fault(tenant, fault_settings, start_server, row, caplog):
    server = start_server(row.behaviour)
    point_webhooks_at(tenant, server)

    with caplog.at_level(logging.INFO, logger="webhooks.calls"):
        result = products_fetch(tenant=tenant, skus=["a", "b"], store_id="store-1")

    expected = (
        {"a": LiveProduct(sku="a", price=12.5, in_stock=True)}
        if row.name.endswith("then 200")
        else {}
    )
    assert result.available == expected
    assert result.failure == row.failure
    assert recorded_attempts(tenant, "products") == row.attempts
    assert len(server.log.requests) == len(row.attempts)
    delivery_lines = [
        (record.levelname, record.outcome, record.error_code)
        for record in caplog.records
        if record.getMessage() == "webhooks.delivery"
    ]
    assert delivery_lines == [
        ("INFO" if outcome == "success" else "WARNING", outcome, error_code)
        for _, outcome, _, error_code in row.attempts
    ]


@pytest.mark.parametrize("row", matrix("cart"))
def test_cart_fault(tenant, fault_settings, start_server, row):
    server = start_server(row.behaviour)
    point_webhooks_at(tenant, server)

    result = cart_change(
        tenant=tenant,
        action=CartAction.ADD,
        store_id="store-1",
        session_id="shopper-1",
        sku="a",
        name="A",
        quantity=1,
        price=12.5,
    )

    assert result.ok is (row.failure is None)
    assert result.reason == (None if row.failure is None else str(row.failure))
    assert recorded_attempts(tenant, "cart") == row.attempts
    assert len(server.log.requests) == len(row.attempts)


@pytest.mark.parametrize("row", matrix("cart_get"))
def test_cart_get_fault(tenant, fault_settings, start_server, row):
    server = start_server(row.behaviour)
    point_webhooks_at(tenant, server)

    result = cart_fetch(tenant=tenant, store_id="store-1", session_id="shopper-1")

    assert result.failure == row.failure
    expected_lines = 1 if row.name.endswith("then 200") else 0
    assert len(result.lines) == expected_lines
    assert recorded_attempts(tenant, "cart_get") == row.attempts


@pytest.mark.parametrize("row", matrix("products"))
def test_test_api_answers_fault_without_500(
    tenant, fault_settings, start_server, server_client, row
):
    server = start_server(row.behaviour)
    point_webhooks_at(tenant, server)

    response = server_client.post(
        "/api/v1/admin/webhooks/test", {"kind": "products"}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    # The test API sends a single attempt, so "503 then 200" shows the 503.
    first_attempt = row.attempts[0]
    assert body["ok"] is (first_attempt[1] == "success")
    assert body["status_code"] == first_attempt[2]
    assert body.get("error_code") == (first_attempt[3] or None)
    assert len(server.log.requests) == 1


# --- what the shopper sees, through the chat API --------------------------------------------

PRODUCTS_FAILED_TEXT = (
    "На жаль, зараз не вдалося завантажити товари. Спробуйте, будь ласка, ще раз за хвилину."
)


@pytest.fixture
def shop_catalog(tenant):
    """Tenant A's small catalog from the conversation tests, embedded so search finds milk."""
    product_upsert_many(tenant=tenant, products=[ProductInput(**row) for row in CATALOG])
    products_embed_pending(tenant=tenant)


@pytest.mark.parametrize("row", matrix("products"))
def test_chat_reply_to_products_fault(
    tenant, fault_settings, start_server, chat_client, shop_catalog, row
):
    server = start_server(row.behaviour)
    point_webhooks_at(tenant, server)
    conversation = ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)

    # send() asserts the 200, so a 500 from the chat API fails here.
    sent = send(chat_client, conversation, "молоко")

    event_types = [event["type"] for event in sent]
    assert "product_cards" not in event_types
    assert event_types[-1] == "response_complete"
    failed = reply_text(sent) == PRODUCTS_FAILED_TEXT
    # The fault server prices only the SKU "a", which milk searches never request, so even
    # the rows that end in a 200 show no product.
    assert failed is (row.failure is not None)


def test_chat_reply_while_the_breaker_is_open(
    tenant, fault_settings, start_server, chat_client, shop_catalog
):
    server = start_server(json_reply(200, SUCCESS["products"]))
    point_webhooks_at(tenant, server)
    CircuitBreaker.objects.create(
        tenant=tenant, kind="products", state="open", retry_at=timezone.now() + timedelta(minutes=1)
    )
    conversation = ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)

    sent = send(chat_client, conversation, "молоко")

    assert reply_text(sent) == (
        "Ціни та наявність товарів тимчасово недоступні: магазин зараз не відповідає. "
        "Спробуйте, будь ласка, за хвилину."
    )
    assert [request.path for request in server.log.requests if request.method == "POST"] == []
    assert WebhookDelivery.objects.get(tenant=tenant, kind="products").outcome == "circuit_open"


@pytest.mark.parametrize("label", ["-13%\x00", "-13%\ud800"], ids=["NUL", "unpaired surrogate"])
def test_chat_reply_drops_unstorable_promotion_label(
    tenant, fault_settings, start_server, chat_client, shop_catalog, label
):
    # Valid JSON escapes that PostgreSQL cannot store in the reply's events.
    item = {"sku": "milk-001", "price": 45.9, "in_stock": True, "promo_price": 40.0}
    server = start_server(json_reply(200, {"products": [{**item, "promo_label": label}]}))
    point_webhooks_at(tenant, server)
    conversation = ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)

    sent = send(chat_client, conversation, "молоко")

    [cards] = [event["items"] for event in sent if event["type"] == "product_cards"]
    assert [(card["sku"], card["promo_price"], card["promo_label"]) for card in cards] == [
        ("milk-001", 40.0, None)
    ]
    reply = conversation.messages.get(role="assistant")
    assert reply.events == sent
