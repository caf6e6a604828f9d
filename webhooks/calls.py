"""One logical webhook call: signing, retry, circuit breaker, validation and the delivery log.

Each call asks the circuit breaker first. A call that may go out signs the exact bytes it
sends, uses the tenant's timeout, and is retried once after ``WEBHOOK_RETRY_DELAY_SECONDS``
on a 5xx status or a timeout. Any other non-200 status, a content type other than
``application/json``, invalid JSON or a response that fails its schema is a failure without
retry. Each attempt logs one ``webhooks.delivery`` line and writes one ``WebhookDelivery``
row; a call the breaker stopped writes one ``circuit_open`` row and sends nothing.
"""

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from tenants.encryption import secret_is_set, stored_value
from tenants.models import Tenant, WebhookSettings
from vizochok.exceptions import ErrorCode, SecretUndecryptable
from webhooks import egress
from webhooks.breaker import Admission, BreakerTicket, breaker_admit, breaker_record
from webhooks.models import WebhookDelivery, WebhookKind
from webhooks.schemas import InvalidResponse
from webhooks.signing import signature_headers

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY_HEADER = "X-VIZOCHOK-Idempotency-Key"
DELIVERY_ID_HEADER = "X-VIZOCHOK-Delivery-Id"
MAX_ATTEMPTS = 2
# Delivery log code of a call that was not sent because no configured key decrypts the
# tenant's signing secret.
SECRET_UNDECRYPTABLE_CODE = str(ErrorCode.SECRET_UNDECRYPTABLE)
# Characters of a repeated JSON member name quoted in the error message.
MAX_QUOTED_NAME_LENGTH = 100

# Parses the decoded JSON of a 200 response; raises InvalidResponse when it breaks the
# contract as a whole.
Validator = Callable[[Any], Any]


class FailureReason(StrEnum):
    """Reasons this service reports when a webhook call itself fails.

    ``circuit_open`` means no request was sent because the merchant's webhook failed
    repeatedly; the assistant should say that prices, stock or the cart are temporarily
    unavailable instead of guessing.
    """

    TIMEOUT = "webhook_timeout"
    ERROR = "webhook_error"
    NOT_CONFIGURED = "webhook_not_configured"
    CIRCUIT_OPEN = "circuit_open"


@dataclass(frozen=True)
class CallOutcome:
    """The result of a call's final attempt.

    ``parsed`` is the validator's result when the call succeeded. ``response`` is the raw
    HTTP response of the final attempt when one arrived, for diagnostics. ``error_code``
    and ``error_message`` describe a failure in the terms of the delivery log.
    """

    parsed: Any = None
    failure: FailureReason | None = None
    status_code: int | None = None
    error_code: str = ""
    error_message: str = ""
    duration_ms: int | None = None
    response: egress.EgressResponse | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class _Attempt:
    outcome: CallOutcome
    record_outcome: WebhookDelivery.Outcome
    retryable: bool = False
    response_bytes: int = 0


def signing_secrets(*, webhook_settings: WebhookSettings) -> tuple[str, str | None]:
    """Return the current and, during a rotation, the next signing secret.

    A rotation whose overlap has ended is completed here, with a conditional update so that
    concurrent workers promote the same secret once. Raises ``SecretUndecryptable`` when
    no configured key decrypts one of the secrets.
    """
    promote_at = webhook_settings.next_secret_promote_at
    has_next_secret = secret_is_set(webhook_settings, "next_secret")
    if has_next_secret and promote_at is not None and promote_at <= timezone.now():
        # The stored (encrypted) value is compared, so the update matches only the row
        # as it was read.
        promoted = WebhookSettings.objects.filter(
            pk=webhook_settings.pk, next_secret=stored_value(webhook_settings, "next_secret")
        ).update(
            secret=F("next_secret"),
            next_secret="",
            next_secret_promote_at=None,
            secret_updated_at=timezone.now(),
        )
        webhook_settings.refresh_from_db()
        # No row matches when another worker promoted first or the row changed since it was
        # read (a rotation, a re-encryption). Nor does it match a next secret assigned in
        # plain text on this instance, which the filter encrypts anew. The reload then
        # brings the row's secrets, and a later call promotes them.
        if promoted:
            logger.info("webhooks.secret.promoted", extra={"tenant_id": webhook_settings.tenant_id})
    return webhook_settings.secret, webhook_settings.next_secret or None


def _accept_any(payload: Any) -> Any:
    return payload


@dataclass
class WebhookCall:
    """One logical webhook call of up to ``max_attempts`` attempts.

    ``is_test`` marks diagnostic requests (admin test, test API, check_merchant). They bypass
    the circuit breaker, never count towards it, and are flagged in the delivery log.
    """

    tenant: Tenant
    webhook_settings: WebhookSettings
    kind: WebhookKind
    method: str
    url: str
    validate: Validator = _accept_any
    body: bytes = b""
    params: dict[str, str] | None = None
    idempotency_key: str | None = None
    max_attempts: int = MAX_ATTEMPTS
    is_test: bool = False
    call_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def run(self) -> CallOutcome:
        try:
            signing_secrets(webhook_settings=self.webhook_settings)
        except SecretUndecryptable as error:
            return self._unsigned(attempt=1, delivery_id=uuid.uuid4(), error=error).outcome
        ticket = self._admit()
        if ticket is not None and ticket.rejected:
            return self._reject(ticket)
        max_attempts = self.max_attempts
        if ticket is not None and ticket.admission == Admission.PROBE:
            # One attempt, so a merchant that is still down gets one request per cool-down.
            max_attempts = 1
        result = self._attempts(max_attempts)
        if ticket is not None and result.record_outcome != WebhookDelivery.Outcome.BLOCKED:
            breaker_record(
                ticket=ticket, success=result.record_outcome == WebhookDelivery.Outcome.SUCCESS
            )
        return result.outcome

    def _admit(self) -> BreakerTicket | None:
        if self.is_test:
            return None
        return breaker_admit(
            tenant_id=self.tenant.pk,
            kind=self.kind,
            timeout_seconds=float(self.webhook_settings.timeout_seconds),
        )

    def _attempts(self, max_attempts: int) -> _Attempt:
        for attempt in range(1, max_attempts + 1):
            result = self._attempt(attempt)
            if not result.retryable or attempt == max_attempts:
                return result
            logger.info(
                "webhooks.delivery.retrying",
                extra={
                    "tenant_id": self.tenant.pk,
                    "kind": str(self.kind),
                    "call_id": str(self.call_id),
                    "delay_seconds": settings.WEBHOOK_RETRY_DELAY_SECONDS,
                },
            )
            time.sleep(settings.WEBHOOK_RETRY_DELAY_SECONDS)
            self._reload_secrets()
        raise AssertionError("max_attempts must be at least 1")

    def _reload_secrets(self) -> None:
        """Read the signing secrets again, so that a retry is signed with the current ones.

        A secret replaced at once, after a leak, must sign every request sent after the
        change, and the merchant may already reject the old one. A row deleted in the
        meantime leaves the secrets as they were.
        """
        fresh = WebhookSettings.objects.filter(pk=self.webhook_settings.pk).first()
        if fresh is not None:
            self.webhook_settings.secret = stored_value(fresh, "secret")
            self.webhook_settings.next_secret = stored_value(fresh, "next_secret")
            self.webhook_settings.next_secret_promote_at = fresh.next_secret_promote_at

    def _reject(self, ticket: BreakerTicket) -> CallOutcome:
        retry_at = f" until {ticket.retry_at:%H:%M:%S} UTC" if ticket.retry_at else ""
        message = (
            f"the {self.kind} webhook failed repeatedly, so the circuit breaker holds "
            f"requests{retry_at}; no request was sent"
        )
        self._record(
            attempt=1,
            delivery_id=uuid.uuid4(),
            duration_ms=0,
            status_code=None,
            outcome=WebhookDelivery.Outcome.CIRCUIT_OPEN,
            error_code=FailureReason.CIRCUIT_OPEN,
            response_bytes=0,
        )
        return CallOutcome(
            failure=FailureReason.CIRCUIT_OPEN,
            error_code=FailureReason.CIRCUIT_OPEN,
            error_message=message,
            duration_ms=0,
        )

    def _unsigned(
        self, *, attempt: int, delivery_id: uuid.UUID, error: SecretUndecryptable
    ) -> _Attempt:
        """Record an attempt that was not sent because no key decrypts a signing secret.

        The deployment's keys are at fault, not the merchant, so nothing is retried. Before
        the first attempt the circuit breaker is not asked either.
        """
        self._record(
            attempt=attempt,
            delivery_id=delivery_id,
            duration_ms=0,
            status_code=None,
            outcome=WebhookDelivery.Outcome.SECRET_UNDECRYPTABLE,
            error_code=SECRET_UNDECRYPTABLE_CODE,
            response_bytes=0,
        )
        return _Attempt(
            outcome=CallOutcome(
                failure=FailureReason.ERROR,
                error_code=SECRET_UNDECRYPTABLE_CODE,
                error_message=f"{error.detail} No request was sent.",
                duration_ms=0,
                attempts=attempt,
            ),
            record_outcome=WebhookDelivery.Outcome.SECRET_UNDECRYPTABLE,
        )

    def _headers(self, delivery_id: uuid.UUID) -> dict[str, str]:
        secret, next_secret = signing_secrets(webhook_settings=self.webhook_settings)
        headers = signature_headers(secret=secret, body=self.body, next_secret=next_secret)
        headers[DELIVERY_ID_HEADER] = str(delivery_id)
        if self.idempotency_key:
            headers[IDEMPOTENCY_KEY_HEADER] = self.idempotency_key
        return headers

    def _attempt(self, attempt: int) -> _Attempt:
        """Send one attempt, record it, and return its outcome."""
        delivery_id = uuid.uuid4()
        try:
            headers = self._headers(delivery_id)
        except SecretUndecryptable as error:
            # Only a retry gets here: the secrets were re-read after the first attempt.
            return self._unsigned(attempt=attempt, delivery_id=delivery_id, error=error)
        started = time.monotonic()
        result = self._exchange(headers)
        duration_ms = int((time.monotonic() - started) * 1000)
        outcome = result.outcome
        self._record(
            attempt=attempt,
            delivery_id=delivery_id,
            duration_ms=duration_ms,
            status_code=outcome.status_code,
            outcome=result.record_outcome,
            error_code=outcome.error_code,
            response_bytes=result.response_bytes,
        )
        return dataclasses.replace(
            result,
            outcome=dataclasses.replace(outcome, duration_ms=duration_ms, attempts=attempt),
        )

    def _exchange(self, headers: dict[str, str]) -> _Attempt:
        try:
            response = egress.send(
                self.method,
                self.url,
                policy=egress.policy_from_django_settings(),
                body=self.body if self.method != "GET" else None,
                headers=headers,
                params=self.params,
                timeout=float(self.webhook_settings.timeout_seconds),
            )
        except egress.EgressTimeout as error:
            return _failed(
                FailureReason.TIMEOUT, WebhookDelivery.Outcome.TIMEOUT, error, retryable=True
            )
        except egress.UnsafeURLError as error:
            return _failed(FailureReason.ERROR, WebhookDelivery.Outcome.BLOCKED, error)
        except egress.ResponseTooLarge as error:
            if error.status_code != 200:
                # Only a 200 body is used, so an error page's size does not matter. A large
                # 503 page is a 503, and is retried like one.
                return _http_error(error.status_code, response_bytes=error.bytes_read)
            return _failed(
                FailureReason.ERROR,
                WebhookDelivery.Outcome.INVALID_RESPONSE,
                error,
                status_code=error.status_code,
                response_bytes=error.bytes_read,
            )
        except egress.EgressError as error:
            return _failed(FailureReason.ERROR, WebhookDelivery.Outcome.CONNECTION_ERROR, error)
        return self._interpret(response)

    def _interpret(self, response: egress.EgressResponse) -> _Attempt:
        def invalid(
            record_outcome: WebhookDelivery.Outcome, code: str, message: str, *, retryable: bool
        ) -> _Attempt:
            return _Attempt(
                outcome=CallOutcome(
                    failure=FailureReason.ERROR,
                    status_code=response.status_code,
                    error_code=code,
                    error_message=message,
                    response=response,
                ),
                record_outcome=record_outcome,
                retryable=retryable,
                response_bytes=len(response.body),
            )

        status = response.status_code
        if status != 200:
            return _http_error(status, response=response, response_bytes=len(response.body))
        content_type = response.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return invalid(
                WebhookDelivery.Outcome.INVALID_RESPONSE,
                "wrong_content_type",
                f"Content-Type is {content_type or 'missing'!r}, expected 'application/json'",
                retryable=False,
            )
        try:
            payload = response_json(response.body)
        except ValueError as error:
            return invalid(
                WebhookDelivery.Outcome.INVALID_RESPONSE,
                "invalid_json",
                f"the body is not valid UTF-8 JSON: {error}",
                retryable=False,
            )
        try:
            parsed = self.validate(payload)
        except InvalidResponse as error:
            return invalid(
                WebhookDelivery.Outcome.INVALID_RESPONSE,
                "invalid_schema",
                f"the response does not match the {self.kind} contract: {error}",
                retryable=False,
            )
        return _Attempt(
            outcome=CallOutcome(parsed=parsed, status_code=status, response=response),
            record_outcome=WebhookDelivery.Outcome.SUCCESS,
            response_bytes=len(response.body),
        )

    def _record(
        self,
        *,
        attempt: int,
        delivery_id: uuid.UUID,
        duration_ms: int,
        status_code: int | None,
        outcome: WebhookDelivery.Outcome,
        error_code: str,
        response_bytes: int,
    ) -> None:
        sanitized_url = egress.sanitize_url(self.url)
        log = logger.info if outcome == WebhookDelivery.Outcome.SUCCESS else logger.warning
        log(
            "webhooks.delivery",
            extra={
                "tenant_id": self.tenant.pk,
                "kind": str(self.kind),
                "status_code": status_code,
                "attempt": attempt,
                "duration_ms": duration_ms,
                "outcome": str(outcome),
                "error_code": str(error_code),
                "url": sanitized_url,
                "delivery_id": str(delivery_id),
                "is_test": self.is_test,
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
            is_test=self.is_test,
        )


def _http_error(
    status: int, *, response: egress.EgressResponse | None = None, response_bytes: int
) -> _Attempt:
    """Build the failed attempt of a response whose status is not 200. A 5xx is retryable."""
    message = f"the merchant responded with HTTP {status}, but only 200 is a success"
    if 300 <= status <= 399:
        message += ", and redirects are never followed"
    return _Attempt(
        outcome=CallOutcome(
            failure=FailureReason.ERROR,
            status_code=status,
            error_code=f"http_{status}",
            error_message=message,
            response=response,
        ),
        record_outcome=WebhookDelivery.Outcome.HTTP_ERROR,
        retryable=500 <= status <= 599,
        response_bytes=response_bytes,
    )


def _failed(
    failure: FailureReason,
    record_outcome: WebhookDelivery.Outcome,
    error: egress.EgressError,
    *,
    retryable: bool = False,
    status_code: int | None = None,
    response_bytes: int = 0,
) -> _Attempt:
    return _Attempt(
        outcome=CallOutcome(
            failure=failure,
            status_code=status_code,
            error_code=error.code,
            error_message=error.message,
        ),
        record_outcome=record_outcome,
        retryable=retryable,
        response_bytes=response_bytes,
    )


def reject_json_constant(name: str) -> Any:
    """Reject NaN, Infinity and -Infinity, which Python's json module accepts but JSON does not."""
    raise ValueError(f"{name} is not valid JSON")


def object_with_unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a JSON object, raising ``ValueError`` when a member name appears twice.

    RFC 8259 calls the behaviour of parsers on repeated names unpredictable. Python's json
    keeps the last value while other parsers may keep the first, so ``{"ok": false, "ok":
    true}`` could read as a rejection in the merchant's logs and as a success here.
    """
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            raise ValueError(
                f"the name {name[:MAX_QUOTED_NAME_LENGTH]!r} appears more than once in one object"
            )
        members[name] = value
    return members


def response_json(body: bytes) -> Any:
    """Parse a merchant's response body as strict UTF-8 JSON; raise ``ValueError`` if it is not.

    ``json.loads`` would also accept bytes in UTF-16 or UTF-32, and encoded surrogates, so
    the body is decoded first. A leading byte order mark is allowed, as RFC 8259 permits.
    Python's parser raises ``RecursionError`` near the interpreter's recursion limit (1,000
    levels by default), and a body within the size limit can nest far deeper than that. An
    object with a repeated member name is rejected too (``object_with_unique_names``).
    """
    text = body.decode("utf-8-sig")
    try:
        return json.loads(
            text, parse_constant=reject_json_constant, object_pairs_hook=object_with_unique_names
        )
    except RecursionError:
        raise ValueError("the JSON is nested too deeply to parse") from None
