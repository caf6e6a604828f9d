"""Prices, stock and carts of the reference merchant, kept in memory.

The merchant is the system of record for prices and stock. Vizochok requests current prices
from it and sends it cart changes, and the merchant decides whether to accept them. A cart
change is checked against the merchant's own data only. The `name` and `price` that the
request carries are ignored, and the cart stores the merchant's current price (the
promotional price when there is one).

Carts are keyed by (store_id, session_id) and do not reserve stock: a cart may hold up to the
current stock level of each product, and up to the product's per-customer limit.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

UNIT_PIECES = "pcs"

ACTION_ADD = "add"
ACTION_REMOVE = "remove"
ACTION_UPDATE_QUANTITY = "update_quantity"
ACTION_CLEAR = "clear"
CART_ACTIONS = (ACTION_ADD, ACTION_REMOVE, ACTION_UPDATE_QUANTITY, ACTION_CLEAR)

# Reasons returned in {"ok": false, "reason": ...}. The first six are the ones the Vizochok
# webhook contract suggests, and the assistant explains each of them to the shopper.
OUT_OF_STOCK = "out_of_stock"
PRODUCT_NOT_FOUND = "product_not_found"
QUANTITY_EXCEEDED = "quantity_exceeded"
NOT_IN_CART = "not_in_cart"
MISSING_SKU = "missing_sku"
MISSING_PARAMS = "missing_params"
INVALID_ACTION = "invalid_action"
INVALID_QUANTITY = "invalid_quantity"

# Quantities of goods sold by weight are kept to the gram.
QUANTITY_DECIMALS = 3
DEFAULT_IDEMPOTENCY_CACHE_SIZE = 1000

STOCK_FIELDS = frozenset(
    {"price", "in_stock", "stock", "promo_price", "promo_label", "max_per_customer"}
)

CartResponse = dict[str, object]


class IdempotencyConflictError(Exception):
    """An idempotency key was sent again with a different cart request."""


@dataclass(frozen=True)
class StockItem:
    """The merchant's price and stock for one SKU. `stock` None means unlimited."""

    price: float
    in_stock: bool = True
    stock: float | None = None
    promo_price: float | None = None
    promo_label: str | None = None
    max_per_customer: float | None = None

    @property
    def current_price(self) -> float:
        """Price the shopper pays now: the promotional price when there is one."""
        return self.price if self.promo_price is None else self.promo_price

    @property
    def available(self) -> bool:
        return self.in_stock and (self.stock is None or self.stock > 0)


@dataclass(frozen=True)
class ProductInfo:
    """Catalog facts the merchant needs for carts: the display name and the sales unit."""

    name: str
    unit: str = UNIT_PIECES
    min_quantity: float | None = None


@dataclass
class CartLine:
    sku: str
    name: str
    unit: str
    price: float
    quantity: float


def _is_number(value: object) -> TypeGuard[int | float]:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        # A JSON integer beyond the float range, such as 10**400.
        return False


def _is_text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value != ""


def _json_number(value: float) -> int | float:
    """Write 2.0 as 2 in responses, so piece counts look like piece counts."""
    return int(value) if float(value).is_integer() else value


def _optional_number(sku: str, entry: Mapping[str, object], key: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if not _is_number(value) or value < 0:
        raise ValueError(f"Stock entry {sku!r}: {key} must be a non-negative number, got {value!r}")
    return float(value)


def parse_stock_item(sku: str, entry: Mapping[str, object]) -> StockItem:
    """Validate one stock entry such as {"price": 45.9, "in_stock": true, "stock": 25}."""
    unknown = set(entry) - STOCK_FIELDS
    if unknown:
        raise ValueError(f"Stock entry {sku!r} has unknown fields {sorted(unknown)}")

    price = _optional_number(sku, entry, "price")
    if price is None:
        raise ValueError(f"Stock entry {sku!r} is missing a price")
    in_stock = entry.get("in_stock", True)
    if not isinstance(in_stock, bool):
        raise ValueError(f"Stock entry {sku!r}: in_stock must be true or false, got {in_stock!r}")
    promo_label = entry.get("promo_label")
    if promo_label is not None and not isinstance(promo_label, str):
        raise ValueError(f"Stock entry {sku!r}: promo_label must be a string, got {promo_label!r}")
    max_per_customer = _optional_number(sku, entry, "max_per_customer")
    if max_per_customer == 0:
        raise ValueError(f"Stock entry {sku!r}: max_per_customer must be positive")

    return StockItem(
        price=price,
        in_stock=in_stock,
        stock=_optional_number(sku, entry, "stock"),
        promo_price=_optional_number(sku, entry, "promo_price"),
        promo_label=promo_label,
        max_per_customer=max_per_customer,
    )


def parse_stock(data: Mapping[str, Mapping[str, object]]) -> dict[str, StockItem]:
    """Validate a stock mapping of SKU to entry, the format of demo/data/atb-stock.json."""
    if not isinstance(data, Mapping):
        raise ValueError("Stock data must be a JSON object that maps SKUs to entries")
    return {str(sku): parse_stock_item(str(sku), entry) for sku, entry in data.items()}


def parse_catalog(
    data: Mapping[str, Mapping[str, object]] | Iterable[Mapping[str, object]],
) -> dict[str, ProductInfo]:
    """Read names and units from catalog products (ProductInput objects).

    Accepts either a mapping of SKU to product or an iterable of products with a `sku` field.
    """
    products: list[Mapping[str, object]]
    if isinstance(data, Mapping):
        products = [{"sku": sku, **product} for sku, product in data.items()]
    else:
        products = list(data)

    catalog: dict[str, ProductInfo] = {}
    for product in products:
        sku = product.get("sku")
        if not _is_text(sku):
            raise ValueError(f"Catalog product without a sku: {product!r}")
        name = product.get("name")
        unit = product.get("unit") or UNIT_PIECES
        min_quantity = product.get("min_quantity")
        catalog[str(sku)] = ProductInfo(
            name=str(name) if _is_text(name) else str(sku),
            unit=str(unit),
            min_quantity=float(min_quantity) if _is_number(min_quantity) else None,
        )
    return catalog


def load_stock(path: str | Path) -> dict[str, StockItem]:
    with Path(path).open(encoding="utf-8") as stock_file:
        return parse_stock(json.load(stock_file))


def load_catalog(path: str | Path) -> dict[str, ProductInfo]:
    """Read a catalog in JSON Lines format, one ProductInput object per line."""
    with Path(path).open(encoding="utf-8") as catalog_file:
        products = [json.loads(line) for line in catalog_file if line.strip()]
    return parse_catalog(products)


def _rejected(reason: str) -> CartResponse:
    return {"ok": False, "reason": reason}


def _accepted() -> CartResponse:
    return {"ok": True}


def _max_per_customer_reason(limit: float) -> str:
    return f"max_{_json_number(limit)}_per_customer"


class Store:
    """Thread-safe in-memory prices, stock, carts and remembered cart responses."""

    def __init__(
        self,
        *,
        stock: Mapping[str, StockItem],
        catalog: Mapping[str, ProductInfo] | None = None,
        idempotency_cache_size: int = DEFAULT_IDEMPOTENCY_CACHE_SIZE,
    ) -> None:
        self._lock = threading.Lock()
        self._stock = dict(stock)
        self._catalog = dict(catalog or {})
        self._carts: dict[tuple[str, str], dict[str, CartLine]] = {}
        # (store_id, session_id, idempotency key) -> (request fingerprint, response)
        self._responses: OrderedDict[tuple[str, str, str], tuple[str, CartResponse]] = OrderedDict()
        self._idempotency_cache_size = idempotency_cache_size

    # Products

    def products_check(self, skus: Iterable[str]) -> list[dict[str, object]]:
        """Return price and availability for the known SKUs and leave unknown SKUs out."""
        products: list[dict[str, object]] = []
        with self._lock:
            for sku in dict.fromkeys(skus):
                item = self._stock.get(sku)
                if item is None:
                    continue
                product: dict[str, object] = {
                    "sku": sku,
                    "price": item.price,
                    "in_stock": item.available,
                }
                if item.promo_price is not None:
                    product["promo_price"] = item.promo_price
                if item.promo_label is not None:
                    product["promo_label"] = item.promo_label
                products.append(product)
        return products

    def stock_item(self, sku: str) -> StockItem | None:
        with self._lock:
            return self._stock.get(sku)

    def stock_update(self, sku: str, **changes: object) -> StockItem:
        """Change fields of a SKU's stock entry, for example stock_update("a", in_stock=False)."""
        with self._lock:
            current = self._stock.get(sku)
            if current is None:
                raise KeyError(sku)
            fields = {
                "price": current.price,
                "in_stock": current.in_stock,
                "stock": current.stock,
                "promo_price": current.promo_price,
                "promo_label": current.promo_label,
                "max_per_customer": current.max_per_customer,
                **changes,
            }
            updated = parse_stock_item(sku, fields)
            self._stock[sku] = updated
            return updated

    # Carts

    def cart_items(self, store_id: str, session_id: str) -> list[dict[str, object]]:
        """Return a cart's lines as Cart GET items, priced at the current price."""
        with self._lock:
            lines = list(self._carts.get((store_id, session_id), {}).values())
            items: list[dict[str, object]] = []
            for line in lines:
                item = self._stock.get(line.sku)
                price = item.current_price if item is not None else line.price
                items.append(
                    {
                        "sku": line.sku,
                        "name": line.name,
                        "price": price,
                        "quantity": _json_number(line.quantity),
                        "unit": line.unit,
                    }
                )
            return items

    def cart_seed(self, store_id: str, session_id: str, items: Iterable[tuple[str, float]]) -> None:
        """Put products into a cart without stock checks, to prepare a demo or a test."""
        with self._lock:
            for sku, quantity in items:
                item = self._stock.get(sku)
                if item is None:
                    raise ValueError(f"Cannot seed a cart with unknown SKU {sku!r}")
                if not _is_number(quantity) or quantity <= 0:
                    raise ValueError(
                        f"Seed quantity for {sku!r} must be positive, got {quantity!r}"
                    )
                cart = self._carts.setdefault((store_id, session_id), {})
                line = cart.get(sku)
                total = round((line.quantity if line else 0) + quantity, QUANTITY_DECIMALS)
                self._cart_put(cart, sku, item, total)

    def cart_update(
        self, payload: Mapping[str, object], *, idempotency_key: str | None = None
    ) -> CartResponse:
        """Apply one cart webhook request and return {"ok": true} or {"ok": false, "reason"}.

        With an idempotency key, the response is remembered for the request's session. A
        request that repeats the key gets the remembered response, and the cart is not changed
        again. Reusing a key for a different request raises IdempotencyConflictError. Only the
        latest `idempotency_cache_size` keys are remembered.
        """
        with self._lock:
            if idempotency_key is None:
                return dict(self._cart_apply(payload))

            cache_key = (
                str(payload.get("store_id")),
                str(payload.get("session_id")),
                idempotency_key,
            )
            fingerprint = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
            remembered = self._responses.get(cache_key)
            if remembered is not None:
                if remembered[0] != fingerprint:
                    raise IdempotencyConflictError(idempotency_key)
                self._responses.move_to_end(cache_key)
                return dict(remembered[1])

            response = self._cart_apply(payload)
            self._responses[cache_key] = (fingerprint, response)
            while len(self._responses) > self._idempotency_cache_size:
                self._responses.popitem(last=False)
            return dict(response)

    def _cart_apply(self, payload: Mapping[str, object]) -> CartResponse:
        action = payload.get("action")
        if action is None or action == "":
            return _rejected(MISSING_PARAMS)
        if action not in CART_ACTIONS:
            return _rejected(INVALID_ACTION)

        store_id = payload.get("store_id")
        session_id = payload.get("session_id")
        if not _is_text(store_id) or not _is_text(session_id):
            return _rejected(MISSING_PARAMS)
        cart_key = (store_id, session_id)

        if action == ACTION_CLEAR:
            self._carts.pop(cart_key, None)
            return _accepted()

        sku = payload.get("sku")
        if not _is_text(sku):
            return _rejected(MISSING_SKU)

        if action == ACTION_REMOVE:
            return self._cart_remove(cart_key, sku)
        if action == ACTION_ADD:
            quantity = payload.get("quantity")
            return self._cart_add(cart_key, sku, 1 if quantity is None else quantity)

        if payload.get("quantity") is None:
            return _rejected(MISSING_PARAMS)
        return self._cart_set_quantity(cart_key, sku, payload["quantity"])

    def _cart_add(self, cart_key: tuple[str, str], sku: str, quantity: object) -> CartResponse:
        item = self._stock.get(sku)
        if item is None:
            return _rejected(PRODUCT_NOT_FOUND)
        amount = self._parse_quantity(sku, quantity)
        if amount is None or amount == 0:
            return _rejected(INVALID_QUANTITY)
        if not item.available:
            return _rejected(OUT_OF_STOCK)

        cart = self._carts.get(cart_key, {})
        line = cart.get(sku)
        total = round((line.quantity if line else 0) + amount, QUANTITY_DECIMALS)
        rejection = self._check_limits(item, total)
        if rejection:
            return rejection

        self._cart_put(self._carts.setdefault(cart_key, cart), sku, item, total)
        return _accepted()

    def _cart_remove(self, cart_key: tuple[str, str], sku: str) -> CartResponse:
        cart = self._carts.get(cart_key, {})
        if sku not in cart:
            return _rejected(NOT_IN_CART)
        del cart[sku]
        return _accepted()

    def _cart_set_quantity(
        self, cart_key: tuple[str, str], sku: str, quantity: object
    ) -> CartResponse:
        cart = self._carts.get(cart_key, {})
        if sku not in cart:
            return _rejected(NOT_IN_CART)
        amount = self._parse_quantity(sku, quantity)
        if amount is None:
            return _rejected(INVALID_QUANTITY)
        if amount == 0:
            del cart[sku]
            return _accepted()

        item = self._stock.get(sku)
        if item is None:
            return _rejected(PRODUCT_NOT_FOUND)
        if not item.available:
            return _rejected(OUT_OF_STOCK)
        rejection = self._check_limits(item, amount)
        if rejection:
            return rejection

        self._cart_put(cart, sku, item, amount)
        return _accepted()

    def _parse_quantity(self, sku: str, quantity: object) -> float | None:
        """Return the quantity rounded to the gram, or None if it is not valid for the product.

        Zero is valid here, because it means "remove" for update_quantity. Piece goods need
        whole numbers, and goods sold by weight need at least the product's minimum quantity.
        """
        if not _is_number(quantity) or quantity < 0:
            return None
        amount = round(float(quantity), QUANTITY_DECIMALS)
        if amount == 0:
            return 0.0

        product = self._catalog.get(sku)
        unit = product.unit if product else UNIT_PIECES
        if unit == UNIT_PIECES and not amount.is_integer():
            return None
        if product and product.min_quantity is not None and amount < product.min_quantity:
            return None
        return amount

    def _check_limits(self, item: StockItem, total: float) -> CartResponse | None:
        """Reject a cart total over the per-customer limit or over the stock level."""
        if item.max_per_customer is not None and total > item.max_per_customer:
            return _rejected(_max_per_customer_reason(item.max_per_customer))
        if item.stock is not None and total > item.stock:
            return _rejected(QUANTITY_EXCEEDED)
        return None

    def _cart_put(
        self, cart: dict[str, CartLine], sku: str, item: StockItem, quantity: float
    ) -> None:
        # Assigning to an existing key keeps the line's position in the cart.
        product = self._catalog.get(sku)
        cart[sku] = CartLine(
            sku=sku,
            name=product.name if product else sku,
            unit=product.unit if product else UNIT_PIECES,
            price=item.current_price,
            quantity=quantity,
        )
