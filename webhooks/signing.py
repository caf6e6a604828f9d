"""HMAC-SHA256 signatures on webhook requests, for senders and for merchants' receivers.

Every webhook request carries ``X-VIZOCHOK-Timestamp: <t>`` (Unix seconds) and
``X-VIZOCHOK-Signature: sha256=<hex>``, where ``<hex>`` is the lower-case hex HMAC-SHA256 of
the bytes ``b"<t>." + raw_body`` keyed with the tenant's webhook secret encoded as UTF-8.
GET requests sign the empty body. During secret rotation ``X-VIZOCHOK-Signature-Next``
carries the same construction keyed with the next secret, so a receiver that already has
the new secret verifies that header instead.

Receivers must verify the raw request bytes: JSON that was parsed and serialized again
usually differs in spacing or key order, and its signature then fails.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from enum import StrEnum

SIGNATURE_HEADER = "X-VIZOCHOK-Signature"
NEXT_SIGNATURE_HEADER = "X-VIZOCHOK-Signature-Next"
TIMESTAMP_HEADER = "X-VIZOCHOK-Timestamp"
CONTENT_TYPE_HEADER = "Content-Type"
JSON_CONTENT_TYPE = "application/json"

SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE_SECONDS = 300

_SIGNATURE_PATTERN = re.compile(r"sha256=[0-9a-f]{64}")
# Twelve digits cover Unix time until the year 33658 and keep int() cheap on hostile input.
_TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")


class SignatureFailureReason(StrEnum):
    """Reason a signature check failed, listed in the order the checks run."""

    MISSING_SIGNATURE = "missing_signature"
    MISSING_TIMESTAMP = "missing_timestamp"
    MALFORMED_SIGNATURE = "malformed_signature"
    MALFORMED_TIMESTAMP = "malformed_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    INVALID_SIGNATURE = "invalid_signature"


class SignatureError(ValueError):
    """A webhook signature that failed verification, with ``reason`` naming the failed check."""

    def __init__(self, reason: SignatureFailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def compute_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """Return the signature header value ``sha256=<hex>`` for a timestamp and raw body."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise TypeError(f"timestamp must be an int of Unix seconds, got {timestamp!r}")
    _require_secret(secret)
    message = f"{timestamp}.".encode("ascii") + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signature_headers(
    *,
    secret: str,
    body: bytes,
    timestamp: int | None = None,
    next_secret: str | None = None,
) -> dict[str, str]:
    """Return the signing headers for a request whose body is exactly ``body``.

    ``timestamp`` defaults to the current Unix time. ``next_secret`` adds the rotation header
    signed with the next secret. Send ``body`` unchanged, because any re-encoding breaks the
    signature. GET requests pass ``b""``.
    """
    if timestamp is None:
        timestamp = int(time.time())
    headers = {
        CONTENT_TYPE_HEADER: JSON_CONTENT_TYPE,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: compute_signature(secret=secret, timestamp=timestamp, body=body),
    }
    if next_secret is not None:
        headers[NEXT_SIGNATURE_HEADER] = compute_signature(
            secret=next_secret, timestamp=timestamp, body=body
        )
    return headers


def check_signature(
    *,
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Verify a signature and its timestamp header against the raw request body.

    ``signature`` and ``timestamp`` are the header values as received, None when a header
    is missing. The timestamp window is symmetric: ``abs(now - timestamp)`` may be at most
    ``tolerance_seconds``. Raises ``SignatureError`` with a ``reason`` on any failure, and
    ``ValueError`` when ``secret`` is empty, since that is a configuration error.
    """
    _require_secret(secret)
    if not signature:
        raise SignatureError(
            SignatureFailureReason.MISSING_SIGNATURE, f"{SIGNATURE_HEADER} header is missing"
        )
    if not timestamp:
        raise SignatureError(
            SignatureFailureReason.MISSING_TIMESTAMP, f"{TIMESTAMP_HEADER} header is missing"
        )
    if not _SIGNATURE_PATTERN.fullmatch(signature):
        raise SignatureError(
            SignatureFailureReason.MALFORMED_SIGNATURE,
            f"{SIGNATURE_HEADER} must be 'sha256=' followed by 64 lower-case hex digits",
        )
    if not _TIMESTAMP_PATTERN.fullmatch(timestamp):
        raise SignatureError(
            SignatureFailureReason.MALFORMED_TIMESTAMP,
            f"{TIMESTAMP_HEADER} must be an integer number of Unix seconds",
        )

    signed_at = int(timestamp)
    current_time = time.time() if now is None else now
    if abs(current_time - signed_at) > tolerance_seconds:
        raise SignatureError(
            SignatureFailureReason.STALE_TIMESTAMP,
            f"{TIMESTAMP_HEADER} is more than {tolerance_seconds} s away from the current "
            "time; check the receiver's clock",
        )

    expected = compute_signature(secret=secret, timestamp=signed_at, body=body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise SignatureError(
            SignatureFailureReason.INVALID_SIGNATURE,
            "signature does not match the body; verify the raw request bytes with the "
            "current webhook secret",
        )


def verify_signature(
    *,
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Return True when the signature and timestamp headers are valid for the raw body.

    Returns False for missing or malformed headers and never raises on them. Raises
    ``ValueError`` only for an empty ``secret``. ``check_signature`` raises an error with the
    reason instead.
    """
    try:
        check_signature(
            secret=secret,
            body=body,
            signature=signature,
            timestamp=timestamp,
            tolerance_seconds=tolerance_seconds,
            now=now,
        )
    except SignatureError:
        return False
    return True


def _require_secret(secret: str) -> None:
    # An empty key would make every signature computable by anyone.
    if not secret:
        raise ValueError("webhook secret is empty; configure the tenant's webhook secret")
