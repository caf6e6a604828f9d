"""Tests for the outbound HTTP client against real HTTP(S) servers on 127.0.0.1.

Fake resolvers map test host names to 127.0.0.1, and the autouse guard in conftest.py fails
any test that would resolve a real name or connect outside the loopback range.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from webhooks import egress
from webhooks.egress import (
    USER_AGENT,
    EgressConnectionError,
    EgressErrorCode,
    EgressPolicy,
    EgressTimeout,
    ResponseTooLarge,
    UnsafeURLError,
    policy_from_django_settings,
    send,
    validate_url,
)
from webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers, verify_signature

if TYPE_CHECKING:
    from conftest import CertificateFiles, LocalServer, RecordingHandler

    StartServer = Callable[..., LocalServer]

LOCAL_POLICY = EgressPolicy.from_settings(allow_http=True, allowed_networks=["127.0.0.0/8"])
SHORT_TIMEOUT = 0.3
MIB = 1024 * 1024


class ScriptedResolver:
    """A resolver that returns the next scripted address list per call, then repeats the last."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.questions: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.questions.append((host, port))
        return self.answers[min(len(self.questions), len(self.answers)) - 1]


def respond(
    status: int = 200, body: bytes = b'{"ok": true}', headers: dict[str, str] | None = None
) -> Callable[[RecordingHandler], None]:
    def behaviour(handler: RecordingHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.send_bytes(body)

    return behaviour


def echo_path(handler: RecordingHandler) -> None:
    respond(body=handler.path.encode())(handler)


def stream_body(total_bytes: int) -> Callable[[RecordingHandler], None]:
    """Send a body without Content-Length in 16 KiB chunks, through a small send buffer."""

    def behaviour(handler: RecordingHandler) -> None:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        handler.send_response(200)
        handler.end_headers()
        for _ in range(total_bytes // (16 * 1024)):
            handler.send_bytes(b"x" * 16 * 1024)

    return behaviour


def dribble(
    data: bytes, *, head: bytes = b"", interval: float = 0.05
) -> Callable[[RecordingHandler], None]:
    """Send ``head`` at once, then ``data`` one byte at a time until the client goes away."""

    def behaviour(handler: RecordingHandler) -> None:
        handler.send_bytes(head)
        for index in range(len(data)):
            try:
                handler.send_bytes(data[index : index + 1])
            except OSError:
                return
            time.sleep(interval)

    return behaviour


def reset_connection(handler: RecordingHandler) -> None:
    # SO_LINGER with a zero timeout makes close() send a TCP RST instead of a FIN.
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def full_backlog(address: str, port: int = 0) -> Iterator[int]:
    """Listen on ``address`` with a full accept queue, so Linux drops further SYNs.

    Yields the port, which is ``port`` unless that is 0.
    """
    with socket.socket() as listener:
        listener.bind((address, port))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = [socket.socket() for _ in range(3)]
        for client in queued:
            client.setblocking(False)
            client.connect_ex((address, port))
        time.sleep(0.05)
        try:
            yield port
        finally:
            for client in queued:
                client.close()


# Requests and headers


def test_send_posts_signed_body_unchanged(start_server: StartServer) -> None:
    # given
    server = start_server(respond(body=b'{"products": []}'))
    body = '{"skus":["milk-001"],"store_id":"store-1","name":"Молоко"}'.encode()
    headers = signature_headers(secret="s3cret", body=body)

    # when
    response = send(
        "POST", server.url("/check"), policy=LOCAL_POLICY, body=body, headers=headers, timeout=1
    )

    # then
    assert response.status_code == 200
    assert response.body == b'{"products": []}'
    assert response.headers["content-length"] == "16"
    assert response.elapsed_ms > 0
    [received] = server.log.requests
    assert received.method == "POST"
    assert received.body == body
    assert received.headers["content-type"] == "application/json"
    assert verify_signature(
        secret="s3cret",
        body=received.body,
        signature=received.headers[SIGNATURE_HEADER.lower()],
        timestamp=received.headers[TIMESTAMP_HEADER.lower()],
    )


def test_send_sets_user_agent_and_host(start_server: StartServer) -> None:
    # given
    server = start_server(respond())
    resolver = ScriptedResolver(["127.0.0.1"])

    # when: the caller's Host and User-Agent must not replace the checked values
    send(
        "GET",
        server.url("/cart", host="merchant.test"),
        policy=LOCAL_POLICY,
        headers={"Host": "evil.test", "user-agent": "spoofed"},
        timeout=1,
        resolver=resolver,
    )

    # then
    [received] = server.log.requests
    assert received.headers["host"] == f"merchant.test:{server.port}"
    assert received.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("Vizochok-Webhooks/")
    assert received.headers["accept-encoding"] == "identity"
    assert "cookie" not in received.headers
    assert "authorization" not in received.headers


def test_send_get_puts_params_in_query(start_server: StartServer) -> None:
    # given
    server = start_server(respond())

    # when
    response = send(
        "get",
        server.url("/cart?v=2"),
        policy=LOCAL_POLICY,
        params={"store_id": "store-1", "session_id": "user 123"},
        timeout=1,
    )

    # then
    [received] = server.log.requests
    assert received.method == "GET"
    assert received.path == "/cart?v=2&store_id=store-1&session_id=user+123"
    assert received.body == b""
    assert response.url == f"http://127.0.0.1:{server.port}/cart"


def test_send_rejects_header_with_line_break(start_server: StartServer) -> None:
    # given
    server = start_server(respond())

    # when
    with pytest.raises(ValueError, match="return character"):
        send(
            "GET",
            server.url(),
            policy=LOCAL_POLICY,
            headers={"X-Store": "store-1\r\nX-Injected: 1"},
            timeout=1,
        )

    # then
    assert server.log.connections == 0


def test_pinned_request_brackets_ipv6_address() -> None:
    # given: an IPv6 address, checked without connecting because tests reach only 127.0.0.1
    validated = validate_url(
        "https://shop.example:8443/cart?v=2",
        policy=EgressPolicy(),
        resolver=ScriptedResolver(["2001:4860:4860::8888"]),
    )

    # when
    prepared = egress._prepare_request(
        "post", validated, validated.addresses[0], b"{}", None, {"store_id": "store-1"}
    )

    # then
    assert prepared.method == "POST"
    assert prepared.url == "https://[2001:4860:4860::8888]:8443/cart?v=2&store_id=store-1"
    assert prepared.headers["Host"] == "shop.example:8443"
    assert egress._server_name(prepared) == "shop.example"


def test_server_name_strips_port_from_ipv6_host() -> None:
    prepared = requests.Request(
        "GET", "https://[2001:4860:4860::8888]/", headers={"Host": "[2001:4860:4860::8888]:8443"}
    ).prepare()

    assert egress._server_name(prepared) == "2001:4860:4860::8888"


def test_send_rejects_non_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        send("GET", "https://public.test/", policy=EgressPolicy(), timeout=0)


# Address pinning and URL checks at send time


def test_send_connects_to_resolved_address(start_server: StartServer) -> None:
    # given
    server = start_server(respond())
    resolver = ScriptedResolver(["127.0.0.1"])

    # when
    response = send(
        "GET",
        server.url("/cart?session_id=secret-session", host="Merchant.Test."),
        policy=LOCAL_POLICY,
        timeout=1,
        resolver=resolver,
    )

    # then
    assert resolver.questions == [("merchant.test", server.port)]
    [received] = server.log.requests
    assert received.client_address[0] == "127.0.0.1"
    assert received.headers["host"] == f"merchant.test:{server.port}"
    assert received.path == "/cart?session_id=secret-session"
    assert response.url == f"http://merchant.test:{server.port}/cart"


def test_send_resolves_once_under_dns_rebinding(start_server: StartServer) -> None:
    # given: a name that resolves to a loopback address first and to a private one later
    server = start_server(respond())
    resolver = ScriptedResolver(["127.0.0.1"], ["10.0.0.1"])
    url = server.url("/hook", host="rebind.test")

    # when
    first = send("GET", url, policy=LOCAL_POLICY, timeout=1, resolver=resolver)
    with pytest.raises(UnsafeURLError) as second:
        send("GET", url, policy=LOCAL_POLICY, timeout=1, resolver=resolver)

    # then: each request resolved once and connected only to the address it checked
    assert first.status_code == 200
    assert second.value.code == EgressErrorCode.ADDRESS_NOT_ALLOWED
    assert len(resolver.questions) == 2
    assert len(server.log.requests) == 1
    assert server.log.connections == 1


def test_send_rejects_mixed_answer_before_connecting(start_server: StartServer) -> None:
    # given
    server = start_server(respond())
    resolver = ScriptedResolver(["127.0.0.1", "10.0.0.1"])

    # when
    with pytest.raises(UnsafeURLError) as raised:
        send(
            "GET",
            server.url(host="mixed.test"),
            policy=LOCAL_POLICY,
            timeout=1,
            resolver=resolver,
        )

    # then
    assert raised.value.code == EgressErrorCode.ADDRESS_NOT_ALLOWED
    assert server.log.connections == 0


def test_send_rejects_loopback_without_allowlist(start_server: StartServer) -> None:
    # given
    server = start_server(respond())

    # when
    with pytest.raises(UnsafeURLError) as raised:
        send("POST", server.url(), policy=EgressPolicy(allow_http=True), body=b"{}", timeout=1)

    # then
    assert raised.value.code == EgressErrorCode.ADDRESS_NOT_ALLOWED
    assert server.log.connections == 0


def test_send_rejects_http_when_not_allowed(start_server: StartServer) -> None:
    # given
    server = start_server(respond())
    policy = EgressPolicy.from_settings(allowed_networks=["127.0.0.0/8"])

    # when
    with pytest.raises(UnsafeURLError) as raised:
        send("GET", server.url(), policy=policy, timeout=1)

    # then
    assert raised.value.code == EgressErrorCode.SCHEME_NOT_ALLOWED
    assert server.log.connections == 0


def test_send_dns_failure_is_connection_error() -> None:
    # given
    def failing_resolver(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send(
            "GET",
            "https://shop.example/",
            policy=EgressPolicy(),
            timeout=1,
            resolver=failing_resolver,
        )

    # then
    assert raised.value.code == EgressErrorCode.DNS_FAILED
    assert isinstance(raised.value.__cause__, UnsafeURLError)


def test_send_counts_dns_time_against_timeout(start_server: StartServer) -> None:
    # given
    server = start_server(respond())

    def slow_resolver(host: str, port: int) -> Sequence[str]:
        time.sleep(SHORT_TIMEOUT + 0.05)
        return ["127.0.0.1"]

    # when
    with pytest.raises(EgressTimeout) as raised:
        send(
            "GET",
            server.url(host="slow-dns.test"),
            policy=LOCAL_POLICY,
            timeout=SHORT_TIMEOUT,
            resolver=slow_resolver,
        )

    # then
    assert raised.value.code == EgressErrorCode.TIMEOUT
    assert server.log.connections == 0


def test_send_ignores_proxy_environment(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: proxy variables that point at a closed port
    server = start_server(respond())
    proxy = f"http://127.0.0.1:{unused_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    # when
    response = send("GET", server.url(), policy=LOCAL_POLICY, timeout=1)

    # then
    assert response.status_code == 200
    assert len(server.log.requests) == 1


# Responses: redirects, errors, size limits


def test_send_returns_redirect_without_following(start_server: StartServer) -> None:
    # given
    target = start_server(respond())
    redirecting = start_server(respond(301, b"", {"Location": target.url("/target")}))

    # when
    response = send("POST", redirecting.url(), policy=LOCAL_POLICY, body=b"{}", timeout=1)

    # then
    assert response.status_code == 301
    assert response.headers["Location"] == target.url("/target")
    assert target.log.connections == 0
    assert target.log.requests == []


def test_send_returns_server_error_without_retry(start_server: StartServer) -> None:
    # given
    server = start_server(respond(503, b'{"error": "maintenance"}'))

    # when
    response = send("POST", server.url(), policy=LOCAL_POLICY, body=b"{}", timeout=1)

    # then
    assert response.status_code == 503
    assert response.body == b'{"error": "maintenance"}'
    assert len(server.log.requests) == 1


def test_send_accepts_body_at_limit(start_server: StartServer) -> None:
    # given
    server = start_server(respond(body=b"a" * 1000))
    policy = EgressPolicy.from_settings(
        allow_http=True, allowed_networks=["127.0.0.0/8"], max_response_bytes=1000
    )

    # when
    response = send("GET", server.url(), policy=policy, timeout=1)

    # then
    assert response.body == b"a" * 1000


def test_send_rejects_declared_length_over_limit(start_server: StartServer) -> None:
    # given
    server = start_server(respond(body=b"a" * MIB))

    # when
    with pytest.raises(ResponseTooLarge) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=1)

    # then
    assert raised.value.code == EgressErrorCode.RESPONSE_TOO_LARGE
    assert raised.value.limit == 256 * 1024
    assert raised.value.bytes_read == 0
    assert raised.value.status_code == 200


def test_send_stops_reading_at_limit(start_server: StartServer) -> None:
    # given: 1 MiB without Content-Length, so only counting can catch it
    server = start_server(stream_body(MIB))

    # when
    with pytest.raises(ResponseTooLarge) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=2)

    # then: we read one byte past the limit, and the server's writes failed after we left
    assert raised.value.bytes_read == 256 * 1024 + 1
    assert server.log.handlers_done.wait(timeout=2)
    assert server.log.bytes_sent < MIB
    [error] = server.log.handler_errors
    assert isinstance(error, ConnectionResetError | BrokenPipeError)


def test_send_limits_decompressed_size(start_server: StartServer) -> None:
    # given: 16 MiB of zeros compressed to a few KiB, sent although we asked for identity
    compressed = gzip.compress(b"\0" * 16 * MIB)
    server = start_server(respond(body=compressed, headers={"Content-Encoding": "gzip"}))

    # when
    with pytest.raises(ResponseTooLarge) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=1)

    # then
    assert len(compressed) < 256 * 1024
    assert raised.value.bytes_read == 256 * 1024 + 1


# Timeouts


def test_send_times_out_on_silent_server(start_server: StartServer) -> None:
    # given
    server = start_server(lambda handler: time.sleep(1.0))

    # when
    started = time.monotonic()
    with pytest.raises(EgressTimeout) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=SHORT_TIMEOUT)
    elapsed = time.monotonic() - started

    # then
    assert raised.value.code == EgressErrorCode.TIMEOUT
    assert SHORT_TIMEOUT <= elapsed < SHORT_TIMEOUT + 0.2


def test_send_deadline_stops_dribbled_body(start_server: StartServer) -> None:
    # given: each byte arrives well within the read timeout, but the whole body would not
    head = b"HTTP/1.0 200 OK\r\nContent-Length: 40\r\n\r\n"
    server = start_server(dribble(b"x" * 40, head=head))

    # when
    started = time.monotonic()
    with pytest.raises(EgressTimeout) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=SHORT_TIMEOUT)
    elapsed = time.monotonic() - started

    # then
    assert raised.value.code == EgressErrorCode.TIMEOUT
    assert elapsed < SHORT_TIMEOUT + 0.2


def test_send_deadline_stops_close_delimited_body(start_server: StartServer) -> None:
    # given: without Content-Length, a shut-down socket looks like the end of the body
    server = start_server(dribble(b"x" * 40, head=b"HTTP/1.0 200 OK\r\n\r\n"))

    # when
    with pytest.raises(EgressTimeout) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=SHORT_TIMEOUT)

    # then
    assert raised.value.code == EgressErrorCode.TIMEOUT


def test_send_deadline_stops_dribbled_headers(start_server: StartServer) -> None:
    # given
    server = start_server(dribble(b"a" * 40, head=b"HTTP/1.0 200 OK\r\nX-Padding: "))

    # when
    started = time.monotonic()
    with pytest.raises(EgressTimeout) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=SHORT_TIMEOUT)
    elapsed = time.monotonic() - started

    # then
    assert raised.value.code == EgressErrorCode.TIMEOUT
    assert elapsed < SHORT_TIMEOUT + 0.2


def test_send_connect_timeout_on_full_backlog() -> None:
    # given: a listener whose accept queue is full, so Linux drops further SYNs
    policy = EgressPolicy.from_settings(
        allow_http=True, allowed_networks=["127.0.0.0/8"], connect_timeout=0.2
    )
    with full_backlog("127.0.0.1") as port:
        # when
        started = time.monotonic()
        with pytest.raises(EgressTimeout) as raised:
            send("GET", f"http://127.0.0.1:{port}/", policy=policy, timeout=1)
        elapsed = time.monotonic() - started

    # then
    assert raised.value.code == EgressErrorCode.CONNECT_TIMEOUT
    assert elapsed < 0.5


# Connection failures


def test_send_reports_connection_refused() -> None:
    with pytest.raises(EgressConnectionError) as raised:
        send("GET", f"http://127.0.0.1:{unused_port()}/", policy=LOCAL_POLICY, timeout=1)

    assert raised.value.code == EgressErrorCode.CONNECTION_REFUSED


def test_send_tries_next_address_when_refused(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    # given: the host's first address refuses connections, and the second one serves
    caplog.set_level(logging.DEBUG, logger="webhooks.egress")
    server = start_server(respond(201))
    resolver = ScriptedResolver(["127.0.0.2", "127.0.0.1"])

    # when
    response = send(
        "POST",
        f"http://merchant.test:{server.port}/cart",
        policy=LOCAL_POLICY,
        body=b"{}",
        timeout=1,
        resolver=resolver,
    )

    # then: one lookup, and the request reached the server once
    assert response.status_code == 201
    assert len(resolver.questions) == 1
    assert server.log.connections == 1
    failed, completed = caplog.records
    assert failed.getMessage() == "webhooks.egress.failed"
    assert (failed.code, failed.address, failed.attempt) == ("connection_refused", "127.0.0.2", 1)
    assert completed.getMessage() == "webhooks.egress.completed"
    assert completed.address == "127.0.0.1"


def test_send_tries_next_address_after_connect_timeout(start_server: StartServer) -> None:
    # given: the first address drops connection attempts (full accept queue), the second serves
    policy = EgressPolicy.from_settings(
        allow_http=True, allowed_networks=["127.0.0.0/8"], connect_timeout=0.2
    )
    server = start_server(respond(200))
    with full_backlog("127.0.0.2", server.port):
        # when
        response = send(
            "GET",
            f"http://merchant.test:{server.port}/",
            policy=policy,
            timeout=2,
            resolver=ScriptedResolver(["127.0.0.2", "127.0.0.1"]),
        )

    # then
    assert response.status_code == 200
    assert server.log.connections == 1


def test_send_stops_trying_addresses_at_deadline(caplog: pytest.LogCaptureFixture) -> None:
    # given: the first address drops connection attempts until the whole timeout is gone
    caplog.set_level(logging.DEBUG, logger="webhooks.egress")
    policy = EgressPolicy.from_settings(
        allow_http=True, allowed_networks=["127.0.0.0/8"], connect_timeout=0.3
    )
    with full_backlog("127.0.0.2") as port, socket.socket() as second:
        second.bind(("127.0.0.3", port))
        second.listen(1)
        second.setblocking(False)

        # when
        with pytest.raises(EgressTimeout):
            send(
                "GET",
                f"http://merchant.test:{port}/",
                policy=policy,
                timeout=0.3,
                resolver=ScriptedResolver(["127.0.0.2", "127.0.0.3"]),
            )

        # then: one attempt, logged with its own address, and none at the second address
        assert [(record.address, record.attempt) for record in caplog.records] == [("127.0.0.2", 1)]
        with pytest.raises(BlockingIOError):
            second.accept()


def test_send_reports_last_address_failure() -> None:
    # given: no address of the host accepts connections
    resolver = ScriptedResolver(["127.0.0.2", "127.0.0.3"])

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send(
            "GET",
            f"http://merchant.test:{unused_port()}/",
            policy=LOCAL_POLICY,
            timeout=1,
            resolver=resolver,
        )

    # then
    assert raised.value.code == EgressErrorCode.CONNECTION_REFUSED
    assert isinstance(raised.value.__cause__, requests.exceptions.ConnectionError)


def test_send_keeps_failure_after_connecting(start_server: StartServer) -> None:
    # given: the first address accepts the connection and then resets it, and a listener on
    # the second address would accept a second attempt
    server = start_server(reset_connection)
    with socket.socket() as second:
        second.bind(("127.0.0.2", server.port))
        second.listen(1)
        second.setblocking(False)

        # when
        with pytest.raises(EgressConnectionError) as raised:
            send(
                "POST",
                f"http://merchant.test:{server.port}/cart",
                policy=LOCAL_POLICY,
                body=b"{}",
                timeout=1,
                resolver=ScriptedResolver(["127.0.0.1", "127.0.0.2"]),
            )

        # then: the request may have reached the server, so no other address was tried
        assert raised.value.code == EgressErrorCode.CONNECTION_RESET
        assert server.log.connections == 1
        with pytest.raises(BlockingIOError):
            second.accept()


def test_send_reports_connection_reset(start_server: StartServer) -> None:
    # given
    server = start_server(reset_connection)

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send("POST", server.url(), policy=LOCAL_POLICY, body=b"{}", timeout=1)

    # then: one attempt only, since the caller decides about retries
    assert raised.value.code == EgressErrorCode.CONNECTION_RESET
    assert server.log.connections == 1


def test_send_reports_malformed_status_line(start_server: StartServer) -> None:
    # given
    server = start_server(lambda handler: handler.send_bytes(b"NOT HTTP\r\n\r\n"))

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=1)

    # then
    assert raised.value.code == EgressErrorCode.PROTOCOL_ERROR


def test_send_reports_truncated_body(start_server: StartServer) -> None:
    # given
    server = start_server(
        lambda handler: handler.send_bytes(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    )

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=1)

    # then
    assert raised.value.code == EgressErrorCode.PROTOCOL_ERROR
    assert "IncompleteRead" in raised.value.message


def test_send_reports_conflicting_content_lengths(start_server: StartServer) -> None:
    # given: two Content-Length headers that disagree, which urllib3 rejects
    server = start_server(
        lambda handler: handler.send_bytes(
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nContent-Length: 5\r\n\r\n{}"
        )
    )

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send("POST", server.url(), policy=LOCAL_POLICY, body=b"{}", timeout=1)

    # then
    assert raised.value.code == EgressErrorCode.PROTOCOL_ERROR
    assert raised.value.message == (
        f"response from {server.url()} was malformed or broke off: InvalidHeader("
        "'Content-Length contained multiple unmatching values (2, 5)')"
    )
    assert server.log.connections == 1


# Connection reuse and concurrency


def test_send_skips_early_hints_on_reused_connection(start_server: StartServer) -> None:
    # given: a 103 Early Hints, then, after a pause, the final response naming the path
    def early_hints_then_path(handler: RecordingHandler) -> None:
        handler.send_bytes(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n")
        time.sleep(0.2)
        body = handler.path.encode()
        handler.send_bytes(
            b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    server = start_server(early_hints_then_path, protocol_version="HTTP/1.1")

    # when
    first = send("GET", server.url("/first"), policy=LOCAL_POLICY, timeout=2)
    second = send("GET", server.url("/second"), policy=LOCAL_POLICY, timeout=2)

    # then: each request gets its own final response over the one kept-alive connection
    assert first.status_code == 200
    assert first.body == b"/first"
    assert second.status_code == 200
    assert second.body == b"/second"
    assert server.log.connections == 1


def test_send_rejects_malformed_header_line(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    # given: a header line without a colon, after which the other headers are not parsed
    server = start_server(
        lambda handler: handler.send_bytes(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nnot a header\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        ),
        protocol_version="HTTP/1.1",
    )
    # settings.py gives the root logger, which urllib3's records reach, the level WARNING.
    caplog.set_level(logging.WARNING)

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send(
            "GET",
            server.url("/cart?token=merchant-token"),
            policy=LOCAL_POLICY,
            params={"session_id": "shopper-1"},
            timeout=2,
        )

    # then: a protocol error at once, not a body read until the timeout
    assert raised.value.code == EgressErrorCode.PROTOCOL_ERROR
    assert "the response headers are malformed" in raised.value.message
    # urllib3 would log a warning with the whole URL, query string included.
    assert [record for record in caplog.records if record.name.startswith("urllib3")] == []
    assert "merchant-token" not in caplog.text
    assert "shopper-1" not in caplog.text


def test_send_repairs_space_before_colon(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    # given: whitespace before a colon, which stops the parser; the headers after it follow
    server = start_server(
        lambda handler: handler.send_bytes(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
            b"Access-Control-Expose-Headers : X-Page\r\nContent-Type: application/json\r\n"
            b"\r\n{}"
        ),
        protocol_version="HTTP/1.1",
    )
    caplog.set_level(logging.WARNING)

    # when
    response = send("GET", server.url("/cart?token=merchant-token"), policy=LOCAL_POLICY, timeout=2)

    # then: both headers are kept, as a proxy that removes the whitespace would pass them on
    assert response.status_code == 200
    assert response.body == b"{}"
    assert response.headers["Access-Control-Expose-Headers"] == "X-Page"
    assert response.headers["Content-Type"] == "application/json"
    assert [record for record in caplog.records if record.name.startswith("urllib3")] == []


def test_repair_keeps_latin1_header_values(start_server: StartServer) -> None:
    # given: a value with the byte 0x85, which str.splitlines took for a line end, so the
    # repair split the value and rejected the response as malformed
    server = start_server(
        lambda handler: handler.send_bytes(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
            b"Vary : Origin\r\nX-Title: caf\x85 latte\r\nContent-Type: application/json\r\n"
            b"\r\n{}"
        ),
        protocol_version="HTTP/1.1",
    )

    # when
    response = send("GET", server.url(), policy=LOCAL_POLICY, timeout=2)

    # then: http.client decodes header bytes as latin-1
    assert response.status_code == 200
    assert response.body == b"{}"
    assert response.headers["Vary"] == "Origin"
    assert response.headers["X-Title"] == "caf\x85 latte"
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "framing", [b"Content-Length: 2", b"Transfer-Encoding: chunked", b"Connection: close"]
)
def test_send_rejects_framing_after_space_before_colon(
    start_server: StartServer, framing: bytes
) -> None:
    # given: a header that http.client has already missed when it decided the framing
    server = start_server(
        lambda handler: handler.send_bytes(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nVary : Origin\r\n"
            + framing
            + b"\r\n\r\n{}"
        ),
        protocol_version="HTTP/1.1",
    )

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=2)

    # then
    assert raised.value.code == EgressErrorCode.PROTOCOL_ERROR
    assert "the response headers are malformed" in raised.value.message


def test_send_rejects_unrequested_protocol_switch(start_server: StartServer) -> None:
    # given
    server = start_server(
        lambda handler: handler.send_bytes(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        ),
        protocol_version="HTTP/1.1",
    )

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=1)

    # then
    assert raised.value.code == EgressErrorCode.PROTOCOL_ERROR
    assert "HTTP 101" in raised.value.message


def test_send_reuses_connection_for_same_address(start_server: StartServer) -> None:
    # given
    server = start_server(respond(), protocol_version="HTTP/1.1")
    resolver = ScriptedResolver(["127.0.0.1"])
    url = server.url(host="merchant.test")

    # when
    send("GET", url, policy=LOCAL_POLICY, timeout=1, resolver=resolver)
    send("GET", url, policy=LOCAL_POLICY, timeout=1, resolver=resolver)

    # then
    first, second = server.log.requests
    assert server.log.connections == 1
    assert first.client_address == second.client_address


def test_send_never_returns_cookies(start_server: StartServer) -> None:
    # given
    server = start_server(respond(headers={"Set-Cookie": "session=abc; Path=/"}))

    # when
    send("GET", server.url(), policy=LOCAL_POLICY, timeout=1)
    send("GET", server.url(), policy=LOCAL_POLICY, timeout=1)

    # then
    assert all("cookie" not in received.headers for received in server.log.requests)


def test_send_from_many_threads(start_server: StartServer) -> None:
    # given
    server = start_server(echo_path, protocol_version="HTTP/1.1")
    paths = [f"/worker-{number}" for number in range(32)]

    def fetch(path: str) -> bytes:
        return send("GET", server.url(path), policy=LOCAL_POLICY, timeout=10).body

    # when: iterating the map re-raises any error from a worker thread here
    with ThreadPoolExecutor(max_workers=8) as executor:
        bodies = list(executor.map(fetch, paths))

    # then
    assert bodies == [path.encode() for path in paths]
    assert len(server.log.requests) == 32


def held_at(barrier: threading.Barrier) -> Callable[[RecordingHandler], None]:
    """Return a behaviour that responds only once ``barrier.parties`` requests are open."""

    def behaviour(handler: RecordingHandler) -> None:
        barrier.wait(timeout=10)
        respond()(handler)

    return behaviour


def send_at_once(url: str, calls: int) -> None:
    with ThreadPoolExecutor(max_workers=calls) as executor:
        responses = list(
            executor.map(lambda _: send("GET", url, policy=LOCAL_POLICY, timeout=10), range(calls))
        )
    assert [response.status_code for response in responses] == [200] * calls


def test_send_reuses_16_concurrent_connections(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    # given: 16 calls open at once, as from the WebSocket worker threads of one process
    calls = 16
    server = start_server(held_at(threading.Barrier(calls)), protocol_version="HTTP/1.1")
    send_at_once(server.url(), calls)

    # when
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        send_at_once(server.url(), calls)

    # then: the second round finds all 16 connections of the first in the pool
    assert len(server.log.requests) == 2 * calls
    assert server.log.connections == calls
    assert [record.getMessage() for record in caplog.records] == []


def test_send_keeps_pools_of_12_merchants(start_server: StartServer) -> None:
    # given: one connection to each of 12 merchants
    servers = [start_server(respond(), protocol_version="HTTP/1.1") for _ in range(12)]
    for server in servers:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=1)

    # when
    for server in servers:
        send("GET", server.url(), policy=LOCAL_POLICY, timeout=1)

    # then
    assert [server.log.connections for server in servers] == [1] * 12
    assert [len(server.log.requests) for server in servers] == [2] * 12


# HTTPS with a pinned address


def _merchant_https_policy(certificates: CertificateFiles) -> EgressPolicy:
    return EgressPolicy.from_settings(
        allowed_networks=["127.0.0.0/8"], ca_bundle=str(certificates.ca_file)
    )


def test_https_verifies_certificate_for_url_host(
    start_server: StartServer, certificates: CertificateFiles
) -> None:
    # given
    server = start_server(respond(), tls=certificates.server_context(name="merchant.test"))
    resolver = ScriptedResolver(["127.0.0.1"])

    # when
    response = send(
        "POST",
        server.url("/hook", host="merchant.test"),
        policy=_merchant_https_policy(certificates),
        body=b"{}",
        timeout=1,
        resolver=resolver,
    )

    # then
    assert response.status_code == 200
    assert server.log.server_names == ["merchant.test"]
    [received] = server.log.requests
    assert received.client_address[0] == "127.0.0.1"
    assert received.headers["host"] == f"merchant.test:{server.port}"


def test_https_rejects_certificate_for_other_host(
    start_server: StartServer, certificates: CertificateFiles
) -> None:
    # given: the server presents a valid certificate, but for other.test
    server = start_server(respond(), tls=certificates.server_context(name="other.test"))

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send(
            "POST",
            server.url("/hook", host="merchant.test"),
            policy=_merchant_https_policy(certificates),
            body=b"{}",
            timeout=1,
            resolver=ScriptedResolver(["127.0.0.1"]),
        )

    # then
    assert raised.value.code == EgressErrorCode.TLS_ERROR
    assert "Hostname mismatch" in raised.value.message
    assert server.log.server_names == ["merchant.test"]
    assert server.log.requests == []


def test_https_rejects_untrusted_certificate_authority(
    start_server: StartServer, certificates: CertificateFiles
) -> None:
    # given: the default trust store, which does not contain the test CA
    server = start_server(respond(), tls=certificates.server_context(name="merchant.test"))

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send(
            "GET",
            server.url(host="merchant.test"),
            policy=EgressPolicy.from_settings(allowed_networks=["127.0.0.0/8"]),
            timeout=1,
            resolver=ScriptedResolver(["127.0.0.1"]),
        )

    # then
    assert raised.value.code == EgressErrorCode.TLS_ERROR
    assert server.log.requests == []


def test_https_ip_literal_is_checked_against_certificate(
    start_server: StartServer, certificates: CertificateFiles
) -> None:
    # given
    server = start_server(respond(), tls=certificates.server_context(name="merchant.test"))

    # when
    with pytest.raises(EgressConnectionError) as raised:
        send("GET", server.url(), policy=_merchant_https_policy(certificates), timeout=1)

    # then
    assert raised.value.code == EgressErrorCode.TLS_ERROR
    assert "IP address mismatch" in raised.value.message
    assert server.log.requests == []


# Logging


def test_send_logs_blocked_url_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    # given
    caplog.set_level(logging.DEBUG, logger="webhooks.egress")

    # when
    with pytest.raises(UnsafeURLError):
        send(
            "GET",
            "https://admin:hunter2@10.0.0.1/hook?token=abc123",
            policy=EgressPolicy(),
            timeout=1,
        )

    # then
    [record] = caplog.records
    assert record.getMessage() == "webhooks.egress.blocked"
    assert record.levelno == logging.WARNING
    assert record.code == "credentials_not_allowed"
    assert record.url == "https://10.0.0.1/hook"
    assert "hunter2" not in str(record.__dict__)
    assert "abc123" not in str(record.__dict__)


def test_send_logs_blocked_address(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="webhooks.egress")

    with pytest.raises(UnsafeURLError):
        send("GET", "https://169.254.169.254/latest?x=1", policy=EgressPolicy(), timeout=1)

    [record] = caplog.records
    assert record.code == "address_not_allowed"
    assert record.address == "169.254.169.254"
    assert record.url == "https://169.254.169.254/latest"


def test_send_logs_failure_and_completion(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    caplog.set_level(logging.DEBUG, logger="webhooks.egress")
    server = start_server(respond(201))

    # when
    with pytest.raises(EgressConnectionError):
        send("GET", f"http://127.0.0.1:{unused_port()}/x?q=1", policy=LOCAL_POLICY, timeout=1)
    send("GET", server.url("/cart?session_id=user-123"), policy=LOCAL_POLICY, timeout=1)

    # then
    failed, completed = caplog.records
    assert failed.getMessage() == "webhooks.egress.failed"
    assert failed.code == "connection_refused"
    assert failed.url.endswith("/x")
    assert completed.getMessage() == "webhooks.egress.completed"
    assert completed.status_code == 201
    assert completed.url == f"http://127.0.0.1:{server.port}/cart"
    assert "user-123" not in str(completed.__dict__)


# Settings


def test_policy_from_django_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # given: a stand-in for django.conf, so the test needs no configured Django
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("")
    settings = types.SimpleNamespace(
        WEBHOOK_ALLOW_HTTP=True,
        WEBHOOK_ALLOWED_NETWORKS=["127.0.0.0/8"],
        WEBHOOK_CONNECT_TIMEOUT=0.5,
        WEBHOOK_MAX_RESPONSE_BYTES=4096,
        WEBHOOK_CA_BUNDLE=str(ca_file),
    )
    monkeypatch.setitem(sys.modules, "django.conf", types.SimpleNamespace(settings=settings))

    # when
    policy = policy_from_django_settings()

    # then
    assert policy == EgressPolicy.from_settings(
        allow_http=True,
        allowed_networks=["127.0.0.0/8"],
        connect_timeout=0.5,
        max_response_bytes=4096,
        ca_bundle=str(ca_file),
    )


def test_policy_from_django_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, "django.conf", types.SimpleNamespace(settings=settings))

    assert policy_from_django_settings() == EgressPolicy()


def test_egress_module_imports_without_django() -> None:
    code = "import sys, webhooks.egress, webhooks.signing; print('django' in sys.modules)"

    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        check=True,
        capture_output=True,
        text=True,
    )

    assert completed.stdout.strip() == "False"
