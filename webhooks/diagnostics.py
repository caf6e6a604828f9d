"""Test requests to a tenant's webhooks, for the admin "Send test" action and the test API.

A test request takes the production path: the same call builders, signing, URL checks and
egress client as ``webhooks.dispatch``. It is one attempt without retry, it bypasses the
circuit breaker (so a merchant can check a fix while the breaker is open), and its delivery
row is flagged ``is_test`` so that it never counts towards the breaker.

The samples are harmless. Products asks for up to three of the tenant's own active SKUs
(or ``FALLBACK_SAMPLE_SKUS`` when the catalog is empty). Cart sends ``clear`` for the
dedicated session ``vizochok-test``, which holds no shopper's cart. Cart GET loads that
same session.
"""

from dataclasses import dataclass
from typing import Any

from catalog.models import Product
from tenants.models import Tenant, WebhookSettings
from vizochok.exceptions import ClientError, ErrorCode
from webhooks.calls import CallOutcome, WebhookCall
from webhooks.dispatch import (
    CartAction,
    cart_call,
    cart_get_call,
    cart_payload,
    configured_url,
    products_call,
)
from webhooks.models import WebhookKind

TEST_STORE_ID = "vizochok-test"
TEST_SESSION_ID = "vizochok-test"
FALLBACK_SAMPLE_SKUS = ("vizochok-test-1", "vizochok-test-2")
SAMPLE_SKU_COUNT = 3


class WebhookNotConfigured(ClientError):
    code = ErrorCode.WEBHOOK_NOT_CONFIGURED
    default_detail = "The webhook is not configured."


@dataclass(frozen=True)
class WebhookTestResult:
    """Outcome of one test request.

    ``ok`` is true when the request got a 200 response that matches the contract; the
    merchant's own answer (for example ``{"ok": false, ...}`` from the cart) is in
    ``response``. ``error`` describes a failure, starting with its code.
    """

    kind: WebhookKind
    ok: bool
    status_code: int | None
    latency_ms: int | None
    response: dict[str, Any] | None = None
    error: str | None = None
    error_code: str | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": str(self.kind),
            "ok": self.ok,
            "status_code": self.status_code,
            "latency_ms": self.latency_ms,
        }
        if self.ok:
            body["response"] = self.response
        else:
            body["error"] = self.error
            body["error_code"] = self.error_code
        return body


def sample_skus(*, tenant: Tenant) -> list[str]:
    """Return up to three of the tenant's active SKUs, or the fallback sample SKUs."""
    skus = list(
        Product.objects.filter(tenant=tenant, is_active=True)
        .order_by("sku")
        .values_list("sku", flat=True)[:SAMPLE_SKU_COUNT]
    )
    return skus or list(FALLBACK_SAMPLE_SKUS)


def webhook_test_call(
    *,
    tenant: Tenant,
    kind: WebhookKind,
    store_id: str = TEST_STORE_ID,
    session_id: str = TEST_SESSION_ID,
    skus: list[str] | None = None,
) -> WebhookCall:
    """Build the test call for ``kind``; raises ``WebhookNotConfigured`` without a URL."""
    webhook_settings = WebhookSettings.objects.filter(tenant=tenant).first()
    url = configured_url(webhook_settings, kind)
    if webhook_settings is None or url is None:
        raise WebhookNotConfigured(
            f"The {kind.label} webhook URL or the signing secret is not set; configure it "
            "with PATCH /api/v1/admin/webhooks first."
        )
    if kind == WebhookKind.PRODUCTS:
        return products_call(
            tenant=tenant,
            webhook_settings=webhook_settings,
            url=url,
            skus=skus or sample_skus(tenant=tenant),
            store_id=store_id,
            is_test=True,
            max_attempts=1,
        )
    if kind == WebhookKind.CART:
        return cart_call(
            tenant=tenant,
            webhook_settings=webhook_settings,
            url=url,
            payload=cart_payload(action=CartAction.CLEAR, store_id=store_id, session_id=session_id),
            is_test=True,
            max_attempts=1,
        )
    return cart_get_call(
        tenant=tenant,
        webhook_settings=webhook_settings,
        url=url,
        store_id=store_id,
        session_id=session_id,
        is_test=True,
        max_attempts=1,
    )


def webhook_test_send(
    *, tenant: Tenant, kind: WebhookKind, store_id: str = TEST_STORE_ID
) -> WebhookTestResult:
    """Send one signed sample request to the tenant's ``kind`` webhook and report on it."""
    outcome = webhook_test_call(tenant=tenant, kind=kind, store_id=store_id).run()
    if not outcome.ok:
        return WebhookTestResult(
            kind=kind,
            ok=False,
            status_code=outcome.status_code,
            latency_ms=outcome.duration_ms,
            error=f"{outcome.error_code}: {outcome.error_message}",
            error_code=outcome.error_code,
        )
    return WebhookTestResult(
        kind=kind,
        ok=True,
        status_code=outcome.status_code,
        latency_ms=outcome.duration_ms,
        response=parsed_response(kind, outcome),
    )


def parsed_response(kind: WebhookKind, outcome: CallOutcome) -> dict[str, Any]:
    """Render a successful outcome's validated response as JSON-compatible data."""
    parsed = outcome.parsed
    if kind == WebhookKind.CART:
        return parsed.model_dump(exclude_none=True)
    key = "products" if kind == WebhookKind.PRODUCTS else "items"
    return {
        key: [item.model_dump(exclude_none=True) for item in parsed.items],
        "dropped": parsed.dropped,
    }
