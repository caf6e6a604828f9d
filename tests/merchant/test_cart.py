from __future__ import annotations

import pytest

from merchant.server import MerchantServer
from tests.merchant.client import MerchantClient
from tests.merchant.sample_data import SESSION_ID, STORE_ID, add_payload


def cart_request(action: str, **fields: object) -> dict[str, object]:
    return {"action": action, "store_id": STORE_ID, "session_id": SESSION_ID, **fields}


def cart_quantities(merchant: MerchantServer) -> dict[str, float]:
    return {
        item["sku"]: item["quantity"] for item in merchant.store.cart_items(STORE_ID, SESSION_ID)
    }


def test_add_accepted_and_repriced(client: MerchantClient, merchant: MerchantServer) -> None:
    response = client.cart(add_payload("milk-001", 2))

    assert response.status == 200
    assert response.json() == {"ok": True}
    assert merchant.store.cart_items(STORE_ID, SESSION_ID) == [
        {
            "sku": "milk-001",
            "name": "Молоко Lactel 2.5%",
            "price": 45.9,
            "quantity": 2,
            "unit": "pcs",
        }
    ]


def test_add_uses_promo_price(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-002", 1, price=52.0))

    assert merchant.store.cart_items(STORE_ID, SESSION_ID)[0]["price"] == 42.0


def test_add_without_quantity_adds_one(client: MerchantClient, merchant: MerchantServer) -> None:
    payload = add_payload("milk-001")
    del payload["quantity"]

    response = client.cart(payload)

    assert response.json() == {"ok": True}
    assert cart_quantities(merchant) == {"milk-001": 1}


def test_add_accumulates_on_existing_line(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-001", 2))
    client.cart(add_payload("milk-001", 3))

    assert cart_quantities(merchant) == {"milk-001": 5}


def test_weight_goods_take_fractions(client: MerchantClient, merchant: MerchantServer) -> None:
    first = client.cart(add_payload("apple-kg", 0.5))
    second = client.cart(add_payload("apple-kg", 0.25))

    assert first.json() == {"ok": True}
    assert second.json() == {"ok": True}
    assert merchant.store.cart_items(STORE_ID, SESSION_ID) == [
        {"sku": "apple-kg", "name": "Яблуко гала", "price": 14.95, "quantity": 0.75, "unit": "kg"}
    ]


def test_weight_goods_sum_without_float_noise(
    client: MerchantClient, merchant: MerchantServer
) -> None:
    client.cart(add_payload("apple-kg", 0.1))
    client.cart(add_payload("apple-kg", 0.2))

    assert cart_quantities(merchant) == {"apple-kg": 0.3}


def test_out_of_stock_rejected(client: MerchantClient, merchant: MerchantServer) -> None:
    response = client.cart(add_payload("milk-003"))

    assert response.json() == {"ok": False, "reason": "out_of_stock"}
    assert cart_quantities(merchant) == {}


def test_zero_stock_rejected_as_out_of_stock(client: MerchantClient) -> None:
    response = client.cart(add_payload("empty-shelf"))

    assert response.json() == {"ok": False, "reason": "out_of_stock"}


def test_unknown_sku_not_found(client: MerchantClient, merchant: MerchantServer) -> None:
    response = client.cart(add_payload("no-such-sku"))

    assert response.json() == {"ok": False, "reason": "product_not_found"}
    assert cart_quantities(merchant) == {}


def test_quantity_over_stock_exceeded(client: MerchantClient, merchant: MerchantServer) -> None:
    response = client.cart(add_payload("bread-01", 3))

    assert response.json() == {"ok": False, "reason": "quantity_exceeded"}
    assert cart_quantities(merchant) == {}


def test_cart_total_over_stock_exceeded(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("bread-01", 2))

    response = client.cart(add_payload("bread-01", 1))

    assert response.json() == {"ok": False, "reason": "quantity_exceeded"}
    assert cart_quantities(merchant) == {"bread-01": 2}


def test_per_customer_limit_rejected(client: MerchantClient, merchant: MerchantServer) -> None:
    response = client.cart(add_payload("milk-002", 4))

    assert response.json() == {"ok": False, "reason": "max_3_per_customer"}
    assert cart_quantities(merchant) == {}


def test_per_customer_limit_counts_cart(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-002", 3))

    response = client.cart(add_payload("milk-002", 1))

    assert response.json() == {"ok": False, "reason": "max_3_per_customer"}
    assert cart_quantities(merchant) == {"milk-002": 3}


@pytest.mark.parametrize(
    ("_case", "quantity"),
    [
        ("zero", 0),
        ("negative", -1),
        ("fraction of a piece", 1.5),
        ("string", "2"),
        ("boolean", True),
        ("beyond the float range", 10**400),
    ],
)
def test_invalid_quantity_rejected(
    client: MerchantClient, merchant: MerchantServer, _case: str, quantity: object
) -> None:
    response = client.cart(add_payload("milk-001", quantity))

    assert response.json() == {"ok": False, "reason": "invalid_quantity"}
    assert cart_quantities(merchant) == {}


def test_weight_below_min_quantity_rejected(client: MerchantClient) -> None:
    response = client.cart(add_payload("apple-kg", 0.05))

    assert response.json() == {"ok": False, "reason": "invalid_quantity"}


@pytest.mark.parametrize(
    ("_case", "payload"),
    [
        ("add without sku", cart_request("add", quantity=1)),
        ("add with empty sku", cart_request("add", sku="")),
        ("remove without sku", cart_request("remove")),
        ("update without sku", cart_request("update_quantity", quantity=2)),
    ],
)
def test_missing_sku_rejected(client: MerchantClient, _case: str, payload: dict) -> None:
    response = client.cart(payload)

    assert response.json() == {"ok": False, "reason": "missing_sku"}


@pytest.mark.parametrize(
    ("_case", "payload"),
    [
        ("no action", {"store_id": STORE_ID, "session_id": SESSION_ID, "sku": "milk-001"}),
        ("no store_id", {"action": "add", "session_id": SESSION_ID, "sku": "milk-001"}),
        ("no session_id", {"action": "add", "store_id": STORE_ID, "sku": "milk-001"}),
        ("empty session_id", {"action": "clear", "store_id": STORE_ID, "session_id": ""}),
        ("update without quantity", cart_request("update_quantity", sku="milk-001")),
    ],
)
def test_missing_params_rejected(client: MerchantClient, _case: str, payload: dict) -> None:
    response = client.cart(payload)

    assert response.json() == {"ok": False, "reason": "missing_params"}


@pytest.mark.parametrize("action", ["checkout", "ADD", 5])
def test_unknown_action_rejected(client: MerchantClient, action: object) -> None:
    response = client.cart(cart_request(action, sku="milk-001"))  # type: ignore[arg-type]

    assert response.json() == {"ok": False, "reason": "invalid_action"}


def test_remove_deletes_line(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-001", 2))
    client.cart(add_payload("bread-01", 1))

    response = client.cart(cart_request("remove", sku="milk-001"))

    assert response.json() == {"ok": True}
    assert cart_quantities(merchant) == {"bread-01": 1}


def test_remove_missing_line_not_in_cart(client: MerchantClient) -> None:
    response = client.cart(cart_request("remove", sku="milk-001"))

    assert response.json() == {"ok": False, "reason": "not_in_cart"}


def test_update_sets_absolute_quantity(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-001", 2))

    response = client.cart(cart_request("update_quantity", sku="milk-001", quantity=5))

    assert response.json() == {"ok": True}
    assert cart_quantities(merchant) == {"milk-001": 5}


def test_update_to_zero_removes_line(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-001", 2))

    response = client.cart(cart_request("update_quantity", sku="milk-001", quantity=0))

    assert response.json() == {"ok": True}
    assert cart_quantities(merchant) == {}


def test_update_missing_line_not_in_cart(client: MerchantClient) -> None:
    response = client.cart(cart_request("update_quantity", sku="milk-001", quantity=2))

    assert response.json() == {"ok": False, "reason": "not_in_cart"}


def test_update_over_stock_exceeded(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("bread-01", 1))

    response = client.cart(cart_request("update_quantity", sku="bread-01", quantity=3))

    assert response.json() == {"ok": False, "reason": "quantity_exceeded"}
    assert cart_quantities(merchant) == {"bread-01": 1}


def test_update_over_limit_rejected(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-002", 1))

    response = client.cart(cart_request("update_quantity", sku="milk-002", quantity=4))

    assert response.json() == {"ok": False, "reason": "max_3_per_customer"}
    assert cart_quantities(merchant) == {"milk-002": 1}


def test_update_after_stock_out_rejected(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-001", 1))
    merchant.store.stock_update("milk-001", in_stock=False, stock=0)

    response = client.cart(cart_request("update_quantity", sku="milk-001", quantity=2))

    assert response.json() == {"ok": False, "reason": "out_of_stock"}
    assert cart_quantities(merchant) == {"milk-001": 1}


def test_update_invalid_quantity_rejected(client: MerchantClient) -> None:
    client.cart(add_payload("milk-001", 1))

    response = client.cart(cart_request("update_quantity", sku="milk-001", quantity=-2))

    assert response.json() == {"ok": False, "reason": "invalid_quantity"}


def test_clear_empties_cart(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-001", 2))
    client.cart(add_payload("bread-01", 1))

    response = client.cart(cart_request("clear"))

    assert response.json() == {"ok": True}
    assert cart_quantities(merchant) == {}


def test_clear_empty_cart_accepted(client: MerchantClient) -> None:
    response = client.cart(cart_request("clear"))

    assert response.json() == {"ok": True}


def test_carts_separated_by_session_and_store(
    client: MerchantClient, merchant: MerchantServer
) -> None:
    client.cart(add_payload("milk-001", 1))
    client.cart(add_payload("milk-001", 2, session_id="user-456"))
    client.cart(add_payload("milk-001", 3, store_id="store-2"))

    assert merchant.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 1
    assert merchant.store.cart_items(STORE_ID, "user-456")[0]["quantity"] == 2
    assert merchant.store.cart_items("store-2", SESSION_ID)[0]["quantity"] == 3


def test_limits_apply_per_session(client: MerchantClient) -> None:
    first = client.cart(add_payload("milk-002", 3))
    second = client.cart(add_payload("milk-002", 3, session_id="user-456"))

    assert first.json() == {"ok": True}
    assert second.json() == {"ok": True}


def test_rejection_reason_recorded(client: MerchantClient, merchant: MerchantServer) -> None:
    client.cart(add_payload("milk-003"))

    assert merchant.requests[-1].response == {"ok": False, "reason": "out_of_stock"}
