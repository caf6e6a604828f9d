"""Secrets, stock and catalog shared by the merchant tests."""

from __future__ import annotations

SECRET = "whsec_current"
STORE_ID = "store-1"
SESSION_ID = "user-123"

# A tiny catalog that covers every stock situation the cart rules distinguish.
STOCK = {
    "milk-001": {"price": 45.9, "in_stock": True, "stock": 25},
    "milk-002": {
        "price": 52.0,
        "in_stock": True,
        "stock": 10,
        "promo_price": 42.0,
        "promo_label": "-19%",
        "max_per_customer": 3,
    },
    "milk-003": {"price": 38.5, "in_stock": False, "stock": 0},
    "bread-01": {"price": 32.0, "in_stock": True, "stock": 2},
    "apple-kg": {"price": 14.95, "in_stock": True, "stock": 5},
    "empty-shelf": {"price": 10.0, "in_stock": True, "stock": 0},
}
CATALOG = [
    {"sku": "milk-001", "name": "Молоко Lactel 2.5%", "unit": "pcs"},
    {"sku": "milk-002", "name": "Молоко Галичина 3.2%", "unit": "pcs"},
    {"sku": "milk-003", "name": "Молоко Яготинське 2.6%", "unit": "pcs"},
    {"sku": "bread-01", "name": "Хліб", "unit": "pcs"},
    {
        "sku": "apple-kg",
        "name": "Яблуко гала",
        "unit": "kg",
        "quantity_step": 0.1,
        "min_quantity": 0.1,
    },
    {"sku": "empty-shelf", "name": "Порожня полиця", "unit": "pcs"},
]


def add_payload(sku: str, quantity: float = 1, **fields: object) -> dict[str, object]:
    """A cart `add` request as Vizochok sends it, with name and price included."""
    return {
        "action": "add",
        "store_id": STORE_ID,
        "session_id": SESSION_ID,
        "sku": sku,
        "name": "name from the request",
        "quantity": quantity,
        "price": 0.01,
        **fields,
    }
