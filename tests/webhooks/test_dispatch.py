"""The webhook dispatcher against the reference merchant and scripted local servers."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings
from django.utils import timezone

from tenants.models import WebhookSettings
from tests.webhooks.behaviours import json_reply, point_webhooks_at, sequence, slow
from webhooks.dispatch import (
    DELIVERY_ID_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    CartAction,
    CartLine,
    FailureReason,
    LiveProduct,
    cart_change,
    cart_fetch,
    products_fetch,
)
from webhooks.models import WebhookDelivery
from webhooks.signing import (
    NEXT_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

if TYPE_CHECKING:
    from tests.webhooks.conftest import LocalServer

    StartServer = Callable[..., LocalServer]

pytestmark = pytest.mark.django_db


def test_products_returns_only_requested_in_stock_skus(tenant, merchant):
    result = products_fetch(
        tenant=tenant, skus=["atb-0318", "atb-0326", "atb-0330", "unknown"], store_id="store-1"
    )

    assert result.ok
    assert result.available == {
        "atb-0318": LiveProduct(sku="atb-0318", price=41.9, in_stock=True),
        "atb-0330": LiveProduct(
            sku="atb-0330", price=37.5, in_stock=True, promo_price=31.9, promo_label="-15%"
        ),
    }


def test_products_request_is_signed_over_the_bytes_sent(tenant, merchant):
    products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-7")

    [request] = merchant.requests
    assert request.method == "POST"
    assert json.loads(request.body) == {"skus": ["atb-0318"], "store_id": "store-7"}
    assert request.headers["Content-Type"] == "application/json"
    assert verify_signature(
        secret=tenant.webhook_settings.secret,
        body=request.body,
        signature=request.headers[SIGNATURE_HEADER],
        timestamp=request.headers[TIMESTAMP_HEADER],
    )
    assert NEXT_SIGNATURE_HEADER not in request.headers


def _expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    signed = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def test_every_kind_sends_the_contract_headers(tenant, merchant):
    merchant.store.cart_seed("store-1", "shopper-3", [("atb-0238", 1)])
    before = int(time.time())
    products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-1")
    cart_change(
        tenant=tenant,
        action=CartAction.REMOVE,
        store_id="store-1",
        session_id="shopper-3",
        sku="atb-0238",
    )
    cart_fetch(tenant=tenant, store_id="store-1", session_id="shopper-3")
    after = int(time.time())

    requests = merchant.requests
    assert [(request.method, request.path) for request in requests] == [
        ("POST", "/vizochok/products"),
        ("POST", "/vizochok/cart"),
        ("GET", "/vizochok/cart"),
    ]
    for request in requests:
        # The cart GET has no body, but carries the same Content-Type as every request.
        assert request.headers["Content-Type"] == "application/json"
        timestamp = request.headers["X-VIZOCHOK-Timestamp"]
        assert re.fullmatch(r"[0-9]+", timestamp)
        assert before <= int(timestamp) <= after
        assert request.headers["X-VIZOCHOK-Signature"] == _expected_signature(
            tenant.webhook_settings.secret, timestamp, request.body
        )
    assert requests[2].body == b""
    assert requests[2].headers["X-VIZOCHOK-Signature"] == _expected_signature(
        tenant.webhook_settings.secret, requests[2].headers["X-VIZOCHOK-Timestamp"], b""
    )


def test_cart_add_reaches_the_merchant(tenant, merchant):
    result = cart_change(
        tenant=tenant,
        action=CartAction.ADD,
        store_id="store-1",
        session_id="shopper-1",
        sku="atb-0318",
        name="Молоко 0,84 кг ферма 2,5%",
        quantity=2,
        price=41.9,
    )

    assert result.ok
    assert result.reason is None
    [request] = merchant.requests
    assert json.loads(request.body) == {
        "action": "add",
        "store_id": "store-1",
        "session_id": "shopper-1",
        "sku": "atb-0318",
        "name": "Молоко 0,84 кг ферма 2,5%",
        "quantity": 2,
        "price": 41.9,
    }
    assert len(request.headers[IDEMPOTENCY_KEY_HEADER]) == 32
    uuid.UUID(request.headers[DELIVERY_ID_HEADER])
    assert [item["sku"] for item in merchant.store.cart_items("store-1", "shopper-1")] == [
        "atb-0318"
    ]


def test_cart_rejection_carries_the_merchant_reason(tenant, merchant):
    result = cart_change(
        tenant=tenant,
        action=CartAction.ADD,
        store_id="store-1",
        session_id="shopper-1",
        sku="atb-0326",
        name="Молоко 0,9 кг молокія 3,2%",
        quantity=1,
        price=37.3,
    )

    assert not result.ok
    assert result.reason == "out_of_stock"
    assert merchant.store.cart_items("store-1", "shopper-1") == []


def test_cart_fetch_loads_the_existing_cart_with_a_signed_get(tenant, merchant):
    merchant.store.cart_seed("store-1", "shopper-9", [("atb-0238", 2)])

    result = cart_fetch(tenant=tenant, store_id="store-1", session_id="shopper-9")

    assert result.ok
    assert result.lines == [
        CartLine(
            sku="atb-0238",
            name="Хліб 0,5 кг agrola галицький",
            price=result.lines[0].price,
            quantity=2,
            unit="pcs",
        )
    ]
    [request] = merchant.requests
    assert request.method == "GET"
    assert request.query == {"store_id": "store-1", "session_id": "shopper-9"}
    assert request.body == b""
    assert verify_signature(
        secret=tenant.webhook_settings.secret,
        body=b"",
        signature=request.headers[SIGNATURE_HEADER],
        timestamp=request.headers[TIMESTAMP_HEADER],
    )


def test_rotation_adds_the_next_signature(tenant, merchant):
    webhook_settings = tenant.webhook_settings
    webhook_settings.next_secret = "the-next-secret-of-at-least-24-chars"
    webhook_settings.next_secret_promote_at = timezone.now() + timedelta(hours=1)
    webhook_settings.save()

    products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-1")

    [request] = merchant.requests
    for header, secret in [
        (SIGNATURE_HEADER, webhook_settings.secret),
        (NEXT_SIGNATURE_HEADER, "the-next-secret-of-at-least-24-chars"),
    ]:
        assert verify_signature(
            secret=secret,
            body=request.body,
            signature=request.headers[header],
            timestamp=request.headers[TIMESTAMP_HEADER],
        )


def test_rotation_promotes_the_next_secret_when_the_overlap_ends(tenant, merchant):
    webhook_settings = tenant.webhook_settings
    webhook_settings.next_secret = "the-next-secret-of-at-least-24-chars"
    webhook_settings.next_secret_promote_at = timezone.now() - timedelta(seconds=1)
    webhook_settings.save()
    merchant.set_secret("the-next-secret-of-at-least-24-chars")

    result = products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-1")

    assert result.ok
    webhook_settings.refresh_from_db()
    assert webhook_settings.secret == "the-next-secret-of-at-least-24-chars"
    assert webhook_settings.next_secret == ""
    assert NEXT_SIGNATURE_HEADER not in merchant.requests[0].headers


def _replace_secret_before_retry(monkeypatch, tenant, new_secret: str, **settings_changes):
    """Install ``new_secret`` in the database while the call waits for its retry."""
    real_sleep = time.sleep

    def sleep_then_replace(seconds: float) -> None:
        webhook_settings = WebhookSettings.objects.get(tenant=tenant)
        with override_settings(**settings_changes):
            webhook_settings_secret_replace(webhook_settings, new_secret)
        real_sleep(seconds)

    monkeypatch.setattr("webhooks.calls.time.sleep", sleep_then_replace)


def webhook_settings_secret_replace(webhook_settings, secret: str) -> None:
    webhook_settings.secret = secret
    webhook_settings.next_secret = ""
    webhook_settings.next_secret_promote_at = None
    webhook_settings.save()


def test_retry_signed_with_replaced_secret(tenant, local_webhooks, start_server, monkeypatch):
    old_secret = tenant.webhook_settings.secret
    new_secret = "a-secret-replaced-at-once-after-a-leak"
    server = start_server(sequence(json_reply(503, {}), json_reply(200, {"ok": True})))
    point_webhooks_at(tenant, server)
    _replace_secret_before_retry(monkeypatch, tenant, new_secret)

    result = cart_change(
        tenant=tenant, action=CartAction.CLEAR, store_id="store-1", session_id="shopper-1"
    )

    assert result.ok
    first, retry = server.log.requests
    for request, secret, other in [
        (first, old_secret, new_secret),
        (retry, new_secret, old_secret),
    ]:
        headers = {
            "signature": request.headers[SIGNATURE_HEADER.lower()],
            "timestamp": request.headers[TIMESTAMP_HEADER.lower()],
        }
        assert verify_signature(secret=secret, body=request.body, **headers)
        assert not verify_signature(secret=other, body=request.body, **headers)
    assert NEXT_SIGNATURE_HEADER.lower() not in retry.headers


def test_retry_with_undecryptable_secret_sends_nothing(
    tenant, local_webhooks, start_server, monkeypatch, settings
):
    server = start_server(json_reply(503, {}))
    point_webhooks_at(tenant, server)
    other_keys = [Fernet.generate_key().decode()]
    _replace_secret_before_retry(
        monkeypatch,
        tenant,
        "a-secret-encrypted-with-a-lost-key",
        VIZOCHOK_ENCRYPTION_KEYS=other_keys,
    )

    result = products_fetch(tenant=tenant, skus=["a"], store_id="store-1")

    assert result.failure == FailureReason.ERROR
    assert len(server.log.requests) == 1
    deliveries = WebhookDelivery.objects.filter(tenant=tenant).order_by("attempt")
    assert list(deliveries.values_list("attempt", "outcome", "status_code", "error_code")) == [
        (1, "http_error", 503, "http_503"),
        (2, "secret_undecryptable", None, "secret_undecryptable"),
    ]


def test_5xx_is_retried_once_after_a_second(tenant, local_webhooks, start_server):
    server = start_server(
        sequence(json_reply(503, {"error": "busy"}), json_reply(200, {"ok": True}))
    )
    point_webhooks_at(tenant, server)
    started = time.monotonic()

    result = cart_change(
        tenant=tenant, action=CartAction.CLEAR, store_id="store-1", session_id="shopper-1"
    )

    elapsed = time.monotonic() - started
    assert result.ok
    assert 1.0 <= elapsed < 2.5
    first, second = server.log.requests
    assert first.body == second.body
    assert (
        first.headers[IDEMPOTENCY_KEY_HEADER.lower()]
        == second.headers[IDEMPOTENCY_KEY_HEADER.lower()]
    )
    assert first.headers[DELIVERY_ID_HEADER.lower()] != second.headers[DELIVERY_ID_HEADER.lower()]
    deliveries = list(WebhookDelivery.objects.filter(tenant=tenant).order_by("attempt"))
    assert [(d.attempt, d.status_code, d.outcome) for d in deliveries] == [
        (1, 503, "http_error"),
        (2, 200, "success"),
    ]
    assert deliveries[0].call_id == deliveries[1].call_id


def test_persistent_5xx_fails_after_two_attempts(tenant, local_webhooks, start_server, settings):
    settings.WEBHOOK_RETRY_DELAY_SECONDS = 0.01
    server = start_server(json_reply(500, {"error": "boom"}))
    point_webhooks_at(tenant, server)

    result = products_fetch(tenant=tenant, skus=["a", "b"], store_id="store-1")

    assert result.available == {}
    assert result.failure == FailureReason.ERROR
    assert len(server.log.requests) == 2


@pytest.mark.parametrize(
    ("_case", "status"),
    [("bad request", 400), ("not found", 404), ("redirect", 301), ("created", 201)],
)
def test_other_statuses_fail_without_retry(tenant, local_webhooks, start_server, _case, status):
    server = start_server(json_reply(status, {"ok": True}))
    point_webhooks_at(tenant, server)

    result = cart_change(
        tenant=tenant, action=CartAction.CLEAR, store_id="store-1", session_id="shopper-1"
    )

    assert result.ok is False
    assert result.reason == "webhook_error"
    assert len(server.log.requests) == 1


def test_timeout_is_retried_then_reported(tenant, local_webhooks, start_server, settings):
    settings.WEBHOOK_RETRY_DELAY_SECONDS = 0.01
    server = start_server(slow(1.5))
    point_webhooks_at(tenant, server)

    result = cart_change(
        tenant=tenant,
        action=CartAction.REMOVE,
        store_id="store-1",
        session_id="shopper-1",
        sku="atb-0318",
    )

    assert result.ok is False
    assert result.reason == "webhook_timeout"
    assert len(server.log.requests) == 2
    assert list(
        WebhookDelivery.objects.filter(tenant=tenant).values_list("outcome", flat=True)
    ) == ["timeout", "timeout"]


@pytest.mark.parametrize(
    ("_case", "behaviour"),
    [
        ("html page", json_reply(200, "<html>", content_type="text/html")),
        ("not an object", json_reply(200, ["ok"])),
        ("string ok", json_reply(200, {"ok": "true"})),
        ("missing ok", json_reply(200, {"reason": "x"})),
    ],
)
def test_malformed_cart_responses_are_webhook_errors(
    tenant, local_webhooks, start_server, _case, behaviour
):
    server = start_server(behaviour)
    point_webhooks_at(tenant, server)

    result = cart_change(
        tenant=tenant, action=CartAction.CLEAR, store_id="store-1", session_id="shopper-1"
    )

    assert result.ok is False
    assert result.reason == "webhook_error"
    assert len(server.log.requests) == 1


def test_invalid_product_items_are_dropped_and_valid_ones_kept(
    tenant, local_webhooks, start_server
):
    server = start_server(
        json_reply(
            200,
            {
                "products": [
                    {"sku": "a", "price": 10, "in_stock": True},
                    {"sku": "b", "price": "ten", "in_stock": True},
                    {"sku": "c", "price": 5, "in_stock": True, "promo_price": 7},
                    {"sku": "zzz", "price": 1, "in_stock": True},
                    {"sku": "a", "price": 99, "in_stock": True},
                ]
            },
        )
    )
    point_webhooks_at(tenant, server)

    result = products_fetch(tenant=tenant, skus=["a", "b", "c"], store_id="store-1")

    # c's promotion is above its price, so c is kept at its regular price.
    assert result.available == {
        "a": LiveProduct(sku="a", price=10.0, in_stock=True),
        "c": LiveProduct(sku="c", price=5.0, in_stock=True),
    }


def test_dropped_items_logged_in_one_line(tenant, local_webhooks, start_server, caplog):
    # About 230 KiB, within the 256 KiB response limit.
    long_sku = "x" * 250
    items = [{"sku": long_sku, "price": 1, "in_stock": True}] * 800
    items.append({"sku": "a", "price": 12.5, "in_stock": True})
    point_webhooks_at(tenant, start_server(json_reply(200, {"products": items})))
    caplog.set_level(logging.WARNING, logger="webhooks")

    result = products_fetch(tenant=tenant, skus=["a"], store_id="store-1")

    assert result.available == {"a": LiveProduct(sku="a", price=12.5, in_stock=True)}
    [record] = [r for r in caplog.records if r.getMessage() == "webhooks.response.item_dropped"]
    assert record.tenant_id == tenant.pk
    assert record.kind == "products"
    assert record.dropped_count == 800
    assert len(record.reasons) == 10
    assert record.reasons[0] == f"item 0: sku {long_sku!r} was not requested"[:200]
    assert all(len(reason) == 200 for reason in record.reasons)


def test_non_discount_promotions_logged_in_one_line(tenant, local_webhooks, start_server, caplog):
    items = [
        {"sku": "a", "price": 52, "in_stock": True, "promo_price": 52, "promo_label": "SALE"},
        {"sku": "b", "price": 10, "in_stock": True, "promo_price": 12.5, "promo_label": "-5%"},
        {"sku": "c", "price": 10, "in_stock": True, "promo_price": 9.5, "promo_label": "-5%"},
        {"sku": "d", "price": 8, "in_stock": False, "promo_price": 8},
        {"sku": "zzz", "price": 1, "in_stock": True},
    ]
    point_webhooks_at(tenant, start_server(json_reply(200, {"products": items})))
    caplog.set_level(logging.WARNING, logger="webhooks")

    result = products_fetch(tenant=tenant, skus=["a", "b", "c", "d"], store_id="store-1")

    assert result.available == {
        "a": LiveProduct(sku="a", price=52.0, in_stock=True),
        "b": LiveProduct(sku="b", price=10.0, in_stock=True),
        "c": LiveProduct(sku="c", price=10.0, in_stock=True, promo_price=9.5, promo_label="-5%"),
    }
    [record] = [r for r in caplog.records if r.getMessage() == "webhooks.response.promo_ignored"]
    assert record.levelno == logging.WARNING
    assert record.tenant_id == tenant.pk
    assert record.kind == "products"
    assert record.ignored_count == 3
    assert record.reasons == [
        "item 0: promo_price 52.0 is not below price 52.0 once both are rounded to cents",
        "item 1: promo_price 12.5 is not below price 10.0 once both are rounded to cents",
        "item 3: promo_price 8.0 is not below price 8.0 once both are rounded to cents",
    ]
    [dropped] = [r for r in caplog.records if r.getMessage() == "webhooks.response.item_dropped"]
    assert dropped.dropped_count == 1


def test_valid_promotions_log_nothing(tenant, local_webhooks, start_server, caplog):
    items = [{"sku": "a", "price": 10, "in_stock": True, "promo_price": 9.99}]
    point_webhooks_at(tenant, start_server(json_reply(200, {"products": items})))
    caplog.set_level(logging.WARNING, logger="webhooks")

    result = products_fetch(tenant=tenant, skus=["a"], store_id="store-1")

    assert result.available == {
        "a": LiveProduct(sku="a", price=10.0, in_stock=True, promo_price=9.99)
    }
    assert [r.getMessage() for r in caplog.records] == []


def test_cart_get_non_discount_promotion_logged(tenant, local_webhooks, start_server, caplog):
    lines = [
        {"sku": "a", "name": "A", "price": 3, "quantity": 1, "promo_price": 3},
        {"sku": "b", "name": "B", "price": 3, "quantity": 1, "promo_price": 2},
    ]
    point_webhooks_at(tenant, start_server(json_reply(200, {"items": lines})))
    caplog.set_level(logging.WARNING, logger="webhooks")

    result = cart_fetch(tenant=tenant, store_id="store-1", session_id="shopper-1")

    assert [(line.sku, line.price, line.promo_price) for line in result.lines] == [
        ("a", 3.0, None),
        ("b", 3.0, 2.0),
    ]
    [record] = [r for r in caplog.records if r.getMessage() == "webhooks.response.promo_ignored"]
    assert record.tenant_id == tenant.pk
    assert record.kind == "cart_get"
    assert record.ignored_count == 1
    assert record.reasons == [
        "item 0: promo_price 3.0 is not below price 3.0 once both are rounded to cents"
    ]
    assert [r.getMessage() for r in caplog.records if "item_dropped" in r.getMessage()] == []


def test_unconfigured_webhooks_send_nothing(tenant, local_webhooks):
    webhook_settings = tenant.webhook_settings
    webhook_settings.products_url = webhook_settings.cart_url = webhook_settings.cart_get_url = ""
    webhook_settings.save()

    assert products_fetch(tenant=tenant, skus=["a"], store_id="s").failure == (
        FailureReason.NOT_CONFIGURED
    )
    assert (
        cart_change(tenant=tenant, action=CartAction.CLEAR, store_id="s", session_id="x").reason
        == FailureReason.NOT_CONFIGURED
    )
    assert cart_fetch(tenant=tenant, store_id="s", session_id="x").failure == (
        FailureReason.NOT_CONFIGURED
    )
    assert WebhookDelivery.objects.count() == 0


def test_blocked_url_is_never_contacted(tenant, start_server):
    server = start_server(json_reply(200, {"ok": True}))
    point_webhooks_at(tenant, server)

    result = cart_change(
        tenant=tenant, action=CartAction.CLEAR, store_id="store-1", session_id="shopper-1"
    )

    assert result.reason == "webhook_error"
    assert server.log.requests == []
    assert WebhookDelivery.objects.get(tenant=tenant).outcome == "blocked"


def test_each_attempt_logs_one_structured_line(tenant, merchant, caplog):
    caplog.set_level(logging.INFO, logger="webhooks.dispatch")

    products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-1")

    [record] = [r for r in caplog.records if r.getMessage() == "webhooks.delivery"]
    assert record.tenant_id == tenant.pk
    assert record.kind == "products"
    assert record.status_code == 200
    assert record.attempt == 1
    assert record.outcome == "success"
    assert isinstance(record.duration_ms, int)


def test_deliveries_of_one_tenant_are_not_visible_to_another(tenant, other_tenant, merchant):
    products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-1")

    assert WebhookDelivery.objects.filter(tenant=other_tenant).count() == 0
    assert WebhookDelivery.objects.filter(tenant=tenant).count() == 1
