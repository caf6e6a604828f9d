from __future__ import annotations

import json
from pathlib import Path

import pytest

from merchant.server import build_store, start_merchant
from merchant.store import Store, parse_catalog, parse_stock, parse_stock_item
from tests.merchant.sample_data import SECRET, SESSION_ID, STOCK, STORE_ID, add_payload


@pytest.mark.parametrize(
    ("_case", "entry", "message"),
    [
        ("no price", {"in_stock": True}, "missing a price"),
        ("negative price", {"price": -1}, "price must be a non-negative number"),
        ("text price", {"price": "45.90"}, "price must be a non-negative number"),
        ("text in_stock", {"price": 1, "in_stock": "yes"}, "in_stock must be true or false"),
        ("numeric label", {"price": 1, "promo_label": 19}, "promo_label must be a string"),
        ("zero limit", {"price": 1, "max_per_customer": 0}, "max_per_customer must be positive"),
        ("typo in field", {"price": 1, "promo_prise": 2}, "unknown fields"),
    ],
)
def test_invalid_stock_entry_rejected(_case: str, entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_stock_item("sku-1", entry)


def test_minimal_stock_entry_defaults() -> None:
    item = parse_stock_item("sku-1", {"price": 10})

    assert item.in_stock is True
    assert item.stock is None
    assert item.available is True
    assert item.current_price == 10


def test_unlimited_stock_accepts_large_quantity() -> None:
    store = Store(stock=parse_stock({"milk-001": {"price": 10}}))

    response = store.cart_update(add_payload("milk-001", 500))

    assert response == {"ok": True}


def test_catalog_from_mapping_or_list() -> None:
    from_mapping = parse_catalog({"a": {"name": "A", "unit": "kg", "min_quantity": 0.1}})
    from_list = parse_catalog([{"sku": "a", "name": "A", "unit": "kg", "min_quantity": 0.1}])

    assert from_mapping == from_list
    assert from_list["a"].unit == "kg"
    assert from_list["a"].min_quantity == 0.1


def test_catalog_without_name_uses_sku() -> None:
    assert parse_catalog([{"sku": "a"}])["a"].name == "a"


def test_catalog_product_without_sku_rejected() -> None:
    with pytest.raises(ValueError, match="without a sku"):
        parse_catalog([{"name": "A"}])


def test_cart_without_catalog_names_lines_by_sku() -> None:
    store = Store(stock=parse_stock(STOCK))

    store.cart_update(add_payload("milk-001", 1))

    assert store.cart_items(STORE_ID, SESSION_ID)[0]["name"] == "milk-001"


def test_stock_update_validates() -> None:
    store = Store(stock=parse_stock(STOCK))

    with pytest.raises(ValueError, match="price must be"):
        store.stock_update("milk-001", price=-5)
    with pytest.raises(KeyError):
        store.stock_update("no-such-sku", price=5)


def test_build_store_needs_one_stock_source(tmp_path: Path) -> None:
    stock_path = tmp_path / "stock.json"
    stock_path.write_text(json.dumps(STOCK), encoding="utf-8")

    with pytest.raises(ValueError, match="exactly one of stock_path and stock"):
        build_store()
    with pytest.raises(ValueError, match="exactly one of stock_path and stock"):
        build_store(stock_path=stock_path, stock=STOCK)


def test_start_from_files(tmp_path: Path) -> None:
    # given
    stock_path = tmp_path / "stock.json"
    stock_path.write_text(json.dumps(STOCK), encoding="utf-8")
    catalog_path = tmp_path / "catalog.jsonl"
    catalog_path.write_text(
        '{"sku": "milk-001", "name": "Молоко"}\n\n{"sku": "bread-01", "name": "Хліб"}\n',
        encoding="utf-8",
    )

    # when
    server = start_merchant(secret=SECRET, stock_path=stock_path, catalog_path=catalog_path)
    try:
        server.store.cart_seed(STORE_ID, SESSION_ID, [("milk-001", 2)])
        items = server.store.cart_items(STORE_ID, SESSION_ID)
    finally:
        server.shutdown()

    # then
    assert items == [
        {"sku": "milk-001", "name": "Молоко", "price": 45.9, "quantity": 2, "unit": "pcs"}
    ]
    assert server.products_url == server.url + "/vizochok/products"
    assert server.cart_url == server.url + "/vizochok/cart"
    assert server.cart_get_url == server.url + "/vizochok/cart"
    assert server.url.startswith("http://127.0.0.1:")


def test_start_rejects_empty_secret() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        start_merchant(secret="", stock=STOCK)
