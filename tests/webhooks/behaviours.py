"""Scripted responses for the local test servers of tests/webhooks/conftest.py.

A behaviour is a function that receives the request handler after the request was recorded
and writes the whole response itself, so it can also misbehave: stall, reset the
connection, or send a body that does not match its headers.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.webhooks.conftest import LocalServer, RecordingHandler

    Behaviour = Callable[[RecordingHandler], None]


def raw_reply(status: int, body: bytes, content_type: str | None = "application/json"):
    def behaviour(handler: RecordingHandler) -> None:
        handler.send_response(status)
        if content_type is not None:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.send_bytes(body)

    return behaviour


def json_reply(status: int, payload: object, content_type: str = "application/json"):
    return raw_reply(status, json.dumps(payload).encode(), content_type)


def redirect(location: str, status: int = 301):
    def behaviour(handler: RecordingHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return behaviour


def empty_reply(status: int, headers: dict[str, str]):
    """Respond with ``status``, ``headers`` and an empty body."""

    def behaviour(handler: RecordingHandler) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return behaviour


def gzip_reply(decoded_size: int):
    """Respond 200 with a gzip body of ``decoded_size`` spaces, which compresses about 1000:1."""
    body = gzip.compress(b" " * decoded_size)

    def behaviour(handler: RecordingHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.send_bytes(body)

    return behaviour


def dripped_reply(payload: object, *, seconds_per_byte: float):
    """Respond 200 with ``payload`` as JSON, one byte at a time, each after a pause.

    Every pause is shorter than the read timeout, so only a limit on the whole request
    stops the client from waiting for the last byte.
    """
    body = json.dumps(payload).encode()

    def behaviour(handler: RecordingHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for index in range(len(body)):
            handler.send_bytes(body[index : index + 1])
            handler.wfile.flush()
            time.sleep(seconds_per_byte)

    return behaviour


def reset_mid_body(handler: RecordingHandler) -> None:
    """Announce a 1,000-byte body, send its first bytes, then reset the connection."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.send_bytes(b'{"products": [')
    handler.wfile.flush()
    # Give the client time to read the headers, so the reset interrupts the body.
    time.sleep(0.05)
    connection_reset(handler)


def sequence(*behaviours):
    """Answer the n-th request with the n-th behaviour, repeating the last one."""
    calls: list[None] = []
    lock = threading.Lock()

    def behaviour(handler: RecordingHandler) -> None:
        with lock:
            calls.append(None)
            index = min(len(calls), len(behaviours)) - 1
        behaviours[index](handler)

    return behaviour


def slow(seconds: float, then=None):
    """Wait ``seconds``, then answer with ``then`` (a 200 ``{"ok": true}`` by default)."""
    after = then or json_reply(200, {"ok": True})

    def behaviour(handler: RecordingHandler) -> None:
        time.sleep(seconds)
        after(handler)

    return behaviour


def conflicting_content_lengths(handler: RecordingHandler) -> None:
    """Respond 200 with two Content-Length headers that disagree."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "2")
    handler.send_header("Content-Length", "5")
    handler.end_headers()
    handler.send_bytes(b"{}")


def connection_reset(handler: RecordingHandler) -> None:
    """Close the socket with a TCP RST instead of answering."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


class Gate:
    """A behaviour that delays each response until the test opens the gate.

    ``entered`` is set once a request reaches the gate, so after it is set the request's
    handler has chosen this behaviour. Seeing the request recorded is not
    enough, because the handler records it before it reads a ``Switchable``'s behaviour.
    """

    def __init__(self, then, *, max_wait_seconds: float = 10.0) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self._then = then
        # Ends the wait if the test fails before it opens the gate.
        self._max_wait_seconds = max_wait_seconds

    def __call__(self, handler: RecordingHandler) -> None:
        self.entered.set()
        self.opened.wait(self._max_wait_seconds)
        self._then(handler)

    def wait_entered(self, timeout: float = 5.0) -> None:
        assert self.entered.wait(timeout), f"no request reached the gate in {timeout} s"

    def open(self) -> None:
        self.opened.set()


class Switchable:
    """A behaviour that a test can replace while the server runs."""

    def __init__(self, behaviour) -> None:
        self.current = behaviour

    def __call__(self, handler: RecordingHandler) -> None:
        self.current(handler)


def point_webhooks_at(tenant, server: LocalServer, *, timeout_seconds: int = 1) -> None:
    """Send all three webhooks of ``tenant`` to ``server`` with a short timeout."""
    webhook_settings = tenant.webhook_settings
    webhook_settings.products_url = server.url("/products")
    webhook_settings.cart_url = server.url("/cart")
    webhook_settings.cart_get_url = server.url("/cart")
    webhook_settings.timeout_seconds = timeout_seconds
    webhook_settings.save()
