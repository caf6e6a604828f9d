"""Verify a Vizochok webhook request in Python (standard library only).

Copy this function into your backend and call it with the raw request body bytes, before
any JSON parsing. Example for Flask::

    @app.post("/api/vizochok/check-products")
    def check_products():
        reason = verify_vizochok_request(
            secret=os.environ["VIZOCHOK_WEBHOOK_SECRET"],
            body=request.get_data(),  # raw bytes, read before request.json
            headers=request.headers,
        )
        if reason is not None:
            return {"error": reason}, 401
        payload = json.loads(request.get_data())
        ...

Django: use ``request.body``. FastAPI/Starlette: ``await request.body()``.
"""

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

TOLERANCE_SECONDS = 300
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Frameworks differ in header case, so look the name up case-insensitively.
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def verify_vizochok_request(
    *, secret: str, body: bytes, headers: Mapping[str, str], now: float | None = None
) -> str | None:
    """Return None for a valid request, or the reason it must be rejected with 401.

    Accepts the request when X-VIZOCHOK-Signature or, during a secret rotation,
    X-VIZOCHOK-Signature-Next matches. The timestamp may be at most 300 s before or after
    this server's clock.
    """
    candidates = [
        value
        for value in (
            _header(headers, "X-VIZOCHOK-Signature"),
            _header(headers, "X-VIZOCHOK-Signature-Next"),
        )
        if value
    ]
    timestamp = _header(headers, "X-VIZOCHOK-Timestamp")
    if not candidates:
        return "missing_signature"
    if not timestamp:
        return "missing_timestamp"
    well_formed = [value for value in candidates if _SIGNATURE.fullmatch(value)]
    if not well_formed:
        return "malformed_signature"
    if not _TIMESTAMP.fullmatch(timestamp):
        return "malformed_timestamp"
    current_time = time.time() if now is None else now
    if abs(current_time - int(timestamp)) > TOLERANCE_SECONDS:
        return "stale_timestamp"

    signed_payload = timestamp.encode("ascii") + b"." + body
    expected = (
        "sha256=" + hmac.new(secret.encode("utf-8"), signed_payload, hashlib.sha256).hexdigest()
    )
    # Compare every candidate, so the time taken does not reveal which one matched.
    matches = [hmac.compare_digest(expected, value) for value in well_formed]
    return None if any(matches) else "invalid_signature"
