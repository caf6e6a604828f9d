"""Exactly one cart line when the merchant commits a change and then fails to answer.

The fault server applies each cart request to a reference merchant ``Store`` with the
request's idempotency key, exactly as the reference merchant does, and only then
misbehaves on the first attempt: it answers 503 or stalls past the timeout. The
dispatcher's single retry carries the same key, so the store returns the remembered
answer instead of adding the product again.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from merchant.server import build_store
from tests.webhooks.behaviours import json_reply, point_webhooks_at
from webhooks.dispatch import DELIVERY_ID_HEADER, IDEMPOTENCY_KEY_HEADER, CartAction, cart_change
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

STOCK = {"milk-001": {"price": 45.9, "in_stock": True, "stock": 1000}}
CATALOG = [{"sku": "milk-001", "name": "Молоко 2,5%", "unit": "pcs"}]


class CommitThenFail:
    """Apply the cart change, then fail the first attempt of each key as configured."""

    def __init__(self, *, failure: str, honour_key: bool = True) -> None:
        self.store = build_store(stock=STOCK, catalog=CATALOG)
        self.failure = failure
        self.honour_key = honour_key
        self._seen_keys: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, handler) -> None:
        key = handler.headers[IDEMPOTENCY_KEY_HEADER]
        payload = json.loads(handler.server.log.requests[-1].body)
        answer = self.store.cart_update(payload, idempotency_key=key if self.honour_key else None)
        with self._lock:
            first_attempt = key not in self._seen_keys
            self._seen_keys.add(key)
        if first_attempt and self.failure == "503":
            json_reply(503, {"error": "busy"})(handler)
        elif first_attempt and self.failure == "timeout":
            time.sleep(1.3)
            json_reply(200, answer)(handler)
        else:
            json_reply(200, answer)(handler)


def add_one(tenant, session_id: str):
    return cart_change(
        tenant=tenant,
        action=CartAction.ADD,
        store_id="store-1",
        session_id=session_id,
        sku="milk-001",
        name="Молоко 2,5%",
        quantity=1,
        price=45.9,
    )


def cart_quantities(store, session_id: str) -> list[tuple[str, float]]:
    return [(line["sku"], line["quantity"]) for line in store.cart_items("store-1", session_id)]


def test_commit_then_503_leaves_one_line(tenant, local_webhooks, start_server, settings):
    settings.WEBHOOK_RETRY_DELAY_SECONDS = 0.01
    # The breaker would open after a few failed first attempts; this test is about retries.
    settings.WEBHOOK_BREAKER_ENABLED = False
    fault = CommitThenFail(failure="503")
    server = start_server(fault)
    point_webhooks_at(tenant, server)
    runs = 100

    results = [add_one(tenant, f"shopper-{run}") for run in range(runs)]

    assert all(result.ok for result in results)
    duplicated = [
        run
        for run in range(runs)
        if cart_quantities(fault.store, f"shopper-{run}") != [("milk-001", 1)]
    ]
    assert duplicated == []
    assert len(server.log.requests) == 2 * runs
    first, second = server.log.requests[:2]
    assert (
        first.headers[IDEMPOTENCY_KEY_HEADER.lower()]
        == second.headers[IDEMPOTENCY_KEY_HEADER.lower()]
    )
    assert first.headers[DELIVERY_ID_HEADER.lower()] != second.headers[DELIVERY_ID_HEADER.lower()]
    assert first.body == second.body


def test_commit_then_timeout_leaves_one_line(tenant, local_webhooks, start_server, settings):
    settings.WEBHOOK_RETRY_DELAY_SECONDS = 0.01
    fault = CommitThenFail(failure="timeout")
    server = start_server(fault)
    point_webhooks_at(tenant, server, timeout_seconds=1)

    results = [add_one(tenant, f"shopper-{run}") for run in range(2)]

    assert [result.ok for result in results] == [True, True]
    assert cart_quantities(fault.store, "shopper-0") == [("milk-001", 1)]
    assert cart_quantities(fault.store, "shopper-1") == [("milk-001", 1)]
    assert list(
        WebhookDelivery.objects.filter(tenant=tenant)
        .order_by("created_at")
        .values_list("attempt", "outcome")
    ) == [(1, "timeout"), (2, "success"), (1, "timeout"), (2, "success")]
    keys = [request.headers[IDEMPOTENCY_KEY_HEADER.lower()] for request in server.log.requests]
    assert keys[0] == keys[1]
    assert keys[2] == keys[3]
    assert keys[0] != keys[2]


def test_merchant_ignoring_the_key_duplicates_the_line(
    tenant, local_webhooks, start_server, settings
):
    # Control: the same fault without idempotency shows that the check above can fail.
    settings.WEBHOOK_RETRY_DELAY_SECONDS = 0.01
    fault = CommitThenFail(failure="503", honour_key=False)
    server = start_server(fault)
    point_webhooks_at(tenant, server)

    result = add_one(tenant, "shopper-1")

    assert result.ok
    assert cart_quantities(fault.store, "shopper-1") == [("milk-001", 2)]


def test_each_cart_call_gets_a_new_key(tenant, merchant):
    for _ in range(3):
        cart_change(
            tenant=tenant,
            action=CartAction.ADD,
            store_id="store-1",
            session_id="shopper-1",
            sku="atb-0318",
            name="Молоко",
            quantity=1,
            price=41.9,
        )

    keys = [request.headers[IDEMPOTENCY_KEY_HEADER] for request in merchant.requests]
    assert len(set(keys)) == 3
    assert [line["quantity"] for line in merchant.store.cart_items("store-1", "shopper-1")] == [3]
