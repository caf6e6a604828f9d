"""The project's one client for outbound HTTP: hardened requests to tenant webhook URLs.

Every outbound request goes through ``send``, which:

- checks the URL with ``validate_url`` (HTTPS only unless the policy allows HTTP, public
  addresses only unless a network is allowlisted);
- resolves the host once and connects to that checked address, while the Host header, TLS
  SNI and the certificate check use the URL's host name, so a second DNS answer (DNS
  rebinding) never reaches a socket;
- returns redirects without following them, and uses no proxies, cookies, netrc or retries
  (the caller decides about retries);
- bounds the whole request by ``timeout`` and caps the response body.

Requests go straight to a shared ``requests`` adapter rather than through a
``requests.Session``, because a session adds environment proxies, a cookie jar shared
between tenants and redirect handling, none of which a webhook call may use.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.errors
import http.client
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import TracebackType
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.response import assert_header_parsing

from webhooks.urls_policy import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RESPONSE_BYTES,
    EgressError,
    EgressErrorCode,
    EgressPolicy,
    IPAddress,
    Resolver,
    UnsafeURLError,
    ValidatedURL,
    system_resolver,
    validate_url,
)

__all__ = [
    "USER_AGENT",
    "EgressConnectionError",
    "EgressError",
    "EgressErrorCode",
    "EgressPolicy",
    "EgressResponse",
    "EgressTimeout",
    "ResponseTooLarge",
    "UnsafeURLError",
    "ValidatedURL",
    "policy_from_django_settings",
    "send",
    "system_resolver",
    "validate_url",
]

logger = logging.getLogger(__name__)

BLOCKED_EVENT = "webhooks.egress.blocked"
FAILED_EVENT = "webhooks.egress.failed"
COMPLETED_EVENT = "webhooks.egress.completed"

_READ_CHUNK_BYTES = 64 * 1024
_CONTENT_LENGTH_PATTERN = re.compile(r"[0-9]+")
# Errors that mean the server's bytes were not valid HTTP, or ended before the response did.
# urllib3 raises InvalidHeader for Content-Length headers with different values, and
# requests wraps it in its own InvalidHeader.
_PROTOCOL_ERRORS = (
    http.client.HTTPException,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.DecodeError,
    urllib3.exceptions.InvalidHeader,
    requests.exceptions.InvalidHeader,
)


def _package_version() -> str:
    # A source checkout that was not installed with pip has no package metadata.
    try:
        return metadata.version("vizochok")
    except metadata.PackageNotFoundError:
        return "dev"


USER_AGENT = f"Vizochok-Webhooks/{_package_version()}"


class EgressTimeout(EgressError):
    """The connection or the whole request took longer than allowed."""


class EgressConnectionError(EgressError):
    """The request failed on the network: refused, reset, DNS, TLS or a malformed response."""


class ResponseTooLarge(EgressError):
    """The response body is larger than the policy's ``max_response_bytes``.

    ``bytes_read`` is how many body bytes were read before giving up: 0 when the
    Content-Length header already exceeded the limit, otherwise ``limit + 1``.
    ``status_code`` is the status of the response whose body was too large.
    """

    def __init__(self, message: str, *, limit: int, bytes_read: int, status_code: int) -> None:
        super().__init__(EgressErrorCode.RESPONSE_TOO_LARGE, message)
        self.limit = limit
        self.bytes_read = bytes_read
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class EgressResponse:
    """A complete response to an outbound request.

    ``headers`` are case-insensitive. ``url`` is the request URL without userinfo or query
    string, safe to log. ``elapsed_ms`` covers DNS, connecting, sending and reading the body.
    """

    status_code: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_ms: float
    url: str


def send(
    method: str,
    url: str,
    *,
    policy: EgressPolicy,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    timeout: float,
    resolver: Resolver | None = None,
) -> EgressResponse:
    """Send one HTTP request to a tenant-configured URL and return the whole response.

    ``timeout`` in seconds bounds the whole request, from DNS to the last body byte, and
    is also the socket read timeout. Connecting may take at most ``policy.connect_timeout``.
    A 3xx response is returned as it is and never followed. ``body`` is sent byte for byte,
    so it can be signed beforehand. The Host and User-Agent headers are always set here and
    replace any given in ``headers``.

    Raises ``UnsafeURLError`` before any connection is made when the policy rejects the URL,
    ``EgressTimeout``, ``EgressConnectionError`` (including DNS failures) or
    ``ResponseTooLarge``. Raises ``ValueError`` for a timeout that is not positive and
    ``requests.exceptions.InvalidHeader`` (a ``ValueError``) for a header value with a line
    break, since both are the caller's errors.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    started = time.monotonic()
    validated = _validate_for_send(url, policy=policy, resolver=resolver or system_resolver)
    # The resolved addresses are tried in order while connecting fails, which sends nothing.
    # Once a connection is made, its outcome is final: the request may have reached the
    # server, and sending it again is the caller's decision.
    for attempt, address in enumerate(validated.addresses, start=1):
        try:
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                raise EgressTimeout(
                    EgressErrorCode.TIMEOUT,
                    f"resolving {validated.hostname!r} used up the {timeout:.2f} s timeout",
                )
            prepared = _prepare_request(method, validated, address, body, headers, params)
            status_code, response_headers, response_body = _exchange(
                prepared, validated, policy=policy, timeout=timeout, remaining=remaining
            )
            break
        except (EgressError, _NotConnected) as failure:
            error = failure.error if isinstance(failure, _NotConnected) else failure
            logger.info(
                FAILED_EVENT,
                extra={
                    "code": str(error.code),
                    "method": method,
                    "url": validated.sanitized_url,
                    "address": str(address),
                    "attempt": attempt,
                    "duration_ms": _elapsed_ms(started),
                },
            )
            # With no time left, the connect failure is raised, and no later address is
            # logged as tried.
            time_left = timeout - (time.monotonic() - started) > 0
            if (
                isinstance(failure, _NotConnected)
                and attempt < len(validated.addresses)
                and time_left
            ):
                continue
            raise error from failure.__cause__

    elapsed_ms = _elapsed_ms(started)
    logger.debug(
        COMPLETED_EVENT,
        extra={
            "method": method,
            "url": validated.sanitized_url,
            "address": str(address),
            "status_code": status_code,
            "response_bytes": len(response_body),
            "duration_ms": elapsed_ms,
        },
    )
    return EgressResponse(
        status_code=status_code,
        headers=response_headers,
        body=response_body,
        elapsed_ms=elapsed_ms,
        url=validated.sanitized_url,
    )


def policy_from_django_settings() -> EgressPolicy:
    """Build the egress policy from the ``WEBHOOK_*`` Django settings.

    Django is imported only when this runs, so the module itself works without Django.
    """
    from django.conf import settings

    return EgressPolicy.from_settings(
        allow_http=getattr(settings, "WEBHOOK_ALLOW_HTTP", False),
        allowed_networks=getattr(settings, "WEBHOOK_ALLOWED_NETWORKS", ()),
        connect_timeout=getattr(settings, "WEBHOOK_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
        max_response_bytes=getattr(
            settings, "WEBHOOK_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES
        ),
        ca_bundle=getattr(settings, "WEBHOOK_CA_BUNDLE", None),
    )


def _validate_for_send(url: str, *, policy: EgressPolicy, resolver: Resolver) -> ValidatedURL:
    try:
        return validate_url(url, policy=policy, resolve=True, resolver=resolver)
    except UnsafeURLError as error:
        if error.code == EgressErrorCode.DNS_FAILED:
            # At send time a failed lookup is a network failure worth a retry, not a
            # configuration error.
            logger.info(FAILED_EVENT, extra={"code": str(error.code), "url": sanitize_url(url)})
            raise EgressConnectionError(error.code, error.message) from error
        logger.warning(
            BLOCKED_EVENT,
            extra={
                "code": str(error.code),
                "url": sanitize_url(url),
                "address": str(error.address) if error.address is not None else None,
            },
        )
        raise


def _prepare_request(
    method: str,
    validated: ValidatedURL,
    address: IPAddress,
    body: bytes | None,
    headers: Mapping[str, str] | None,
    params: Mapping[str, str] | None,
) -> requests.PreparedRequest:
    """Build a request whose URL contains the checked IP address instead of the host name."""
    request_headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(headers or {})
    request_headers["Host"] = validated.host_header
    request_headers["User-Agent"] = USER_AGENT
    request_headers.setdefault("Accept-Encoding", "identity")

    host = f"[{address}]" if address.version == 6 else str(address)
    pinned_url = f"{validated.scheme}://{host}:{validated.port}{validated.target}"
    request = requests.Request(
        method=method.upper(),
        url=pinned_url,
        headers=dict(request_headers),
        data=body,
        params=dict(params or {}),
    )
    try:
        return request.prepare()
    except requests.exceptions.InvalidURL as error:
        raise UnsafeURLError(EgressErrorCode.INVALID_URL, f"URL is not valid: {error}.") from error


def _exchange(
    prepared: requests.PreparedRequest,
    validated: ValidatedURL,
    *,
    policy: EgressPolicy,
    timeout: float,
    remaining: float,
) -> tuple[int, CaseInsensitiveDict[str], bytes]:
    """Send the request and read the response body within the remaining time budget."""
    deadline = _RequestDeadline(remaining)
    try:
        with deadline:
            response = _shared_adapter().send(
                prepared,
                stream=True,
                timeout=(min(policy.connect_timeout, remaining), timeout),
                verify=policy.ca_bundle or True,
                cert=None,
                proxies={},
            )
            try:
                body = _read_body(response, limit=policy.max_response_bytes)
            finally:
                response.close()
    except (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        urllib3.exceptions.ReadTimeoutError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.SSLError,
        urllib3.exceptions.DecodeError,
        urllib3.exceptions.InvalidHeader,
        requests.exceptions.InvalidHeader,
    ) as error:
        translated = _translate_error(error, validated, deadline=deadline, timeout=timeout)
        if not deadline.expired and _failed_to_connect(error):
            raise _NotConnected(translated) from error
        raise translated from error

    if deadline.expired:
        # The deadline shut the socket down, which can end a body without Content-Length
        # early and look like a complete response.
        raise _timeout_error(validated, timeout)
    return response.status_code, CaseInsensitiveDict(response.headers), body


class _NotConnected(Exception):
    """A connection that could not be opened, so no byte of the request was sent."""

    def __init__(self, error: EgressError) -> None:
        super().__init__(error.message)
        self.error = error


def _failed_to_connect(error: Exception) -> bool:
    """Tell whether ``error`` happened while opening the TCP connection.

    urllib3 raises ``NewConnectionError`` when the connection is refused or unreachable,
    and requests raises ``ConnectTimeout`` when opening it takes too long. TLS failures
    come after the connection and are not included.
    """
    return isinstance(error, requests.exceptions.ConnectTimeout) or any(
        isinstance(item, urllib3.exceptions.NewConnectionError) for item in _linked_errors(error)
    )


def _read_body(response: requests.Response, *, limit: int) -> bytes:
    """Read the body, raising ``ResponseTooLarge`` after at most ``limit + 1`` bytes."""
    declared = response.headers.get("Content-Length")
    if (
        declared is not None
        and _CONTENT_LENGTH_PATTERN.fullmatch(declared)
        and int(declared) > limit
    ):
        raise ResponseTooLarge(
            f"response declares {declared} bytes, more than the limit of {limit}",
            limit=limit,
            bytes_read=0,
            status_code=response.status_code,
        )

    raw: urllib3.BaseHTTPResponse = response.raw
    body = bytearray()
    while True:
        chunk = raw.read(min(_READ_CHUNK_BYTES, limit + 1 - len(body)), decode_content=True)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise ResponseTooLarge(
                f"response body is larger than the limit of {limit} bytes",
                limit=limit,
                bytes_read=len(body),
                status_code=response.status_code,
            )


def _translate_error(
    error: Exception, validated: ValidatedURL, *, deadline: _RequestDeadline, timeout: float
) -> EgressError:
    url = validated.sanitized_url
    if deadline.expired or isinstance(
        error, requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError
    ):
        return _timeout_error(validated, timeout)
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return EgressTimeout(
            EgressErrorCode.CONNECT_TIMEOUT, f"connecting to {url} timed out: {_cause(error)}"
        )

    linked = list(_linked_errors(error))
    if any(isinstance(item, ssl.SSLError | urllib3.exceptions.SSLError) for item in linked):
        code = EgressErrorCode.TLS_ERROR
        message = f"TLS handshake or certificate check with {url} failed: {_cause(error)}"
    elif any(isinstance(item, ConnectionRefusedError) for item in linked):
        code = EgressErrorCode.CONNECTION_REFUSED
        message = f"connection to {url} was refused"
    elif any(isinstance(item, ConnectionResetError | BrokenPipeError) for item in linked):
        code = EgressErrorCode.CONNECTION_RESET
        message = f"connection to {url} was reset or closed by the server: {_cause(error)}"
    elif any(isinstance(item, _PROTOCOL_ERRORS) for item in linked):
        code = EgressErrorCode.PROTOCOL_ERROR
        message = f"response from {url} was malformed or broke off: {_cause(error)}"
    else:
        code = EgressErrorCode.CONNECTION_FAILED
        message = f"request to {url} failed: {_cause(error)}"
    return EgressConnectionError(code, message)


def _timeout_error(validated: ValidatedURL, timeout: float) -> EgressTimeout:
    return EgressTimeout(
        EgressErrorCode.TIMEOUT,
        f"request to {validated.sanitized_url} did not complete within {timeout:.2f} s",
    )


def _linked_errors(error: BaseException) -> Iterator[BaseException]:
    """Yield the error and every error it wraps.

    requests and urllib3 wrap the socket error in ``args``, ``reason`` or ``__cause__``.
    """
    pending = [error]
    seen: set[int] = set()
    while pending and len(seen) < 20:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        links = (current.__cause__, current.__context__, getattr(current, "reason", None))
        pending.extend(item for item in (*links, *current.args) if isinstance(item, BaseException))


def _cause(error: BaseException) -> str:
    """Describe the innermost socket, TLS or HTTP parsing error.

    Their texts contain no URL or query string. An HTTP parsing error may quote what the
    server sent, so it is shown as a shortened repr.
    """
    for item in reversed(list(_linked_errors(error))):
        if isinstance(item, http.client.HTTPException | urllib3.exceptions.InvalidHeader):
            return repr(item)[:200]
        if isinstance(item, OSError) and str(item):
            return str(item)
    return type(error).__name__


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def sanitize_url(url: str) -> str:
    """Return scheme, host, port and path of a possibly invalid URL, for logs and records."""
    try:
        parts = urllib3.util.parse_url(url)
    except urllib3.exceptions.LocationParseError:
        return "<unparsable URL>"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.host or ''}{port}{parts.path or ''}"


# The deadline of the request running in the current thread, read by the connection classes.
_active_deadline: contextvars.ContextVar[_RequestDeadline | None] = contextvars.ContextVar(
    "webhooks_egress_deadline", default=None
)


class _RequestDeadline:
    """Timer that shuts down the current request's TCP connection when its budget runs out.

    A socket timeout bounds each read separately, so a server that sends a byte every
    second could hold a request for hours. When the timer fires, it shuts the socket down,
    and every pending and later read on the connection fails at once. The deadline watches
    duplicated descriptors of the sockets it is given. A duplicate stays valid even after
    TLS wrapping detaches the original socket object or the connection closes it, so the
    timer can never shut down a descriptor number that another connection reused.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._finished = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._token: contextvars.Token[_RequestDeadline | None] | None = None

    def __enter__(self) -> _RequestDeadline:
        self._token = _active_deadline.set(self)
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with self._lock:
            self._finished = True
            duplicates, self._sockets = self._sockets, []
        for duplicate in duplicates:
            duplicate.close()
        if self._token is not None:
            _active_deadline.reset(self._token)

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the deadline expires, or at once if it already has."""
        duplicate = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
        with self._lock:
            if self._finished:
                duplicate.close()
                return
            self._sockets.append(duplicate)
            if self.expired:
                _shutdown(duplicate)

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            for duplicate in self._sockets:
                _shutdown(duplicate)


def _shutdown(sock: socket.socket) -> None:
    # OSError means the peer already closed the connection, which ends the request as well.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _watch_socket(sock: socket.socket | None) -> None:
    deadline = _active_deadline.get()
    if deadline is not None and sock is not None:
        deadline.watch(sock)


# A header line, with optional whitespace between its name (an RFC 9110 token) and the colon.
_SPACED_HEADER_PATTERN = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:(.*)")
_HEADER_LINE_END_PATTERN = re.compile(r"\r?\n")
# Headers that decide where the body ends or whether the connection stays open.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


class _FinalHTTPResponse(http.client.HTTPResponse):
    """An http.client response that skips interim 1xx responses and rejects malformed headers.

    Whitespace between a header's name and its colon is repaired, not rejected, as
    ``_repair_spaced_headers`` describes.

    http.client skips only 100 Continue. It took a 103 Early Hints as the final response
    and left the real one on the pooled connection, where the next request read it. This
    overrides ``_read_status``, a private method of http.client (CPython 3.11), which
    ``begin()`` calls for each status line.
    """

    def begin(self) -> None:
        super().begin()
        # urllib3 only logs malformed headers, in a warning that contains the whole URL with
        # its query string, and then reads the body from a misparsed response.
        try:
            assert_header_parsing(self.msg)
        except urllib3.exceptions.HeaderParsingError as error:
            if not self._repair_spaced_headers():
                raise http.client.HTTPException(
                    f"the response headers are malformed: {error}"
                ) from error

    def _repair_spaced_headers(self) -> bool:
        """Add the headers left unparsed after a "Vary : Origin" line, and return whether it could.

        The email parser that http.client uses stops at a name followed by whitespace and
        keeps that line and the rest as unparsed text. RFC 9112, section 5.1, requires a proxy
        to remove such whitespace from a response, so the lines are added here with their
        names stripped. A line of another form, or a header that frames the body or the
        connection, whose value http.client has already read without it, is not repaired.
        """
        message = self.msg
        unparsed = message.get_payload()
        if not isinstance(unparsed, str) or any(
            not isinstance(defect, email.errors.MissingHeaderBodySeparatorDefect)
            for defect in message.defects
        ):
            return False
        headers = []
        # http.client ends a header line at "\n" only. str.splitlines also splits at
        # characters such as "\x85", which a header value may contain as latin-1 text.
        for line in _HEADER_LINE_END_PATTERN.split(unparsed):
            if not line:
                continue
            match = _SPACED_HEADER_PATTERN.fullmatch(line)
            if match is None or match[1].lower() in _FRAMING_HEADERS:
                return False
            headers.append((match[1], match[2].strip(" \t")))
        for name, value in headers:
            message[name] = value
        message.set_payload("")
        message.defects.clear()
        return True

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if status == http.client.SWITCHING_PROTOCOLS:
                # The connection no longer speaks HTTP, so it must not go back to the pool.
                raise http.client.HTTPException(
                    "the server switched protocols (HTTP 101), which no webhook request asks for"
                )
            # begin() itself skips a 100 Continue.
            if status == http.client.CONTINUE or not 100 <= status <= 199:
                return version, status, reason
            http.client.parse_headers(self.fp)


class _DeadlineHTTPConnection(HTTPConnection):
    """An HTTP connection whose socket the current request's deadline can shut down."""

    response_class = _FinalHTTPResponse

    def _new_conn(self) -> socket.socket:
        # A new TCP socket is watched before the TLS handshake starts on it.
        sock = super()._new_conn()
        _watch_socket(sock)
        return sock

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        # Any, because urllib3 names the accepted body types only in a private alias.
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        chunked: bool = False,
        preload_content: bool = True,
        decode_content: bool = True,
        enforce_content_length: bool = True,
    ) -> None:
        # A connection reused from the pool already has its socket.
        _watch_socket(self.sock)
        super().request(
            method,
            url,
            body=body,
            headers=headers,
            chunked=chunked,
            preload_content=preload_content,
            decode_content=decode_content,
            enforce_content_length=enforce_content_length,
        )


class _DeadlineHTTPSConnection(_DeadlineHTTPConnection, HTTPSConnection):
    """An HTTPS connection whose socket the current request's deadline can shut down."""


class _DeadlineHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class _PinnedAddressAdapter(HTTPAdapter):
    """A requests adapter for URLs that hold an IP address, with the real host in Host.

    For HTTPS it passes the Host header's name to urllib3 as ``server_hostname``, so TLS SNI
    and the certificate's hostname check (done by OpenSSL during the handshake) use the
    original host name while the socket connects to the pinned address. The name is part of
    urllib3's pool key, so connections are only reused for the same address and name.
    """

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _DeadlineHTTPConnectionPool,
            "https": _DeadlineHTTPSConnectionPool,
        }

    def build_connection_pool_key_attributes(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = _server_name(request)
        return host_params, pool_kwargs


def _server_name(request: requests.PreparedRequest) -> str:
    host_header = request.headers.get("Host")
    if isinstance(host_header, bytes):
        host_header = host_header.decode("ascii")
    if not host_header:
        raise ValueError("pinned requests must carry a Host header with the URL's host name")
    if host_header.startswith("["):
        return host_header[1 : host_header.index("]")]
    return host_header.rsplit(":", 1)[0]


# Connection pools the adapter keeps, one per merchant address, and the idle connections
# each pool keeps. urllib3's defaults of 10 and 10 are too few for the 16 WebSocket worker
# threads of one uvicorn process. With them, an eleventh concurrent call to one merchant
# closed its connection after use and logged "Connection pool is full". The merchant of an
# eleventh tenant evicted another merchant's pool, with its open connections.
# A pool only keeps connections that were in use at once, so large values cost nothing until
# a process has that many concurrent calls. NOTE: a process with more than 64 threads calling
# one merchant at once again closes the surplus connections after use.
POOL_CONNECTIONS = 256
POOL_MAXSIZE = 64

_adapter_lock = threading.Lock()
_adapter: _PinnedAddressAdapter | None = None


def _shared_adapter() -> _PinnedAddressAdapter:
    """Return the process's adapter, created on first use.

    One adapter serves all threads. urllib3's PoolManager and its pools lock their own
    state. requests' ``HTTPAdapter.send`` stores nothing on the adapter, and the TLS settings
    it writes onto a pool are the same for every request that maps to that pool.
    """
    global _adapter
    with _adapter_lock:
        if _adapter is None:
            _adapter = _PinnedAddressAdapter(
                pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_MAXSIZE, max_retries=0
            )
        return _adapter


def _forget_adapter_after_fork() -> None:
    # A forked worker must not share the parent's pooled sockets.
    global _adapter, _adapter_lock
    _adapter = None
    _adapter_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_adapter_after_fork)
