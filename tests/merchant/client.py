"""A small signing HTTP client for the reference merchant tests.

It signs requests independently of merchant.signature, so a bug there cannot hide itself.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    signed_payload = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed_payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        return json.loads(self.body)


class MerchantClient:
    """Send signed requests to a merchant on 127.0.0.1 over http.client."""

    def __init__(self, base_url: str, secret: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.secret = secret

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        headers: dict[str, str] | None = None,
        signed: bool = True,
        secret: str | None = None,
        timestamp: int | None = None,
        signed_body: bytes | None = None,
    ) -> Response:
        """Send one request; `signed_body` signs other bytes than the ones sent."""
        all_headers = {"Content-Type": "application/json"}
        if signed:
            signing_time = int(time.time()) if timestamp is None else timestamp
            all_headers["X-VIZOCHOK-Timestamp"] = str(signing_time)
            all_headers["X-VIZOCHOK-Signature"] = sign(
                secret or self.secret, signing_time, body if signed_body is None else signed_body
            )
        all_headers.update(headers or {})

        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request(
                method, path, body=body if body or method == "POST" else None, headers=all_headers
            )
            response = connection.getresponse()
            return Response(
                status=response.status, headers=dict(response.getheaders()), body=response.read()
            )
        finally:
            connection.close()

    def post_json(self, path: str, payload: object, **options: Any) -> Response:
        body = json.dumps(payload, ensure_ascii=False).encode()
        return self.request("POST", path, body, **options)

    def products(self, skus: list[str], store_id: str = "store-1", **options: Any) -> Response:
        return self.post_json("/vizochok/products", {"skus": skus, "store_id": store_id}, **options)

    def cart(self, payload: dict[str, object], **options: Any) -> Response:
        return self.post_json("/vizochok/cart", payload, **options)

    def cart_get(self, store_id: str, session_id: str, **options: Any) -> Response:
        query = urlencode({"store_id": store_id, "session_id": session_id})
        return self.request("GET", f"/vizochok/cart?{query}", **options)
