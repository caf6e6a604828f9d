"""HTTP server of the reference merchant: the three Vizochok webhooks plus a health check.

Endpoints:
    POST /vizochok/products   price and availability for a list of SKUs
    POST /vizochok/cart       add, remove, update_quantity or clear
    GET  /vizochok/cart       the shopper's current cart (?store_id=...&session_id=...)
    GET  /health              {"ok": true}, unsigned, for start-up checks

Every webhook request must carry a valid signature (see merchant.signature). Otherwise the
server responds with 401 and {"error": "missing_signature" | "invalid_signature" |
"stale_timestamp"}. Other errors are JSON objects with an `error` field as well.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from merchant.signature import (
    NEXT_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify_signature,
)
from merchant.store import (
    IdempotencyConflictError,
    ProductInfo,
    StockItem,
    Store,
    load_catalog,
    load_stock,
    parse_catalog,
    parse_stock,
)

logger = logging.getLogger(__name__)

PRODUCTS_PATH = "/vizochok/products"
CART_PATH = "/vizochok/cart"
HEALTH_PATH = "/health"
ALLOWED_METHODS = {
    PRODUCTS_PATH: ("POST",),
    CART_PATH: ("GET", "POST"),
    HEALTH_PATH: ("GET",),
}

IDEMPOTENCY_HEADER = "X-VIZOCHOK-Idempotency-Key"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_BODY_BYTES = 64 * 1024
# Seconds a connection may stay idle before the server closes it.
SOCKET_TIMEOUT_SECONDS = 30

# How often the serving loop checks for shutdown(), in seconds.
SHUTDOWN_POLL_SECONDS = 0.05

JsonObject = dict[str, object]


class HeaderDict(dict[str, str]):
    """Request headers as sent, with case-insensitive lookup by name."""

    def _find(self, name: str) -> str | None:
        lowered = name.lower()
        for key in self:
            if key.lower() == lowered:
                return key
        return None

    def __getitem__(self, name: str) -> str:
        key = self._find(name)
        if key is None:
            raise KeyError(name)
        return super().__getitem__(key)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        key = self._find(name)
        return default if key is None else super().__getitem__(key)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received, with the response it sent, for test assertions."""

    method: str
    path: str
    query: dict[str, str]
    headers: HeaderDict
    body: bytes
    status: int
    response: JsonObject


@dataclass(frozen=True)
class Reply:
    status: int
    body: JsonObject
    # Short outcome for the request log: an error code or a cart rejection reason.
    reason: str = ""


class RequestError(Exception):
    """Rejection of a request before it reaches the store, carrying the reply to send."""

    def __init__(self, status: HTTPStatus, error: str, detail: str = "") -> None:
        super().__init__(error)
        body: JsonObject = {"error": error}
        if detail:
            body["detail"] = detail
        self.reply = Reply(int(status), body, error)


class MerchantHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that carries the store, the secret and the request record."""

    daemon_threads = True
    # socketserver's default backlog of 5 connections overflows when several shoppers'
    # webhooks arrive at once, and Linux then drops connections until the client retries.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], *, store: Store, secret: str) -> None:
        super().__init__(address, MerchantRequestHandler)
        self.store = store
        self.secret = secret
        self.recorded_requests: list[RecordedRequest] = []


class MerchantRequestHandler(BaseHTTPRequestHandler):
    server: MerchantHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "VizochokReferenceMerchant/1.0"
    timeout = SOCKET_TIMEOUT_SECONDS
    # The headers and the body go out in two writes. With Nagle's algorithm on, the body
    # waits for the client's delayed ACK of the headers, about 40 ms on Linux per response.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def log_message(self, message_format: str, *args: object) -> None:
        """Route http.server's own messages (malformed requests) to the module logger."""
        logger.warning("merchant.http_error", extra={"detail": message_format % args})

    def log_error(self, message_format: str, *args: object) -> None:
        # An idle keep-alive connection that the client never reuses ends in a read timeout;
        # that is normal, so it is logged at debug level, unlike malformed requests.
        if message_format.startswith("Request timed out"):
            logger.debug("merchant.idle_connection_closed")
            return
        self.log_message(message_format, *args)

    def _handle(self) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        body = b""
        try:
            body = self._read_body()
            reply = self._route(url.path, query, body)
        except RequestError as error:
            reply = error.reply
        except Exception:
            logger.exception("merchant.request_failed", extra={"path": url.path})
            reply = Reply(500, {"error": "internal_error"}, "internal_error")

        # Record before replying, so a client that has the response also finds the record.
        self.server.recorded_requests.append(
            RecordedRequest(
                method=self.command,
                path=url.path,
                query=query,
                headers=HeaderDict(self.headers.items()),
                body=body,
                status=reply.status,
                response=reply.body,
            )
        )
        self._send_json(reply, url.path)
        logger.info(
            "merchant.request",
            extra={
                "method": self.command,
                "path": url.path,
                "status": reply.status,
                "reason": reply.reason,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )

    def _read_body(self) -> bytes:
        """Read the raw body. Errors close the connection, because the body stays unread."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "length_required")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        if not length_header.strip().isdigit():
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_request", "invalid Content-Length")
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "payload_too_large",
                f"the body is limited to {MAX_BODY_BYTES} bytes",
            )
        return self.rfile.read(length)

    def _route(self, path: str, query: dict[str, str], body: bytes) -> Reply:
        allowed = ALLOWED_METHODS.get(path)
        if allowed is None:
            raise RequestError(HTTPStatus.NOT_FOUND, "not_found")
        if self.command not in allowed:
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed")
        if path == HEALTH_PATH:
            return Reply(200, {"ok": True})

        self._verify(body)
        if self.command == "GET":
            return self._cart_get(query)
        payload = self._parse_json(body)
        if path == PRODUCTS_PATH:
            return self._products(payload)
        return self._cart_post(payload)

    def _verify(self, body: bytes) -> None:
        try:
            verify_signature(
                secret=self.server.secret,
                body=body,
                timestamp=self.headers.get(TIMESTAMP_HEADER),
                signature=self.headers.get(SIGNATURE_HEADER),
                next_signature=self.headers.get(NEXT_SIGNATURE_HEADER),
            )
        except SignatureError as error:
            raise RequestError(HTTPStatus.UNAUTHORIZED, error.code) from error

    def _parse_json(self, body: bytes) -> JsonObject:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError) as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_json") from error
        if not isinstance(payload, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_request", "expected a JSON object")
        return payload

    def _products(self, payload: JsonObject) -> Reply:
        skus = payload.get("skus")
        store_id = payload.get("store_id")
        if not isinstance(skus, list) or not all(isinstance(sku, str) for sku in skus):
            raise RequestError(
                HTTPStatus.BAD_REQUEST, "invalid_request", "skus must be a list of strings"
            )
        if not isinstance(store_id, str) or not store_id:
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_request", "store_id is required")
        return Reply(200, {"products": self.server.store.products_check(skus)})

    def _cart_post(self, payload: JsonObject) -> Reply:
        key = self.headers.get(IDEMPOTENCY_HEADER)
        if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                f"{IDEMPOTENCY_HEADER} must have 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
            )
        try:
            response = self.server.store.cart_update(payload, idempotency_key=key)
        except IdempotencyConflictError as error:
            raise RequestError(
                HTTPStatus.CONFLICT,
                "idempotency_key_conflict",
                "this idempotency key was already used for a different cart request",
            ) from error
        return Reply(200, response, str(response.get("reason", "")))

    def _cart_get(self, query: dict[str, str]) -> Reply:
        store_id = query.get("store_id")
        session_id = query.get("session_id")
        if not store_id or not session_id:
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                "store_id and session_id query parameters are required",
            )
        return Reply(200, {"items": self.server.store.cart_items(store_id, session_id)})

    def _send_json(self, reply: Reply, path: str) -> None:
        content = json.dumps(reply.body, ensure_ascii=False).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        if reply.status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ", ".join(ALLOWED_METHODS[path]))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip http.server's access log line, because _handle logs each request."""


class MerchantServer:
    """A running reference merchant: its URLs, its store and the requests it received."""

    def __init__(
        self, *, store: Store, secret: str, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        _check_secret(secret)
        self._http_server = MerchantHTTPServer((host, port), store=store, secret=secret)
        self._thread: threading.Thread | None = None
        # With port 0 the operating system picks a free port, so read back the bound address.
        bound_address = self._http_server.socket.getsockname()
        self.host = str(bound_address[0])
        self.port = int(bound_address[1])
        self.url = f"http://{self.host}:{self.port}"
        self.products_url = self.url + PRODUCTS_PATH
        self.cart_url = self.url + CART_PATH
        self.cart_get_url = self.url + CART_PATH
        self.health_url = self.url + HEALTH_PATH

    @property
    def store(self) -> Store:
        return self._http_server.store

    @property
    def requests(self) -> list[RecordedRequest]:
        """The received requests in arrival order. The list is live and can be cleared."""
        return self._http_server.recorded_requests

    def set_secret(self, secret: str) -> None:
        """Replace the webhook secret. Requests that arrive afterwards must use the new one."""
        _check_secret(secret)
        self._http_server.secret = secret

    def start(self) -> MerchantServer:
        """Serve in a daemon thread and return at once, with the socket already listening."""
        self._thread = threading.Thread(
            target=self._http_server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
            name=f"merchant-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("merchant.started", extra={"url": self.url})
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until shutdown() is called from another thread."""
        logger.info("merchant.started", extra={"url": self.url})
        self._http_server.serve_forever(poll_interval=SHUTDOWN_POLL_SECONDS)

    def shutdown(self) -> None:
        """Stop serving, close the listening socket and wait for the serving thread."""
        if self._thread is not None:
            self._http_server.shutdown()
            self._thread.join()
            self._thread = None
        self._http_server.server_close()
        logger.info("merchant.stopped", extra={"url": self.url})

    def __enter__(self) -> MerchantServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def _check_secret(secret: str) -> None:
    if not isinstance(secret, str) or not secret:
        raise ValueError("The webhook secret must be a non-empty string")


def build_store(
    *,
    stock_path: str | Path | None = None,
    catalog_path: str | Path | None = None,
    stock: Mapping[str, Mapping[str, object]] | None = None,
    catalog: Mapping[str, Mapping[str, object]] | Iterable[Mapping[str, object]] | None = None,
    seed_carts: Mapping[tuple[str, str], Iterable[tuple[str, float]]] | None = None,
) -> Store:
    """Build a store from files or in-memory data, from exactly one of stock_path and stock."""
    if (stock_path is None) == (stock is None):
        raise ValueError("Give exactly one of stock_path and stock")
    if catalog_path is not None and catalog is not None:
        raise ValueError("Give at most one of catalog_path and catalog")

    stock_items: dict[str, StockItem] = (
        load_stock(stock_path) if stock_path is not None else parse_stock(stock or {})
    )
    products: dict[str, ProductInfo] = {}
    if catalog_path is not None:
        products = load_catalog(catalog_path)
    elif catalog is not None:
        products = parse_catalog(catalog)

    store = Store(stock=stock_items, catalog=products)
    for (store_id, session_id), items in (seed_carts or {}).items():
        store.cart_seed(store_id, session_id, items)
    return store


def start_merchant(
    *,
    secret: str,
    stock_path: str | Path | None = None,
    catalog_path: str | Path | None = None,
    stock: Mapping[str, Mapping[str, object]] | None = None,
    catalog: Mapping[str, Mapping[str, object]] | Iterable[Mapping[str, object]] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    seed_carts: Mapping[tuple[str, str], Iterable[tuple[str, float]]] | None = None,
) -> MerchantServer:
    """Start a merchant in a daemon thread and return it at once, ready for requests.

    Port 0 picks a free port, which `server.port` and `server.url` then show. Stock and
    catalog come from files (`stock_path`, `catalog_path`) or from in-memory data of the same
    shape. `stock` maps SKUs to entries as in atb-stock.json. `catalog` is a list of
    ProductInput objects or a mapping of SKU to product. `seed_carts` maps
    (store_id, session_id) to a list of (sku, quantity) pairs.
    """
    store = build_store(
        stock_path=stock_path,
        catalog_path=catalog_path,
        stock=stock,
        catalog=catalog,
        seed_carts=seed_carts,
    )
    return MerchantServer(store=store, secret=secret, host=host, port=port).start()
