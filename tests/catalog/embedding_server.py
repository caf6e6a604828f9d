"""A local OpenAI-compatible ``/v1/embeddings`` server for tests, on 127.0.0.1.

It returns deterministic vectors derived from each text, records every request, and can
respond with an error status or hold requests until the test releases them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

DIMENSIONS = 384


def text_vector(text: str) -> list[float]:
    """Return the server's vector for ``text``: the same text always gets the same vector."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return np.random.default_rng(seed).standard_normal(DIMENSIONS).tolist()


@dataclass
class EmbeddingServerState:
    """What the server received and how it responds, shared by its threads and the test."""

    requests: list[list[str]] = field(default_factory=list)
    # Respond to every request with this status and an error body instead of vectors.
    error_status: int | None = None
    # Requests from this 1-based number on wait until ``release`` is set.
    hold_from_request: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def texts(self) -> list[str]:
        with self.lock:
            return [text for request in self.requests for text in request]

    def wait_for_requests(self, count: int, *, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.requests) >= count, timeout=timeout)


class _EmbeddingHandler(BaseHTTPRequestHandler):
    server: _EmbeddingHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output free of access logs."""

    def do_POST(self) -> None:
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with state.changed:
            state.requests.append(list(body["input"]))
            number = len(state.requests)
            state.changed.notify_all()
        if state.hold_from_request is not None and number >= state.hold_from_request:
            state.release.wait(timeout=60)
        if state.error_status is not None:
            self._send(state.error_status, {"error": {"message": "The test server is down."}})
            return
        data = [
            {"object": "embedding", "index": index, "embedding": text_vector(text)}
            for index, text in enumerate(body["input"])
        ]
        usage = {"prompt_tokens": 0, "total_tokens": 0}
        self._send(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})

    def _send(self, status: int, payload: dict) -> None:
        encoded = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)
        except (BrokenPipeError, ConnectionResetError):
            # The client was killed while this request was held.
            pass


class _EmbeddingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # socketserver's default of 5 overflows under concurrent tests

    def __init__(self, state: EmbeddingServerState) -> None:
        super().__init__(("127.0.0.1", 0), _EmbeddingHandler)
        self.state = state


@dataclass(frozen=True)
class EmbeddingServer:
    state: EmbeddingServerState
    base_url: str


@contextmanager
def run_embedding_server() -> Iterator[EmbeddingServer]:
    """Serve embeddings on a free port of 127.0.0.1 until the block ends."""
    state = EmbeddingServerState()
    server = _EmbeddingHTTPServer(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield EmbeddingServer(state=state, base_url=f"http://127.0.0.1:{server.server_port}/v1")
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
