from __future__ import annotations

import pytest

from merchant.server import MerchantServer
from tests.merchant.client import MerchantClient


def test_known_skus_priced_unknown_omitted(client: MerchantClient) -> None:
    response = client.products(["milk-001", "no-such-sku", "milk-002", "milk-003"])

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "products": [
            {"sku": "milk-001", "price": 45.9, "in_stock": True},
            {
                "sku": "milk-002",
                "price": 52.0,
                "in_stock": True,
                "promo_price": 42.0,
                "promo_label": "-19%",
            },
            {"sku": "milk-003", "price": 38.5, "in_stock": False},
        ]
    }


def test_zero_stock_reported_out_of_stock(client: MerchantClient) -> None:
    response = client.products(["empty-shelf"])

    assert response.json() == {
        "products": [{"sku": "empty-shelf", "price": 10.0, "in_stock": False}]
    }


def test_duplicate_skus_answered_once(client: MerchantClient) -> None:
    response = client.products(["milk-001", "milk-001"])

    assert [product["sku"] for product in response.json()["products"]] == ["milk-001"]


def test_only_unknown_skus_give_empty_list(client: MerchantClient) -> None:
    response = client.products(["nothing-1", "nothing-2"])

    assert response.status == 200
    assert response.json() == {"products": []}


def test_stock_update_seen_by_next_request(
    client: MerchantClient, merchant: MerchantServer
) -> None:
    merchant.store.stock_update("milk-001", in_stock=False)

    response = client.products(["milk-001"])

    assert response.json()["products"][0]["in_stock"] is False


@pytest.mark.parametrize(
    ("_case", "payload"),
    [
        ("skus missing", {"store_id": "store-1"}),
        ("skus not a list", {"skus": "milk-001", "store_id": "store-1"}),
        ("sku not a string", {"skus": [1], "store_id": "store-1"}),
        ("store_id missing", {"skus": ["milk-001"]}),
        ("store_id empty", {"skus": ["milk-001"], "store_id": ""}),
    ],
)
def test_invalid_request_rejected(client: MerchantClient, _case: str, payload: dict) -> None:
    response = client.post_json("/vizochok/products", payload)

    assert response.status == 400
    assert response.json()["error"] == "invalid_request"


def test_json_array_rejected(client: MerchantClient) -> None:
    response = client.post_json("/vizochok/products", ["milk-001"])

    assert response.status == 400
    assert response.json()["error"] == "invalid_request"


def test_request_recorded(client: MerchantClient, merchant: MerchantServer) -> None:
    client.products(["milk-001"])

    recorded = merchant.requests[-1]
    assert recorded.method == "POST"
    assert recorded.path == "/vizochok/products"
    assert recorded.body == b'{"skus": ["milk-001"], "store_id": "store-1"}'
    assert recorded.headers["x-vizochok-signature"].startswith("sha256=")
    assert recorded.headers["X-VIZOCHOK-Timestamp"].isdigit()
    assert recorded.status == 200
    assert recorded.response["products"][0]["sku"] == "milk-001"
