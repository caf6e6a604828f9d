"""Constructors of the events a chat client receives for one shopper message.

Every event is a JSON object with a ``type``. The REST API returns them as an ordered list,
and a streaming transport sends the same objects one by one. A full text reply may be sent as
one ``text_delta`` that carries the whole text, followed by ``text_end``.
"""

from enum import StrEnum
from typing import Any, TypedDict

Event = dict[str, Any]


class EventType(StrEnum):
    STATUS = "status"
    TEXT_DELTA = "text_delta"
    TEXT_END = "text_end"
    PRODUCT_CARDS = "product_cards"
    CART_CHANGED = "cart_changed"
    EVENT = "event"
    ERROR = "error"
    RESPONSE_COMPLETE = "response_complete"


class StatusCode(StrEnum):
    SEARCHING = "searching"
    UPDATING_CART = "updating_cart"


class CartChangeAction(StrEnum):
    ITEM_SELECTED = "item_selected"
    ITEM_REMOVED = "item_removed"
    QUANTITY_UPDATED = "quantity_updated"
    CART_CLEARED = "cart_cleared"


class ProductCard(TypedDict):
    """A product as shown to the shopper, priced by the merchant's products webhook."""

    sku: str
    name: str
    brand: str | None
    price: float
    promo_price: float | None
    promo_label: str | None
    unit: str
    image_url: str | None
    category_path: str | None


class CartItem(TypedDict):
    """One cart line; ``promo_price`` and ``brand`` are null when unknown."""

    sku: str
    name: str
    price: float
    promo_price: float | None
    brand: str | None
    quantity: float
    unit: str


class CartSnapshot(TypedDict):
    """The cart as the merchant last confirmed it; ``total`` uses promo prices where set."""

    items: list[CartItem]
    total: float


def status(code: StatusCode) -> Event:
    return {"type": EventType.STATUS.value, "code": code.value}


def text_delta(delta: str) -> Event:
    return {"type": EventType.TEXT_DELTA.value, "delta": delta}


def text_end() -> Event:
    return {"type": EventType.TEXT_END.value}


def text_events(text: str) -> list[Event]:
    """Return a whole reply as one ``text_delta`` followed by ``text_end``."""
    return [text_delta(text), text_end()]


def product_cards(items: list[ProductCard]) -> Event:
    return {"type": EventType.PRODUCT_CARDS.value, "items": list(items)}


def cart_changed(
    *,
    action: CartChangeAction,
    cart: CartSnapshot,
    sku: str | None = None,
    name: str | None = None,
    quantity: float | None = None,
    price: float | None = None,
) -> Event:
    """Build a ``cart_changed`` event; the optional fields are left out when None."""
    event: Event = {"type": EventType.CART_CHANGED.value, "action": action.value}
    optional = {"sku": sku, "name": name, "quantity": quantity, "price": price}
    event.update({key: value for key, value in optional.items() if value is not None})
    event["items"] = [dict(item) for item in cart["items"]]
    event["total"] = cart["total"]
    return event


def named_event(name: str, **fields: Any) -> Event:
    """Build a generic ``event`` message such as ``{"type": "event", "event": "item_selected"}``."""
    return {"type": EventType.EVENT.value, "event": name, **fields}


def error(code: str, **fields: Any) -> Event:
    """Build an ``error`` event; ``code`` is an ``ErrorCode`` value that clients localize."""
    return {"type": EventType.ERROR.value, "code": str(code), **fields}


def response_complete() -> Event:
    return {"type": EventType.RESPONSE_COMPLETE.value}
