"""Signature checks over real HTTP requests to a merchant on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest

from merchant.server import MerchantServer
from tests.merchant.client import MerchantClient, sign
from tests.merchant.sample_data import SECRET, SESSION_ID, STORE_ID, add_payload

PRODUCTS_BODY = json.dumps({"skus": ["milk-001"], "store_id": STORE_ID}).encode()


def test_valid_signature_accepted(client: MerchantClient) -> None:
    response = client.request("POST", "/vizochok/products", PRODUCTS_BODY)

    assert response.status == 200
    assert response.json()["products"][0]["sku"] == "milk-001"


def test_raw_body_verified_not_reserialized(client: MerchantClient) -> None:
    # given: unusual spacing and key order, which re-serializing would change
    body = b'{ "store_id" :"store-1",\n  "skus":[ "milk-001" ] }'

    # when
    response = client.request("POST", "/vizochok/products", body)

    # then
    assert response.status == 200
    assert len(response.json()["products"]) == 1


def test_tampered_body_rejected(client: MerchantClient, merchant: MerchantServer) -> None:
    # given: the signature covers a quantity of 1, the body contains 2
    signed = json.dumps(add_payload("milk-001", 1)).encode()
    sent = json.dumps(add_payload("milk-001", 2)).encode()

    # when
    response = client.request("POST", "/vizochok/cart", sent, signed_body=signed)

    # then
    assert response.status == 401
    assert response.json() == {"error": "invalid_signature"}
    assert merchant.store.cart_items(STORE_ID, SESSION_ID) == []


def test_upper_case_signature_rejected(client: MerchantClient, merchant: MerchantServer) -> None:
    # given: the right HMAC, but not in the lower-case form that Vizochok sends
    timestamp = int(time.time())
    body = json.dumps(add_payload("milk-001", 1)).encode()
    signature = sign(SECRET, timestamp, body).upper()

    # when
    response = client.request(
        "POST",
        "/vizochok/cart",
        body,
        signed=False,
        headers={"X-VIZOCHOK-Timestamp": str(timestamp), "X-VIZOCHOK-Signature": signature},
    )

    # then
    assert response.status == 401
    assert response.json() == {"error": "invalid_signature"}
    assert merchant.store.cart_items(STORE_ID, SESSION_ID) == []


def test_wrong_secret_rejected(client: MerchantClient) -> None:
    response = client.request("POST", "/vizochok/products", PRODUCTS_BODY, secret="whsec_wrong")

    assert response.status == 401
    assert response.json() == {"error": "invalid_signature"}


@pytest.mark.parametrize("offset", [-301, 301])
def test_stale_timestamp_rejected(client: MerchantClient, offset: int) -> None:
    timestamp = int(time.time()) + offset

    response = client.request("POST", "/vizochok/products", PRODUCTS_BODY, timestamp=timestamp)

    assert response.status == 401
    assert response.json() == {"error": "stale_timestamp"}


@pytest.mark.parametrize("offset", [-290, 290])
def test_skewed_timestamp_within_window_accepted(client: MerchantClient, offset: int) -> None:
    timestamp = int(time.time()) + offset

    response = client.request("POST", "/vizochok/products", PRODUCTS_BODY, timestamp=timestamp)

    assert response.status == 200


def test_missing_headers_rejected(client: MerchantClient) -> None:
    response = client.request("POST", "/vizochok/products", PRODUCTS_BODY, signed=False)

    assert response.status == 401
    assert response.json() == {"error": "missing_signature"}


def test_missing_timestamp_rejected(client: MerchantClient) -> None:
    timestamp = int(time.time())
    headers = {"X-VIZOCHOK-Signature": sign(SECRET, timestamp, PRODUCTS_BODY)}

    response = client.request(
        "POST", "/vizochok/products", PRODUCTS_BODY, signed=False, headers=headers
    )

    assert response.status == 401
    assert response.json() == {"error": "missing_signature"}


def test_missing_signature_rejected(client: MerchantClient) -> None:
    headers = {"X-VIZOCHOK-Timestamp": str(int(time.time()))}

    response = client.request(
        "POST", "/vizochok/products", PRODUCTS_BODY, signed=False, headers=headers
    )

    assert response.status == 401
    assert response.json() == {"error": "missing_signature"}


def test_header_names_case_insensitive(client: MerchantClient) -> None:
    timestamp = int(time.time())
    headers = {
        "x-vizochok-timestamp": str(timestamp),
        "x-vizochok-signature": sign(SECRET, timestamp, PRODUCTS_BODY),
    }

    response = client.request(
        "POST", "/vizochok/products", PRODUCTS_BODY, signed=False, headers=headers
    )

    assert response.status == 200


def rotation_headers(old_secret: str, next_secret: str, body: bytes) -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "X-VIZOCHOK-Timestamp": str(timestamp),
        "X-VIZOCHOK-Signature": sign(old_secret, timestamp, body),
        "X-VIZOCHOK-Signature-Next": sign(next_secret, timestamp, body),
    }


def test_rotation_accepted_with_old_secret(client: MerchantClient) -> None:
    # given: the merchant still has the current secret, the sender already signs with the next
    headers = rotation_headers(SECRET, "whsec_next", PRODUCTS_BODY)

    response = client.request(
        "POST", "/vizochok/products", PRODUCTS_BODY, signed=False, headers=headers
    )

    assert response.status == 200


def test_rotation_accepted_with_next_secret(
    client: MerchantClient, merchant: MerchantServer
) -> None:
    # given: the merchant switched to the next secret first
    merchant.set_secret("whsec_next")
    headers = rotation_headers(SECRET, "whsec_next", PRODUCTS_BODY)

    response = client.request(
        "POST", "/vizochok/products", PRODUCTS_BODY, signed=False, headers=headers
    )

    assert response.status == 200


def test_rotation_rejected_with_unrelated_secret(
    client: MerchantClient, merchant: MerchantServer
) -> None:
    merchant.set_secret("whsec_unrelated")
    headers = rotation_headers(SECRET, "whsec_next", PRODUCTS_BODY)

    response = client.request(
        "POST", "/vizochok/products", PRODUCTS_BODY, signed=False, headers=headers
    )

    assert response.status == 401
    assert response.json() == {"error": "invalid_signature"}


def test_set_secret_rejects_old_secret(client: MerchantClient, merchant: MerchantServer) -> None:
    merchant.set_secret("whsec_rotated")

    old = client.request("POST", "/vizochok/products", PRODUCTS_BODY)
    new = client.request("POST", "/vizochok/products", PRODUCTS_BODY, secret="whsec_rotated")

    assert old.status == 401
    assert new.status == 200


def test_set_secret_rejects_empty(merchant: MerchantServer) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        merchant.set_secret("")


def test_cart_get_signed_over_empty_body(client: MerchantClient) -> None:
    response = client.cart_get(STORE_ID, SESSION_ID)

    assert response.status == 200


def test_cart_get_signed_over_other_bytes_rejected(client: MerchantClient) -> None:
    response = client.cart_get(STORE_ID, SESSION_ID, signed_body=b"{}")

    assert response.status == 401
    assert response.json() == {"error": "invalid_signature"}


def test_cart_get_unsigned_rejected(client: MerchantClient) -> None:
    response = client.cart_get(STORE_ID, SESSION_ID, signed=False)

    assert response.status == 401
    assert response.json() == {"error": "missing_signature"}


def test_health_needs_no_signature(client: MerchantClient) -> None:
    response = client.request("GET", "/health", signed=False)

    assert response.status == 200
    assert response.json() == {"ok": True}


def test_secret_never_in_response_or_record(
    client: MerchantClient, merchant: MerchantServer
) -> None:
    client.request("POST", "/vizochok/products", PRODUCTS_BODY, secret="whsec_wrong")

    recorded = merchant.requests[-1]
    assert SECRET.encode() not in recorded.body
    assert SECRET not in json.dumps(recorded.response)
