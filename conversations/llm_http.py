"""The HTTP client of the LLM endpoint, whose socket operations end at the turn's deadline.

httpx bounds each socket read by the request's timeout, not the whole response. A server
that sends a byte, or an SSE comment line such as ": ping", before each read timeout ends
keeps one request open for as long as it goes on, past the turn's deadline and past the
conversation's lease. The network backend below gives every connect, read and write at
most the time left before the deadline of the request in progress in this thread, and
fails it with a timeout once that deadline has passed.

The client follows no redirects: a chat completions endpoint does not send them, and a
307 would resend the whole conversation to wherever the server points.
"""

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from ssl import SSLContext
from typing import Any, Protocol
from urllib.parse import urlsplit
from urllib.request import getproxies

import httpcore2
import httpx2

# The connection limits of the openai client's default HTTP client (DEFAULT_CONNECTION_LIMITS
# in openai 3.60.0).
CONNECTION_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)

_current = threading.local()


class TimeLeft(Protocol):
    def remaining(self) -> float: ...


@contextmanager
def deadline_scope(deadline: TimeLeft) -> Iterator[None]:
    """Bound the LLM requests that this thread sends inside the block by ``deadline``."""
    _current.deadline = deadline
    try:
        yield
    finally:
        _current.deadline = None


def deadline_http_client(*, base_url: str, timeout: float) -> httpx2.Client:
    """Return the HTTP client for the openai client of ``base_url`` (empty: the OpenAI API).

    httpx ignores the proxy variables of the environment for a client with its own
    transport. So while a proxy variable is set for the URL's scheme, the client keeps
    httpx's transport and its proxies, and the deadline does not bound its requests.
    """
    scheme = urlsplit(base_url).scheme if base_url else "https"
    if _environment_proxy_set(scheme):
        # NOTE: such requests end only at their per-read timeout.
        return httpx2.Client(timeout=timeout, follow_redirects=False)
    return httpx2.Client(transport=_DeadlineTransport(), timeout=timeout, follow_redirects=False)


def _environment_proxy_set(scheme: str) -> bool:
    # httpx reads the same variables through getproxies(). NO_PROXY is not checked, so a
    # host that bypasses the proxy keeps httpx's transport too.
    proxies = getproxies()
    return bool(proxies.get(scheme) or proxies.get("all"))


class _DeadlineTransport(httpx2.HTTPTransport):
    def __init__(self) -> None:
        super().__init__(limits=CONNECTION_LIMITS)
        # HTTPTransport takes no network backend, so its connection pool is replaced by one
        # with the same settings and the deadline backend.
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=CONNECTION_LIMITS.max_connections,
            max_keepalive_connections=CONNECTION_LIMITS.max_keepalive_connections,
            keepalive_expiry=CONNECTION_LIMITS.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )


def _bounded(timeout: float | None, error: type[httpcore2.TimeoutException]) -> float | None:
    """Return ``timeout`` lowered to the time left before this thread's deadline.

    Raise ``error`` when the deadline has passed.
    """
    deadline: TimeLeft | None = getattr(_current, "deadline", None)
    if deadline is None:
        return timeout
    remaining = deadline.remaining()
    if remaining <= 0:
        raise error("The turn deadline passed during the request.")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore2.NetworkStream):
    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        try:
            bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        except httpcore2.ConnectTimeout:
            # httpcore relies on start_tls to close the TCP stream when the TLS start fails.
            self._stream.close()
            raise
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        # NOTE: the timeout bounds the TCP connect only. The name lookup before it
        # (socket.getaddrinfo) takes no timeout, so a slow resolver can pass the deadline.
        stream = self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)
