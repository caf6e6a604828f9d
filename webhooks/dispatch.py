"""Calls to the merchant's products, cart and cart GET webhooks."""

from dataclasses import dataclass, field
from enum import StrEnum

from tenants.models import Tenant


class CartAction(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    UPDATE_QUANTITY = "update_quantity"
    CLEAR = "clear"


class FailureReason(StrEnum):
    """Reasons this service reports when a webhook call itself fails."""

    TIMEOUT = "webhook_timeout"
    ERROR = "webhook_error"
    NOT_CONFIGURED = "webhook_not_configured"


@dataclass(frozen=True)
class LiveProduct:
    """Price and stock of one SKU as the products webhook returned them."""

    sku: str
    price: float
    in_stock: bool
    promo_price: float | None = None
    promo_label: str | None = None


@dataclass(frozen=True)
class ProductsResult:
    """Outcome of a products webhook call.

    ``available`` holds only requested SKUs that the merchant returned as in stock; on any
    failure it is empty and ``failure`` says why.
    """

    available: dict[str, LiveProduct] = field(default_factory=dict)
    failure: FailureReason | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class CartResult:
    """Outcome of a cart webhook call: the merchant's ``ok`` and ``reason``."""

    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class CartLine:
    sku: str
    name: str
    price: float
    quantity: float
    unit: str = "pcs"
    promo_price: float | None = None
    brand: str | None = None


@dataclass(frozen=True)
class CartLoadResult:
    lines: list[CartLine] = field(default_factory=list)
    failure: FailureReason | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def products_fetch(*, tenant: Tenant, skus: list[str], store_id: str) -> ProductsResult:
    """Ask the products webhook for live prices and stock of ``skus``."""
    raise NotImplementedError


def cart_change(
    *,
    tenant: Tenant,
    action: CartAction,
    store_id: str,
    session_id: str,
    sku: str | None = None,
    name: str | None = None,
    quantity: float | None = None,
    price: float | None = None,
) -> CartResult:
    """Send one cart change to the cart webhook; a failed call yields webhook_timeout/error."""
    raise NotImplementedError


def cart_fetch(*, tenant: Tenant, store_id: str, session_id: str) -> CartLoadResult:
    """Load the shopper's existing cart through the cart GET webhook."""
    raise NotImplementedError
