from __future__ import annotations

from collections.abc import Iterator

import pytest

from merchant.server import MerchantServer, start_merchant
from tests.merchant.client import MerchantClient
from tests.merchant.sample_data import CATALOG, SECRET, SESSION_ID, STOCK, STORE_ID, add_payload


@pytest.fixture
def seeded_merchant() -> Iterator[MerchantServer]:
    server = start_merchant(
        secret=SECRET,
        stock=STOCK,
        catalog=CATALOG,
        seed_carts={(STORE_ID, SESSION_ID): [("bread-01", 1), ("apple-kg", 0.6)]},
    )
    yield server
    server.shutdown()


def test_seeded_cart_returned(seeded_merchant: MerchantServer) -> None:
    client = MerchantClient(seeded_merchant.url, SECRET)

    response = client.cart_get(STORE_ID, SESSION_ID)

    assert response.status == 200
    assert response.json() == {
        "items": [
            {"sku": "bread-01", "name": "Хліб", "price": 32.0, "quantity": 1, "unit": "pcs"},
            {
                "sku": "apple-kg",
                "name": "Яблуко гала",
                "price": 14.95,
                "quantity": 0.6,
                "unit": "kg",
            },
        ]
    }


def test_other_session_cart_empty(seeded_merchant: MerchantServer) -> None:
    client = MerchantClient(seeded_merchant.url, SECRET)

    response = client.cart_get(STORE_ID, "someone-else")

    assert response.json() == {"items": []}


def test_cart_get_shows_changes(client: MerchantClient) -> None:
    client.cart(add_payload("milk-002", 2))

    response = client.cart_get(STORE_ID, SESSION_ID)

    assert response.json() == {
        "items": [
            {
                "sku": "milk-002",
                "name": "Молоко Галичина 3.2%",
                "price": 42.0,
                "quantity": 2,
                "unit": "pcs",
            }
        ]
    }


def test_cart_get_uses_current_price(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-001", 1))
    merchant.store.stock_update("milk-001", price=47.5)

    response = client.cart_get(STORE_ID, SESSION_ID)

    assert response.json()["items"][0]["price"] == 47.5


def test_cart_get_query_recorded(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart_get(STORE_ID, "user 7/ü")

    recorded = merchant.requests[-1]
    assert recorded.method == "GET"
    assert recorded.path == "/vizochok/cart"
    assert recorded.query == {"store_id": STORE_ID, "session_id": "user 7/ü"}
    assert recorded.body == b""


@pytest.mark.parametrize(
    "path",
    [
        "/vizochok/cart",
        "/vizochok/cart?store_id=store-1",
        "/vizochok/cart?session_id=user-123",
        "/vizochok/cart?store_id=&session_id=user-123",
    ],
)
def test_missing_query_params_rejected(client: MerchantClient, path: str) -> None:
    response = client.request("GET", path)

    assert response.status == 400
    assert response.json()["error"] == "invalid_request"


def test_seed_with_unknown_sku_rejected() -> None:
    with pytest.raises(ValueError, match="unknown SKU 'nope'"):
        start_merchant(
            secret=SECRET, stock=STOCK, seed_carts={(STORE_ID, SESSION_ID): [("nope", 1)]}
        )
