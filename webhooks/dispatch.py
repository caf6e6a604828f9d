"""Calls to the merchant's products, cart and cart GET webhooks.

One dispatcher serves all three kinds. Each call signs the exact bytes it sends, uses the
tenant's timeout, is retried once after ``WEBHOOK_RETRY_DELAY_SECONDS`` on a 5xx status or
a timeout, and treats any other non-200 status as a failure without retry. Each attempt
logs one ``webhooks.delivery`` line and writes one ``WebhookDelivery`` row.
"""

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from tenants.models import Tenant, WebhookSettings
from webhooks import egress
from webhooks.models import WebhookDelivery, WebhookKind
from webhooks.schemas import InvalidResponse, parse_cart, parse_cart_get, parse_products
from webhooks.signing import signature_headers

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY_HEADER = "X-VIZOCHOK-Idempotency-Key"
DELIVERY_ID_HEADER = "X-VIZOCHOK-Delivery-Id"
MAX_ATTEMPTS = 2


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


@dataclass(frozen=True)
class _CallOutcome:
    """The final attempt of one call: a parsed JSON payload, or why there is none."""

    payload: Any = None
    failure: FailureReason | None = None


def signing_secrets(*, webhook_settings: WebhookSettings) -> tuple[str, str | None]:
    """Return the current and, during a rotation, the next signing secret.

    A rotation whose overlap has ended is completed here, with a conditional update so that
    concurrent workers promote the same secret once.
    """
    promote_at = webhook_settings.next_secret_promote_at
    if webhook_settings.next_secret and promote_at is not None and promote_at <= timezone.now():
        WebhookSettings.objects.filter(
            pk=webhook_settings.pk, next_secret=webhook_settings.next_secret
        ).update(
            secret=F("next_secret"),
            next_secret="",
            next_secret_promote_at=None,
            secret_updated_at=timezone.now(),
        )
        webhook_settings.refresh_from_db()
        logger.info("webhooks.secret.promoted", extra={"tenant_id": webhook_settings.tenant_id})
    return webhook_settings.secret, webhook_settings.next_secret or None


@dataclass
class WebhookCall:
    """One logical webhook call of up to two attempts."""

    tenant: Tenant
    webhook_settings: WebhookSettings
    kind: WebhookKind
    method: str
    url: str
    body: bytes = b""
    params: dict[str, str] | None = None
    idempotency_key: str | None = None
    call_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def run(self) -> _CallOutcome:
        outcome = _CallOutcome(failure=FailureReason.ERROR)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            outcome, retryable = self._attempt(attempt)
            if not retryable or attempt == MAX_ATTEMPTS:
                break
            time.sleep(settings.WEBHOOK_RETRY_DELAY_SECONDS)
        return outcome

    def _headers(self, delivery_id: uuid.UUID) -> dict[str, str]:
        secret, next_secret = signing_secrets(webhook_settings=self.webhook_settings)
        headers = signature_headers(secret=secret, body=self.body, next_secret=next_secret)
        headers[DELIVERY_ID_HEADER] = str(delivery_id)
        if self.idempotency_key:
            headers[IDEMPOTENCY_KEY_HEADER] = self.idempotency_key
        return headers

    def _attempt(self, attempt: int) -> tuple[_CallOutcome, bool]:
        """Send one attempt; return its outcome and whether a retry may help."""
        delivery_id = uuid.uuid4()
        started = time.monotonic()
        status_code: int | None = None
        error_code: str
        response_bytes = 0
        retryable = False
        try:
            response = egress.send(
                self.method,
                self.url,
                policy=egress.policy_from_django_settings(),
                body=self.body if self.method != "GET" else None,
                headers=self._headers(delivery_id),
                params=self.params,
                timeout=float(self.webhook_settings.timeout_seconds),
            )
        except egress.EgressTimeout as error:
            result, record_outcome, error_code = (
                _CallOutcome(failure=FailureReason.TIMEOUT),
                WebhookDelivery.Outcome.TIMEOUT,
                error.code,
            )
            retryable = True
        except egress.UnsafeURLError as error:
            result, record_outcome, error_code = (
                _CallOutcome(failure=FailureReason.ERROR),
                WebhookDelivery.Outcome.BLOCKED,
                error.code,
            )
        except egress.EgressError as error:
            result, record_outcome, error_code = (
                _CallOutcome(failure=FailureReason.ERROR),
                WebhookDelivery.Outcome.CONNECTION_ERROR,
                error.code,
            )
        else:
            status_code = response.status_code
            response_bytes = len(response.body)
            result, record_outcome, error_code = self._interpret(response)
            retryable = 500 <= response.status_code <= 599
        self._record(
            attempt=attempt,
            delivery_id=delivery_id,
            duration_ms=int((time.monotonic() - started) * 1000),
            status_code=status_code,
            outcome=record_outcome,
            error_code=error_code,
            response_bytes=response_bytes,
        )
        return result, retryable

    def _interpret(
        self, response: egress.EgressResponse
    ) -> tuple[_CallOutcome, WebhookDelivery.Outcome, str]:
        if response.status_code != 200:
            return (
                _CallOutcome(failure=FailureReason.ERROR),
                WebhookDelivery.Outcome.HTTP_ERROR,
                f"http_{response.status_code}",
            )
        content_type = response.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return (
                _CallOutcome(failure=FailureReason.ERROR),
                WebhookDelivery.Outcome.INVALID_RESPONSE,
                "wrong_content_type",
            )
        try:
            payload = json.loads(response.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return (
                _CallOutcome(failure=FailureReason.ERROR),
                WebhookDelivery.Outcome.INVALID_RESPONSE,
                "invalid_json",
            )
        return _CallOutcome(payload=payload), WebhookDelivery.Outcome.SUCCESS, ""

    def _record(
        self,
        *,
        attempt: int,
        delivery_id: uuid.UUID,
        duration_ms: int,
        status_code: int | None,
        outcome: str,
        error_code: str,
        response_bytes: int,
    ) -> None:
        sanitized_url = egress.sanitize_url(self.url)
        log = logger.info if outcome == WebhookDelivery.Outcome.SUCCESS else logger.warning
        log(
            "webhooks.delivery",
            extra={
                "tenant_id": self.tenant.pk,
                "kind": self.kind,
                "status_code": status_code,
                "attempt": attempt,
                "duration_ms": duration_ms,
                "outcome": outcome,
                "error_code": error_code,
                "url": sanitized_url,
                "delivery_id": str(delivery_id),
            },
        )
        WebhookDelivery.objects.create(
            tenant=self.tenant,
            kind=self.kind,
            call_id=self.call_id,
            delivery_id=delivery_id,
            url=sanitized_url,
            attempt=attempt,
            status_code=status_code,
            outcome=outcome,
            error_code=error_code,
            duration_ms=duration_ms,
            request_bytes=len(self.body),
            response_bytes=response_bytes,
        )


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _webhook_settings(tenant: Tenant) -> WebhookSettings | None:
    return WebhookSettings.objects.filter(tenant=tenant).first()


def _log_dropped(*, tenant: Tenant, kind: WebhookKind, dropped: list[str]) -> None:
    for reason in dropped:
        logger.warning(
            "webhooks.response.item_dropped",
            extra={"tenant_id": tenant.pk, "kind": kind, "reason": reason},
        )


def _log_invalid(*, tenant: Tenant, kind: WebhookKind, error: InvalidResponse) -> None:
    logger.warning(
        "webhooks.response.invalid",
        extra={"tenant_id": tenant.pk, "kind": kind, "reason": str(error)},
    )


def products_fetch(*, tenant: Tenant, skus: list[str], store_id: str) -> ProductsResult:
    """Ask the products webhook for live prices and stock of ``skus``."""
    webhook_settings = _webhook_settings(tenant)
    if webhook_settings is None or not webhook_settings.products_url:
        return ProductsResult(failure=FailureReason.NOT_CONFIGURED)
    if not skus:
        return ProductsResult()
    outcome = WebhookCall(
        tenant=tenant,
        webhook_settings=webhook_settings,
        kind=WebhookKind.PRODUCTS,
        method="POST",
        url=webhook_settings.products_url,
        body=_encode({"skus": skus, "store_id": store_id}),
    ).run()
    if outcome.failure is not None:
        return ProductsResult(failure=outcome.failure)
    try:
        parsed = parse_products(outcome.payload, requested_skus=skus)
    except InvalidResponse as error:
        _log_invalid(tenant=tenant, kind=WebhookKind.PRODUCTS, error=error)
        return ProductsResult(failure=FailureReason.ERROR)
    _log_dropped(tenant=tenant, kind=WebhookKind.PRODUCTS, dropped=parsed.dropped)
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
    """Send one cart change to the cart webhook; a failed call yields webhook_timeout/error."""
    webhook_settings = _webhook_settings(tenant)
    if webhook_settings is None or not webhook_settings.cart_url:
        return CartResult(ok=False, reason=FailureReason.NOT_CONFIGURED)
    payload: dict[str, Any] = {"action": action, "store_id": store_id, "session_id": session_id}
    if action == CartAction.ADD:
        payload.update(sku=sku, name=name, quantity=quantity, price=price)
    elif action == CartAction.REMOVE:
        payload["sku"] = sku
    elif action == CartAction.UPDATE_QUANTITY:
        payload.update(sku=sku, quantity=quantity)
    outcome = WebhookCall(
        tenant=tenant,
        webhook_settings=webhook_settings,
        kind=WebhookKind.CART,
        method="POST",
        url=webhook_settings.cart_url,
        body=_encode(payload),
        idempotency_key=uuid.uuid4().hex,
    ).run()
    if outcome.failure is not None:
        return CartResult(ok=False, reason=outcome.failure)
    try:
        response = parse_cart(outcome.payload)
    except InvalidResponse as error:
        _log_invalid(tenant=tenant, kind=WebhookKind.CART, error=error)
        return CartResult(ok=False, reason=FailureReason.ERROR)
    if response.ok:
        return CartResult(ok=True)
    return CartResult(ok=False, reason=response.reason or "unknown")


def cart_fetch(*, tenant: Tenant, store_id: str, session_id: str) -> CartLoadResult:
    """Load the shopper's existing cart through the cart GET webhook."""
    webhook_settings = _webhook_settings(tenant)
    if webhook_settings is None or not webhook_settings.cart_get_url:
        return CartLoadResult(failure=FailureReason.NOT_CONFIGURED)
    outcome = WebhookCall(
        tenant=tenant,
        webhook_settings=webhook_settings,
        kind=WebhookKind.CART_GET,
        method="GET",
        url=webhook_settings.cart_get_url,
        params={"store_id": store_id, "session_id": session_id},
    ).run()
    if outcome.failure is not None:
        return CartLoadResult(failure=outcome.failure)
    try:
        parsed = parse_cart_get(outcome.payload)
    except InvalidResponse as error:
        _log_invalid(tenant=tenant, kind=WebhookKind.CART_GET, error=error)
        return CartLoadResult(failure=FailureReason.ERROR)
    _log_dropped(tenant=tenant, kind=WebhookKind.CART_GET, dropped=parsed.dropped)
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
