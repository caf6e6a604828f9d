from __future__ import annotations

import http.client
import json
import select
import socket
import time

from merchant.server import MAX_BODY_BYTES, MerchantHTTPServer, MerchantServer
from merchant.store import Store
from tests.merchant.client import MerchantClient, sign
from tests.merchant.sample_data import SECRET


def test_unknown_path_not_found(client: MerchantClient) -> None:
    response = client.request("POST", "/vizochok/orders", b"{}")

    assert response.status == 404
    assert response.json() == {"error": "not_found"}


def test_wrong_method_not_allowed(client: MerchantClient) -> None:
    response = client.request("GET", "/vizochok/products")

    assert response.status == 405
    assert response.json() == {"error": "method_not_allowed"}
    assert response.headers["Allow"] == "POST"


def test_delete_cart_not_allowed(client: MerchantClient) -> None:
    response = client.request("DELETE", "/vizochok/cart")

    assert response.status == 405
    assert response.headers["Allow"] == "GET, POST"


def test_invalid_json_rejected(client: MerchantClient) -> None:
    response = client.request("POST", "/vizochok/cart", b'{"action": "add",')

    assert response.status == 400
    assert response.json() == {"error": "invalid_json"}


def test_invalid_utf8_rejected(client: MerchantClient) -> None:
    response = client.request("POST", "/vizochok/cart", b'{"sku": "\xff"}')

    assert response.status == 400
    assert response.json() == {"error": "invalid_json"}


def test_invalid_json_with_bad_signature_is_401(client: MerchantClient) -> None:
    response = client.request("POST", "/vizochok/cart", b"{", secret="whsec_wrong")

    assert response.status == 401


def test_body_at_limit_accepted(client: MerchantClient) -> None:
    prefix = b'{"store_id": "store-1", "skus": ["milk-001"], "padding": "'
    body = prefix + b"x" * (MAX_BODY_BYTES - len(prefix) - 2) + b'"}'
    assert len(body) == MAX_BODY_BYTES

    response = client.request("POST", "/vizochok/products", body)

    assert response.status == 200


def test_body_over_limit_rejected(client: MerchantClient, merchant: MerchantServer) -> None:
    body = b'{"padding": "' + b"x" * MAX_BODY_BYTES + b'"}'

    response = client.request("POST", "/vizochok/products", body)

    assert response.status == 413
    assert response.json()["error"] == "payload_too_large"
    assert response.headers["Connection"] == "close"
    assert merchant.requests[-1].body == b""


def test_chunked_body_rejected(merchant: MerchantServer) -> None:
    body = json.dumps({"skus": ["milk-001"], "store_id": "store-1"}).encode()
    timestamp = int(time.time())
    # One sendall of the whole request: the server answers 411 without reading the body,
    # and a client that wrote the body in pieces could meet a closed socket half-way.
    request = (
        b"POST /vizochok/products HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\n"
        b"Transfer-Encoding: chunked\r\n"
        + f"X-VIZOCHOK-Timestamp: {timestamp}\r\n".encode()
        + f"X-VIZOCHOK-Signature: {sign(SECRET, timestamp, body)}\r\n\r\n".encode()
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", merchant.port), timeout=5) as connection:
        connection.sendall(request)
        response = http.client.HTTPResponse(connection)
        response.begin()
        status = response.status
        payload = json.loads(response.read())

    assert status == 411
    assert payload["error"] == "length_required"


def test_keep_alive_connection_serves_several_requests(merchant: MerchantServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", merchant.port, timeout=5)
    try:
        statuses = []
        for _ in range(3):
            body = json.dumps({"skus": ["milk-001"], "store_id": "store-1"}).encode()
            timestamp = int(time.time())
            connection.request(
                "POST",
                "/vizochok/products",
                body=body,
                headers={
                    "X-VIZOCHOK-Timestamp": str(timestamp),
                    "X-VIZOCHOK-Signature": sign(SECRET, timestamp, body),
                },
            )
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        connection.close()

    assert statuses == [200, 200, 200]


def test_health_rejects_post(client: MerchantClient) -> None:
    response = client.request("POST", "/health", b"{}", signed=False)

    assert response.status == 405


def test_listener_queues_many_connections() -> None:
    # given: a server that has not started accepting, so every connection waits in its queue
    server = MerchantHTTPServer(("127.0.0.1", 0), store=Store(stock={}), secret=SECRET)
    port = server.server_address[1]
    clients = [socket.socket() for _ in range(32)]
    try:
        # when: 32 shoppers' webhooks connect at once
        for client in clients:
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
        _, writable, _ = select.select([], clients, [], 0.5)

        # then: the kernel completed every handshake, where a queue of 5 would have dropped most
        assert len(writable) == 32
        assert all(client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for client in clients)
    finally:
        for client in clients:
            client.close()
        server.server_close()
