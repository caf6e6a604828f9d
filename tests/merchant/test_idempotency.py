from __future__ import annotations

import pytest

from merchant.server import MerchantServer
from merchant.store import IdempotencyConflictError, Store, parse_stock
from tests.merchant.client import MerchantClient
from tests.merchant.sample_data import SESSION_ID, STOCK, STORE_ID, add_payload

KEY_HEADER = "X-VIZOCHOK-Idempotency-Key"


def quantity_in_cart(merchant: MerchantServer, sku: str) -> float | None:
    for item in merchant.store.cart_items(STORE_ID, SESSION_ID):
        if item["sku"] == sku:
            return item["quantity"]
    return None


def test_repeated_key_applied_once(client: MerchantClient, merchant: MerchantServer) -> None:
    headers = {KEY_HEADER: "key-1"}

    first = client.cart(add_payload("milk-001", 2), headers=headers)
    retry = client.cart(add_payload("milk-001", 2), headers=headers)

    assert first.json() == {"ok": True}
    assert retry.status == 200
    assert retry.json() == {"ok": True}
    assert quantity_in_cart(merchant, "milk-001") == 2


def test_retry_signed_again_still_deduplicated(
    client: MerchantClient, merchant: MerchantServer
) -> None:
    # given: a retry a few seconds later carries a new timestamp and signature
    headers = {KEY_HEADER: "key-1"}
    client.cart(add_payload("milk-001", 1), headers=headers)

    # when
    retry = client.request(
        "POST",
        "/vizochok/cart",
        merchant.requests[-1].body,
        headers=headers,
        timestamp=int(merchant.requests[-1].headers["X-VIZOCHOK-Timestamp"]) + 3,
    )

    # then
    assert retry.json() == {"ok": True}
    assert quantity_in_cart(merchant, "milk-001") == 1


def test_repeated_key_returns_stored_rejection(
    client: MerchantClient, merchant: MerchantServer
) -> None:
    # given: the first attempt was rejected, then stock arrived
    headers = {KEY_HEADER: "key-2"}
    first = client.cart(add_payload("milk-003", 1), headers=headers)
    merchant.store.stock_update("milk-003", in_stock=True, stock=10)

    # when
    retry = client.cart(add_payload("milk-003", 1), headers=headers)

    # then
    assert first.json() == {"ok": False, "reason": "out_of_stock"}
    assert retry.json() == {"ok": False, "reason": "out_of_stock"}
    assert quantity_in_cart(merchant, "milk-003") is None


def test_new_key_applied_again(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-001", 1), headers={KEY_HEADER: "key-1"})
    client.cart(add_payload("milk-001", 1), headers={KEY_HEADER: "key-2"})

    assert quantity_in_cart(merchant, "milk-001") == 2


def test_requests_without_key_all_applied(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-001", 1))
    client.cart(add_payload("milk-001", 1))

    assert quantity_in_cart(merchant, "milk-001") == 2


def test_key_scoped_to_session(client: MerchantClient, merchant: MerchantServer) -> None:
    headers = {KEY_HEADER: "shared-key"}

    client.cart(add_payload("milk-001", 1), headers=headers)
    other = client.cart(add_payload("milk-001", 1, session_id="user-456"), headers=headers)

    assert other.json() == {"ok": True}
    assert merchant.store.cart_items(STORE_ID, "user-456")[0]["quantity"] == 1


def test_key_reused_for_other_request_conflicts(
    client: MerchantClient, merchant: MerchantServer
) -> None:
    headers = {KEY_HEADER: "key-1"}
    client.cart(add_payload("milk-001", 1), headers=headers)

    response = client.cart(add_payload("milk-001", 5), headers=headers)

    assert response.status == 409
    assert response.json()["error"] == "idempotency_key_conflict"
    assert quantity_in_cart(merchant, "milk-001") == 1


def test_remove_retry_not_reported_missing(
    client: MerchantClient, merchant: MerchantServer
) -> None:
    client.cart(add_payload("milk-001", 1))
    remove = {"action": "remove", "store_id": STORE_ID, "session_id": SESSION_ID, "sku": "milk-001"}

    first = client.cart(remove, headers={KEY_HEADER: "remove-1"})
    retry = client.cart(remove, headers={KEY_HEADER: "remove-1"})

    assert first.json() == {"ok": True}
    assert retry.json() == {"ok": True}


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_invalid_key_length_rejected(client: MerchantClient, key: str) -> None:
    response = client.cart(add_payload("milk-001", 1), headers={KEY_HEADER: key})

    assert response.status == 400
    assert response.json()["error"] == "invalid_request"


def test_oldest_keys_forgotten_beyond_cache_size() -> None:
    # given
    store = Store(stock=parse_stock(STOCK), idempotency_cache_size=2)
    for key in ("key-1", "key-2", "key-3"):
        store.cart_update(add_payload("milk-001", 1), idempotency_key=key)

    # when: key-1 was evicted, so it applies again; key-3 is still remembered
    store.cart_update(add_payload("milk-001", 1), idempotency_key="key-1")
    store.cart_update(add_payload("milk-001", 1), idempotency_key="key-3")

    # then
    assert store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 4


def test_store_conflict_raises() -> None:
    store = Store(stock=parse_stock(STOCK))
    store.cart_update(add_payload("milk-001", 1), idempotency_key="key-1")

    with pytest.raises(IdempotencyConflictError):
        store.cart_update(add_payload("milk-001", 2), idempotency_key="key-1")
