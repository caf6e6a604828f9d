"""Calls to the merchant's products, cart and cart GET webhooks.

``products_fetch``, ``cart_change`` and ``cart_fetch`` are what the assistant uses. They
never raise for a merchant failure: each returns a result whose ``failure`` (or cart
``reason``) is a ``FailureReason`` when the call itself failed. ``webhooks.calls`` holds
the machinery shared by every call: signing, the retry, the circuit breaker, response
validation and the delivery log. The ``*_call`` builders here are also used by the admin
test, the test API and ``check_merchant``, so diagnostics take exactly the production path.
"""

import json
import logging
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

from tenants.models import Tenant, WebhookSettings
from webhooks.calls import (
    DELIVERY_ID_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    MAX_ATTEMPTS,
    CallOutcome,
    FailureReason,
    WebhookCall,
    signing_secrets,
)
from webhooks.models import WebhookKind
from webhooks.schemas import (
    CartGetItem,
    ParsedList,
    ProductItem,
    parse_cart,
    parse_cart_get,
    parse_products,
)

__all__ = [
    "DELIVERY_ID_HEADER",
    "IDEMPOTENCY_KEY_HEADER",
    "MAX_ATTEMPTS",
    "CallOutcome",
    "CartAction",
    "CartLine",
    "CartLoadResult",
    "CartResult",
    "FailureReason",
    "LiveProduct",
    "ProductsResult",
    "WebhookCall",
    "cart_call",
    "cart_payload",
    "configured_url",
    "cart_change",
    "cart_fetch",
    "cart_get_call",
    "products_call",
    "products_fetch",
    "signing_secrets",
    "UNKNOWN_CART_REASON",
]

logger = logging.getLogger(__name__)

# The reason of a cart result when the merchant responded with {"ok": false} and no reason.
UNKNOWN_CART_REASON = "unknown"

# Bounds of the log lines about a response's dropped items and ignored promotions.
MAX_LOGGED_DROP_REASONS = 10
MAX_LOGGED_REASON_LENGTH = 200


class CartAction(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    UPDATE_QUANTITY = "update_quantity"
    CLEAR = "clear"


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
    failure it is empty and ``failure`` names the reason (``circuit_open`` when no request was sent
    because the breaker is open).
    """

    available: dict[str, LiveProduct] = field(default_factory=dict)
    failure: FailureReason | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class CartResult:
    """Outcome of a cart webhook call: the merchant's ``ok`` and ``reason``.

    When the call itself failed, ``reason`` is a ``FailureReason`` value: ``webhook_timeout``,
    ``webhook_error``, ``webhook_not_configured`` or ``circuit_open``.
    """

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


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _webhook_settings(tenant: Tenant) -> WebhookSettings | None:
    return WebhookSettings.objects.filter(tenant=tenant).first()


def configured_url(webhook_settings: WebhookSettings | None, kind: WebhookKind) -> str | None:
    """Return the kind's URL when it is set and a signing secret exists, else None."""
    if webhook_settings is None or not webhook_settings.has_secret:
        return None
    url_field = {
        WebhookKind.PRODUCTS: "products_url",
        WebhookKind.CART: "cart_url",
        WebhookKind.CART_GET: "cart_get_url",
    }[kind]
    return getattr(webhook_settings, url_field) or None


def _logged_reasons(reasons: list[str]) -> list[str]:
    return [reason[:MAX_LOGGED_REASON_LENGTH] for reason in reasons[:MAX_LOGGED_DROP_REASONS]]


def _log_item_problems(*, tenant: Tenant, kind: WebhookKind, parsed: ParsedList[Any]) -> None:
    """Log a response's dropped items and ignored promotions, one line for each kind.

    Each line has the count and the first few reasons. A response within the size limit can
    drop over 100,000 items, and a reason quotes the merchant's SKU, so one line per item
    would flood the logs.
    """
    if parsed.dropped:
        logger.warning(
            "webhooks.response.item_dropped",
            extra={
                "tenant_id": tenant.pk,
                "kind": str(kind),
                "dropped_count": len(parsed.dropped),
                "reasons": _logged_reasons(parsed.dropped),
            },
        )
    if parsed.ignored_promotions:
        logger.warning(
            "webhooks.response.promo_ignored",
            extra={
                "tenant_id": tenant.pk,
                "kind": str(kind),
                "ignored_count": len(parsed.ignored_promotions),
                "reasons": _logged_reasons(parsed.ignored_promotions),
            },
        )


def products_call(
    *,
    tenant: Tenant,
    webhook_settings: WebhookSettings,
    url: str,
    skus: list[str],
    store_id: str,
    **options: Any,
) -> WebhookCall:
    """Build the products call; ``options`` are ``WebhookCall`` fields such as ``is_test``."""
    return WebhookCall(
        tenant=tenant,
        webhook_settings=webhook_settings,
        kind=WebhookKind.PRODUCTS,
        method="POST",
        url=url,
        validate=partial(parse_products, requested_skus=skus),
        body=_encode({"skus": skus, "store_id": store_id}),
        **options,
    )


def cart_call(
    *,
    tenant: Tenant,
    webhook_settings: WebhookSettings,
    url: str,
    payload: dict[str, Any],
    **options: Any,
) -> WebhookCall:
    """Build a cart call with a new idempotency key, which its retry reuses."""
    return WebhookCall(
        tenant=tenant,
        webhook_settings=webhook_settings,
        kind=WebhookKind.CART,
        method="POST",
        url=url,
        validate=parse_cart,
        body=_encode(payload),
        idempotency_key=uuid.uuid4().hex,
        **options,
    )


def cart_get_call(
    *,
    tenant: Tenant,
    webhook_settings: WebhookSettings,
    url: str,
    store_id: str,
    session_id: str,
    **options: Any,
) -> WebhookCall:
    """Build the cart GET call, signed over the empty body."""
    return WebhookCall(
        tenant=tenant,
        webhook_settings=webhook_settings,
        kind=WebhookKind.CART_GET,
        method="GET",
        url=url,
        validate=parse_cart_get,
        params={"store_id": store_id, "session_id": session_id},
        **options,
    )


def cart_payload(
    *,
    action: CartAction,
    store_id: str,
    session_id: str,
    sku: str | None = None,
    name: str | None = None,
    quantity: float | None = None,
    price: float | None = None,
) -> dict[str, Any]:
    """Build the cart request body with the fields the action takes."""
    payload: dict[str, Any] = {"action": action, "store_id": store_id, "session_id": session_id}
    if action == CartAction.ADD:
        payload.update(sku=sku, name=name, quantity=quantity, price=price)
    elif action == CartAction.REMOVE:
        payload["sku"] = sku
    elif action == CartAction.UPDATE_QUANTITY:
        payload.update(sku=sku, quantity=quantity)
    return payload


def products_fetch(*, tenant: Tenant, skus: list[str], store_id: str) -> ProductsResult:
    """Ask the products webhook for live prices and stock of ``skus``."""
    webhook_settings = _webhook_settings(tenant)
    url = configured_url(webhook_settings, WebhookKind.PRODUCTS)
    if webhook_settings is None or url is None:
        return ProductsResult(failure=FailureReason.NOT_CONFIGURED)
    if not skus:
        return ProductsResult()
    outcome = products_call(
        tenant=tenant, webhook_settings=webhook_settings, url=url, skus=skus, store_id=store_id
    ).run()
    if outcome.failure is not None:
        return ProductsResult(failure=outcome.failure)
    parsed: ParsedList[ProductItem] = outcome.parsed
    _log_item_problems(tenant=tenant, kind=WebhookKind.PRODUCTS, parsed=parsed)
    return ProductsResult(
        available={
            item.sku: LiveProduct(
                sku=item.sku,
                price=item.price,
                in_stock=True,
                promo_price=item.promo_price,
                promo_label=item.promo_label,
            )
            for item in parsed.items
            if item.in_stock
        }
    )


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
    """Send one cart change to the cart webhook.

    A failed call yields ``ok=False`` with a ``FailureReason`` as ``reason``. The request
    carries an idempotency key that the single retry reuses, so a merchant that honours it
    applies the change once even when its first answer is lost.
    """
    webhook_settings = _webhook_settings(tenant)
    url = configured_url(webhook_settings, WebhookKind.CART)
    if webhook_settings is None or url is None:
        return CartResult(ok=False, reason=FailureReason.NOT_CONFIGURED)
    payload = cart_payload(
        action=action,
        store_id=store_id,
        session_id=session_id,
        sku=sku,
        name=name,
        quantity=quantity,
        price=price,
    )
    outcome = cart_call(
        tenant=tenant, webhook_settings=webhook_settings, url=url, payload=payload
    ).run()
    if outcome.failure is not None:
        return CartResult(ok=False, reason=outcome.failure)
    if outcome.parsed.ok:
        return CartResult(ok=True)
    return CartResult(ok=False, reason=outcome.parsed.reason or UNKNOWN_CART_REASON)


def cart_fetch(*, tenant: Tenant, store_id: str, session_id: str) -> CartLoadResult:
    """Load the shopper's existing cart through the cart GET webhook."""
    webhook_settings = _webhook_settings(tenant)
    url = configured_url(webhook_settings, WebhookKind.CART_GET)
    if webhook_settings is None or url is None:
        return CartLoadResult(failure=FailureReason.NOT_CONFIGURED)
    outcome = cart_get_call(
        tenant=tenant,
        webhook_settings=webhook_settings,
        url=url,
        store_id=store_id,
        session_id=session_id,
    ).run()
    if outcome.failure is not None:
        return CartLoadResult(failure=outcome.failure)
    parsed: ParsedList[CartGetItem] = outcome.parsed
    _log_item_problems(tenant=tenant, kind=WebhookKind.CART_GET, parsed=parsed)
    return CartLoadResult(
        lines=[
            CartLine(
                sku=item.sku,
                name=item.name,
                price=item.price,
                quantity=item.quantity,
                unit=item.unit,
                promo_price=item.promo_price,
                brand=item.brand,
            )
            for item in parsed.items
        ]
    )
