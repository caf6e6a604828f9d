"""Contract checks of a merchant's webhook endpoints, for the ``check_merchant`` command.

Each endpoint gets the signed sample request of ``webhooks.diagnostics`` (the production
path, recorded as a test delivery) and a second request signed with a wrong secret. The
raw response is then checked against the contract field by field, and every problem found
is reported, where the dispatcher would only drop the item, leave out a promotion
that is not a discount or fail the call.
"""

import json
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

from tenants.models import Tenant
from webhooks import egress
from webhooks.calls import CallOutcome, WebhookCall, response_json
from webhooks.diagnostics import (
    TEST_SESSION_ID,
    TEST_STORE_ID,
    WebhookNotConfigured,
    webhook_test_call,
)
from webhooks.models import WebhookKind
from webhooks.schemas import MAX_AMOUNT, promo_is_discount
from webhooks.signing import signature_headers

# Responses slower than this share of the tenant's timeout leave no room for the retry and
# time out under load.
DEFAULT_SLOW_FRACTION = 0.5


@dataclass(frozen=True)
class Violation:
    code: str
    message: str


@dataclass
class EndpointReport:
    """Result of one endpoint's sample request, with every contract violation found."""

    kind: WebhookKind
    url: str = ""
    status_code: int | None = None
    latency_ms: int | None = None
    timeout_seconds: int | None = None
    skipped: bool = False
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def conforms(self) -> bool:
        return not self.violations

    def add(self, code: str, message: str) -> None:
        self.violations.append(Violation(code, message))


def merchant_check(
    *,
    tenant: Tenant,
    kinds: list[WebhookKind],
    skus: list[str] | None = None,
    store_id: str = TEST_STORE_ID,
    session_id: str = TEST_SESSION_ID,
    slow_fraction: float = DEFAULT_SLOW_FRACTION,
) -> list[EndpointReport]:
    """Check each of ``kinds`` and return one report per endpoint.

    An unconfigured products webhook is a violation, because the assistant cannot show
    products without it. An unconfigured cart or cart GET webhook is skipped.
    """
    reports = []
    for kind in kinds:
        report = EndpointReport(kind=kind)
        try:
            call = webhook_test_call(
                tenant=tenant, kind=kind, store_id=store_id, session_id=session_id, skus=skus
            )
        except WebhookNotConfigured as error:
            if kind == WebhookKind.PRODUCTS:
                report.add("not_configured", error.detail)
            else:
                report.skipped = True
                report.notes.append(error.detail)
            reports.append(report)
            continue
        _check_endpoint(call, report, slow_fraction=slow_fraction)
        reports.append(report)
    return reports


def _check_endpoint(call: WebhookCall, report: EndpointReport, *, slow_fraction: float) -> None:
    report.url = egress.sanitize_url(call.url)
    report.timeout_seconds = call.webhook_settings.timeout_seconds
    outcome = call.run()
    report.status_code = outcome.status_code
    report.latency_ms = outcome.duration_ms
    _check_transport(outcome, report)
    payload = _decoded_json(outcome, report)
    if payload is not None:
        _CONTENT_CHECKS[call.kind](payload, call, report)
    _check_latency(outcome, report, slow_fraction=slow_fraction)
    if outcome.response is not None:
        _check_rejects_wrong_signature(call, report)


def _check_transport(outcome: CallOutcome, report: EndpointReport) -> None:
    response = outcome.response
    # The response of an error status whose body was over the size limit is not kept, but
    # its status is.
    status_code = response.status_code if response is not None else outcome.status_code
    if status_code is not None and status_code != 200:
        report.add("http_status", f"HTTP {status_code}; the contract expects 200")
    if response is None:
        if status_code is None or status_code == 200:
            report.add(outcome.error_code or "request_failed", outcome.error_message)
        return
    content_type = response.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        report.add(
            "wrong_content_type",
            f"Content-Type is {content_type or 'missing'!r}, expected 'application/json'",
        )


def _decoded_json(outcome: CallOutcome, report: EndpointReport) -> Any:
    response = outcome.response
    if response is None or response.status_code != 200:
        return None
    try:
        return response_json(response.body)
    except ValueError as error:
        report.add("invalid_json", f"the body is not valid UTF-8 JSON: {error}")
        return None


def _check_latency(outcome: CallOutcome, report: EndpointReport, *, slow_fraction: float) -> None:
    if outcome.response is None or outcome.duration_ms is None or not report.timeout_seconds:
        return
    limit_ms = int(report.timeout_seconds * 1000 * slow_fraction)
    if outcome.duration_ms > limit_ms:
        report.add(
            "slow_response",
            f"answered in {outcome.duration_ms} ms; the timeout is {report.timeout_seconds} s, "
            f"so answers over {limit_ms} ms risk timeouts under load",
        )


def _check_rejects_wrong_signature(call: WebhookCall, report: EndpointReport) -> None:
    """Send the same request signed with a random secret. A 2xx response is a violation."""
    headers = signature_headers(secret=secrets.token_urlsafe(32), body=call.body)
    try:
        response = egress.send(
            call.method,
            call.url,
            policy=egress.policy_from_django_settings(),
            body=call.body if call.method != "GET" else None,
            headers=headers,
            params=call.params,
            timeout=float(call.webhook_settings.timeout_seconds),
        )
    except egress.EgressError as error:
        report.notes.append(f"the wrong-signature request failed: {error.code}")
        return
    if 200 <= response.status_code <= 299:
        report.add(
            "accepts_invalid_signature",
            f"a request signed with a wrong secret got HTTP {response.status_code}; reject it "
            "with 401 after checking X-VIZOCHOK-Signature",
        )


def _number_problem(value: Any, *, positive: bool = False) -> tuple[str, str] | None:
    """Return (code, text) when ``value`` is not a usable price or quantity."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "wrong_type", f"must be a number, got {type(value).__name__}"
    # Compared without converting to float, which fails for integers such as 10**400.
    if isinstance(value, float) and not math.isfinite(value):
        return "invalid_number", "must be finite"
    if value < 0 or (positive and value == 0):
        return "invalid_number", "must be greater than 0" if positive else "must not be negative"
    if value > MAX_AMOUNT:
        return "invalid_number", f"must be at most {MAX_AMOUNT}"
    return None


def _check_fields(
    item: dict[str, Any],
    where: str,
    report: EndpointReport,
    *,
    required: dict[str, str],
    optional: dict[str, str],
) -> None:
    """Check field presence and types; a type is "str", "bool", "number" or "quantity"."""
    for name in required:
        if name not in item:
            report.add("missing_field", f"{where} has no {name!r}")
    for name, kind in {**required, **optional}.items():
        if name not in item or (name in optional and item[name] is None):
            continue
        value = item[name]
        if kind == "str" and not isinstance(value, str):
            report.add("wrong_type", f"{where}.{name} must be a string, got {value!r}")
        elif kind == "bool" and not isinstance(value, bool):
            report.add("wrong_type", f"{where}.{name} must be true or false, got {value!r}")
        elif kind in ("number", "quantity"):
            problem = _number_problem(value, positive=kind == "quantity")
            if problem is not None:
                report.add(problem[0], f"{where}.{name} {problem[1]}")


def _check_products(payload: Any, call: WebhookCall, report: EndpointReport) -> None:
    items = _array_of(payload, "products", report)
    if items is None:
        return
    requested = set(json.loads(call.body)["skus"])
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"products[{index}]"
        if not isinstance(item, dict):
            report.add("invalid_item", f"{where} is not an object")
            continue
        _check_fields(
            item,
            where,
            report,
            required={"sku": "str", "price": "number", "in_stock": "bool"},
            optional={"promo_price": "number", "promo_label": "str"},
        )
        _check_promo_price(item, where, report)
        sku = item.get("sku")
        if not isinstance(sku, str):
            continue
        if sku not in requested:
            report.add("unrequested_sku", f"{where}.sku {sku!r} was not requested")
        elif sku in seen:
            report.add("duplicate_sku", f"{where}.sku {sku!r} appears more than once")
        seen.add(sku)
    report.notes.append(f"{len(seen & requested)} of {len(requested)} requested SKUs returned")


def _check_promo_price(item: dict[str, Any], where: str, report: EndpointReport) -> None:
    # Typed Any because _number_problem below lets only numbers through.
    price: Any = item.get("price")
    promo_price: Any = item.get("promo_price")
    if (
        _number_problem(price) is None
        and promo_price is not None
        and _number_problem(promo_price) is None
        and not promo_is_discount(price=float(price), promo_price=float(promo_price))
    ):
        # The dispatcher keeps such an item at its regular price, but the merchant sent a
        # promotion that is not one, so it stays a violation.
        report.add(
            "promo_not_below_price",
            f"{where}.promo_price {promo_price} is not below price {price}"
            " once both are rounded to cents, so the assistant shows the regular price"
            " and leaves out the promotion",
        )


def _check_cart(payload: Any, call: WebhookCall, report: EndpointReport) -> None:
    if not isinstance(payload, dict):
        report.add("invalid_shape", 'expected a JSON object such as {"ok": true}')
        return
    _check_fields(payload, "response", report, required={"ok": "bool"}, optional={"reason": "str"})
    reason = payload.get("reason")
    if payload.get("ok") is False and not (isinstance(reason, str) and reason):
        report.add(
            "cart_reason_missing",
            '{"ok": false} must carry a "reason", such as "out_of_stock", for the assistant',
        )


def _check_cart_get(payload: Any, call: WebhookCall, report: EndpointReport) -> None:
    items = _array_of(payload, "items", report)
    if items is None:
        return
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            report.add("invalid_item", f"{where} is not an object")
            continue
        _check_fields(
            item,
            where,
            report,
            required={"sku": "str", "name": "str", "price": "number", "quantity": "quantity"},
            optional={"unit": "str", "promo_price": "number", "brand": "str"},
        )
        _check_promo_price(item, where, report)
        sku = item.get("sku")
        if not isinstance(sku, str):
            continue
        # Vizochok strips cart GET SKUs, so " a " and "a" name the same line.
        stripped = sku.strip()
        if stripped in seen:
            if stripped == sku:
                message = f"{where}.sku {sku!r} appears more than once"
            else:
                message = f"{where}.sku {sku!r}, stripped to {stripped!r}, appears more than once"
            report.add("duplicate_sku", message)
        seen.add(stripped)
    report.notes.append(f"{len(items)} cart line(s) returned")


def _array_of(payload: Any, key: str, report: EndpointReport) -> list[Any] | None:
    if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
        report.add("invalid_shape", f"expected a JSON object with a {key!r} array")
        return None
    items: list[Any] = payload[key]
    return items


_CONTENT_CHECKS = {
    WebhookKind.PRODUCTS: _check_products,
    WebhookKind.CART: _check_cart,
    WebhookKind.CART_GET: _check_cart_get,
}
