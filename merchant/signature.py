"""Verification of the HMAC-SHA256 signature that Vizochok puts on every webhook request.

The sender takes the current Unix time `t` and computes HMAC-SHA256 with the shared webhook
secret over the bytes `"{t}." + raw_body`. It sends `X-VIZOCHOK-Timestamp: t` and
`X-VIZOCHOK-Signature: sha256=<hex digest>`. While a secret is being rotated it also sends
`X-VIZOCHOK-Signature-Next`, made with the next secret, so the merchant can switch its secret
at any moment without rejecting requests.

This module uses only the standard library, so it can be copied into any Python backend.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

SIGNATURE_HEADER = "X-VIZOCHOK-Signature"
NEXT_SIGNATURE_HEADER = "X-VIZOCHOK-Signature-Next"
TIMESTAMP_HEADER = "X-VIZOCHOK-Timestamp"

# Requests signed more than this many seconds before or after the merchant's clock are rejected.
TIMESTAMP_TOLERANCE_SECONDS = 300

SIGNATURE_PREFIX = "sha256="

MISSING_SIGNATURE = "missing_signature"
INVALID_SIGNATURE = "invalid_signature"
STALE_TIMESTAMP = "stale_timestamp"

_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")


class SignatureError(Exception):
    """A request failed signature verification; `code` is the error name for the response."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def compute_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Return the header value `sha256=<hex>` for a timestamp and the raw body bytes."""
    signed_payload = timestamp.encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), signed_payload, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(
    *,
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    next_signature: str | None = None,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless the request is fresh and one of its signatures matches.

    `body` must be the raw request bytes as received: a body parsed and serialized again
    can differ in spacing or key order and then fails verification. Either signature
    header is accepted, so a request made during secret rotation verifies with the old or
    the new secret, whichever this merchant has configured.
    """
    signatures = [value for value in (signature, next_signature) if value]
    if not timestamp or not signatures:
        raise SignatureError(MISSING_SIGNATURE)

    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise SignatureError(INVALID_SIGNATURE)

    current_time = time.time() if now is None else now
    if abs(current_time - int(timestamp)) > TIMESTAMP_TOLERANCE_SECONDS:
        raise SignatureError(STALE_TIMESTAMP)

    expected = compute_signature(secret, timestamp, body).encode("ascii")
    # Every candidate is compared, so the time taken does not reveal which header matched.
    # A header is compared as sent, as docs/webhooks-signatures.md instructs merchants, so
    # "SHA256=" or upper-case hex does not match.
    matches = [
        hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
        for candidate in signatures
    ]
    if not any(matches):
        raise SignatureError(INVALID_SIGNATURE)
