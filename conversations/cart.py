"""Arithmetic on the cart snapshot that a conversation keeps.

The merchant owns the cart. These functions only replay a change the merchant has already
confirmed onto the local snapshot, so that the client receives the new cart without
another webhook call. Amounts are computed in ``Decimal`` and stored as JSON numbers.
"""

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from conversations.events import CartItem, CartSnapshot
from webhooks.dispatch import CartLine

MONEY_PLACES = Decimal("0.01")
# Cart lines listed to a model in each cart that it receives. A cart GET response may hold thousands
# of lines within its 256 KiB body limit, and every model request of a turn repeats the
# cart, so a longer cart is cut to its first lines. With the names of the ATB demo catalog
# (demo/data) a line averages 161 characters of JSON, so 50 lines are about 8,000.
MAX_MODEL_CART_LINES = 50
MODEL_CART_NOTE = (
    "This cart lists only {listed} of its {line_count} lines, to keep the message short. "
    "Its total covers every line. To find or change a line that is not listed, search for "
    "the product by name."
)
# Goods sold by weight are counted to the gram.
QUANTITY_PLACES = Decimal("0.001")


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """Convert through ``str`` so that 0.1 stays 0.1 instead of its binary approximation."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def quantity_rounded(value: Decimal | float | int) -> Decimal:
    """Return a finite quantity rounded half up to ``QUANTITY_PLACES``, as it is sent."""
    return to_decimal(value).quantize(QUANTITY_PLACES, rounding=ROUND_HALF_UP)


def quantity_number(value: Decimal | float | int) -> int | float:
    """Return a quantity as a JSON number: 2 for whole quantities, 0.5 otherwise."""
    rounded = quantity_rounded(value)
    if rounded == rounded.to_integral_value():
        return int(rounded)
    return float(rounded.normalize())


def money_number(value: Decimal) -> float:
    return float(value.quantize(MONEY_PLACES, rounding=ROUND_HALF_UP))


def effective_price(item: Mapping[str, Any]) -> Decimal:
    """Return the price the shopper pays for one unit: the promo price when there is one."""
    promo_price = item.get("promo_price")
    return to_decimal(promo_price if promo_price is not None else item["price"])


def line_amount(item: Mapping[str, Any]) -> Decimal:
    """Return what one cart line costs: effective price × quantity, rounded half up to cents."""
    amount = effective_price(item) * to_decimal(item["quantity"])
    return amount.quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)


def cart_total(items: Iterable[Mapping[str, Any]]) -> float:
    """Return the sum of the line amounts, so that it equals the sum of the lines shown."""
    return money_number(sum((line_amount(item) for item in items), Decimal(0)))


def cart_snapshot(items: Iterable[CartItem]) -> CartSnapshot:
    item_list = list(items)
    return {"items": item_list, "total": cart_total(item_list)}


def cart_item(
    *,
    sku: str,
    name: str,
    price: float,
    quantity: Decimal | float | int,
    unit: str = "pcs",
    promo_price: float | None = None,
    brand: str | None = None,
) -> CartItem:
    return {
        "sku": sku,
        "name": name,
        "price": price,
        "promo_price": promo_price,
        "brand": brand or None,
        "quantity": quantity_number(quantity),
        "unit": unit or "pcs",
    }


def cart_from_lines(lines: Iterable[CartLine]) -> CartSnapshot:
    """Build a snapshot from the lines the cart GET webhook returned."""
    return cart_snapshot(
        cart_item(
            sku=line.sku,
            name=line.name,
            price=line.price,
            quantity=to_decimal(line.quantity),
            unit=line.unit,
            promo_price=line.promo_price,
            brand=line.brand,
        )
        for line in lines
    )


def cart_find(cart: CartSnapshot, sku: str) -> CartItem | None:
    return next((item for item in cart["items"] if item["sku"] == sku), None)


def cart_with_added(cart: CartSnapshot, added: CartItem) -> CartSnapshot:
    """Add ``added``; an existing line of the same SKU gets the sum and the newer prices."""
    items: list[CartItem] = []
    merged = False
    for item in cart["items"]:
        if item["sku"] == added["sku"]:
            quantity = to_decimal(item["quantity"]) + to_decimal(added["quantity"])
            items.append({**added, "quantity": quantity_number(quantity)})
            merged = True
        else:
            items.append(item)
    if not merged:
        items.append(added)
    return cart_snapshot(items)


def cart_without(cart: CartSnapshot, sku: str) -> CartSnapshot:
    return cart_snapshot(item for item in cart["items"] if item["sku"] != sku)


def cart_with_quantity(
    cart: CartSnapshot, *, sku: str, quantity: Decimal, fallback: CartItem | None = None
) -> CartSnapshot:
    """Set the quantity of ``sku``.

    The merchant may confirm an update for a line the local snapshot lacks (the shopper can
    change the cart on the store's site too), so ``fallback`` is appended in that case.
    """
    if cart_find(cart, sku) is None:
        if fallback is None:
            return cart_snapshot(cart["items"])
        return cart_snapshot([*cart["items"], {**fallback, "quantity": quantity_number(quantity)}])
    return cart_snapshot(
        {**item, "quantity": quantity_number(quantity)} if item["sku"] == sku else item
        for item in cart["items"]
    )


def cart_for_model(cart: CartSnapshot, *, keep_sku: str | None = None) -> dict[str, Any]:
    """Return the cart as sent to a model: the snapshot, cut to its first lines when long.

    A cut cart lists its first ``MAX_MODEL_CART_LINES`` lines and the line of ``keep_sku``
    (the line that a cart change touched), with the whole cart's total, ``line_count``,
    ``lines_not_listed`` and a note. The snapshot itself and the client's events keep every
    line.
    """
    items = cart["items"]
    if len(items) <= MAX_MODEL_CART_LINES:
        return dict(cart)
    listed = items[:MAX_MODEL_CART_LINES]
    changed_line = cart_find(cart, keep_sku) if keep_sku is not None else None
    if changed_line is not None and changed_line not in listed:
        listed = [*listed, changed_line]
    return {
        "items": listed,
        "total": cart["total"],
        "line_count": len(items),
        "lines_not_listed": len(items) - len(listed),
        "note": MODEL_CART_NOTE.format(listed=len(listed), line_count=len(items)),
    }


def cart_empty() -> CartSnapshot:
    return {"items": [], "total": 0.0}


def cart_parse(data: Any) -> CartSnapshot:
    """Read a stored snapshot, tolerating the empty ``{}`` of an older row."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        return cart_empty()
    return cart_snapshot(data["items"])
