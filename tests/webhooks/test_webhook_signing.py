"""Tests for webhook request signatures, driven by the shared vectors in
signature_vectors.json that verifiers in other languages use as well."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from webhooks.signing import (
    NEXT_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    SignatureFailureReason,
    check_signature,
    compute_signature,
    signature_headers,
    verify_signature,
)

VECTORS = json.loads(Path(__file__).with_name("signature_vectors.json").read_text("utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]
SIGNING_CASES: list[dict[str, Any]] = VECTORS["signing_cases"]


def _body(case: dict[str, Any]) -> bytes:
    return base64.b64decode(case["body_base64"])


@pytest.mark.parametrize(("_case", "vector"), [(case["name"], case) for case in CASES])
def test_verify_signature_matches_vector(_case: str, vector: dict[str, Any]) -> None:
    # when
    accepted = verify_signature(
        secret=vector["secret"],
        body=_body(vector),
        signature=vector["signature"],
        timestamp=vector["timestamp"],
        now=vector["now"],
    )

    # then
    assert accepted is vector["expected"]


@pytest.mark.parametrize(
    ("_case", "vector"), [(case["name"], case) for case in CASES if not case["expected"]]
)
def test_check_signature_reports_vector_reason(_case: str, vector: dict[str, Any]) -> None:
    # when
    with pytest.raises(SignatureError) as raised:
        check_signature(
            secret=vector["secret"],
            body=_body(vector),
            signature=vector["signature"],
            timestamp=vector["timestamp"],
            now=vector["now"],
        )

    # then
    assert raised.value.reason == vector["reason"]


@pytest.mark.parametrize(
    ("_case", "vector"), [(case["name"], case) for case in CASES if case["expected"]]
)
def test_compute_signature_reproduces_vector(_case: str, vector: dict[str, Any]) -> None:
    # when
    signature = compute_signature(
        secret=vector["secret"], timestamp=int(vector["timestamp"]), body=_body(vector)
    )

    # then
    assert signature == vector["signature"]


@pytest.mark.parametrize(("_case", "vector"), [(case["name"], case) for case in SIGNING_CASES])
def test_signature_headers_match_vector(_case: str, vector: dict[str, Any]) -> None:
    # when
    headers = signature_headers(
        secret=vector["secret"],
        body=_body(vector),
        timestamp=vector["timestamp"],
        next_secret=vector["next_secret"],
    )

    # then
    assert headers == vector["headers"]


def test_vector_body_text_matches_bytes() -> None:
    for case in CASES + SIGNING_CASES:
        if case["body"] is not None:
            assert case["body"].encode("utf-8") == _body(case), case["name"]


def test_vectors_cover_every_reason() -> None:
    reasons = {case["reason"] for case in CASES if not case["expected"]}

    assert reasons == {str(reason) for reason in SignatureFailureReason}
    assert VECTORS["reasons_in_check_order"] == [str(reason) for reason in SignatureFailureReason]


def test_valid_vector_matches_openssl(tmp_path: Path) -> None:
    # given: the signed bytes of the valid vector, hashed by a separate HMAC implementation
    vector = next(case for case in CASES if case["name"] == "unicode_body")
    payload = tmp_path / "payload"
    payload.write_bytes(vector["timestamp"].encode() + b"." + _body(vector))

    # when
    completed = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", vector["secret"], "-r", str(payload)],
        check=True,
        capture_output=True,
        text=True,
    )

    # then
    assert "sha256=" + completed.stdout.split()[0] == vector["signature"]


def test_compute_signature_signs_timestamp_dot_body() -> None:
    # given
    body = b'{"skus":["bread-01"],"store_id":"store-1"}'

    # when
    signature = compute_signature(secret="s3cret", timestamp=1700000123, body=body)

    # then
    expected = hmac.new(b"s3cret", b"1700000123." + body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"


def test_compute_signature_rejects_non_integer_timestamp() -> None:
    with pytest.raises(TypeError):
        compute_signature(secret="s", timestamp=1700000000.0, body=b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        compute_signature(secret="s", timestamp=True, body=b"")


def test_compute_signature_rejects_empty_secret() -> None:
    with pytest.raises(ValueError, match="secret is empty"):
        compute_signature(secret="", timestamp=1700000000, body=b"{}")


def test_signature_headers_default_to_current_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    monkeypatch.setattr("webhooks.signing.time.time", lambda: 1700000999.75)

    # when
    headers = signature_headers(secret="s3cret", body=b"{}")

    # then
    assert headers[TIMESTAMP_HEADER] == "1700000999"
    assert headers[SIGNATURE_HEADER] == compute_signature(
        secret="s3cret", timestamp=1700000999, body=b"{}"
    )
    assert NEXT_SIGNATURE_HEADER not in headers


def test_signature_headers_rotation_verifies_with_either_secret() -> None:
    # given
    body = b'{"action":"clear","store_id":"store-1","session_id":"user-123"}'

    # when
    headers = signature_headers(
        secret="old-secret", next_secret="new-secret", body=body, timestamp=1700000000
    )

    # then
    timestamp = headers[TIMESTAMP_HEADER]
    current, upcoming = headers[SIGNATURE_HEADER], headers[NEXT_SIGNATURE_HEADER]
    assert verify_signature(
        secret="old-secret", body=body, signature=current, timestamp=timestamp, now=1700000000
    )
    assert verify_signature(
        secret="new-secret", body=body, signature=upcoming, timestamp=timestamp, now=1700000000
    )
    assert not verify_signature(
        secret="new-secret", body=body, signature=current, timestamp=timestamp, now=1700000000
    )


def test_verify_signature_uses_current_time_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    headers = signature_headers(secret="s3cret", body=b"{}", timestamp=1700000000)
    signature, timestamp = headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]

    # when
    monkeypatch.setattr("webhooks.signing.time.time", lambda: 1700000300.0)
    accepted_at_edge = verify_signature(
        secret="s3cret", body=b"{}", signature=signature, timestamp=timestamp
    )
    monkeypatch.setattr("webhooks.signing.time.time", lambda: 1700000300.5)
    accepted_past_edge = verify_signature(
        secret="s3cret", body=b"{}", signature=signature, timestamp=timestamp
    )

    # then
    assert accepted_at_edge is True
    assert accepted_past_edge is False


def test_verify_signature_honours_custom_tolerance() -> None:
    headers = signature_headers(secret="s3cret", body=b"{}", timestamp=1700000000)

    accepted = verify_signature(
        secret="s3cret",
        body=b"{}",
        signature=headers[SIGNATURE_HEADER],
        timestamp=headers[TIMESTAMP_HEADER],
        tolerance_seconds=10,
        now=1700000011,
    )

    assert accepted is False


@pytest.mark.parametrize(
    ("_case", "signature", "timestamp"),
    [
        ("both_missing", None, None),
        ("whitespace_signature", " ", "1700000000"),
        ("unicode_digits_timestamp", "sha256=" + "0" * 64, "١٧٠٠٠٠٠٠٠٠"),
        ("huge_timestamp", "sha256=" + "0" * 64, "9" * 5000),
        ("negative_timestamp", "sha256=" + "0" * 64, "-1700000000"),
        ("non_ascii_signature", "sha256=" + "ф" * 64, "1700000000"),
        ("signature_with_newline", "sha256=" + "0" * 64 + "\n", "1700000000"),
        ("two_signatures", "sha256=" + "0" * 64 + ",sha256=" + "1" * 64, "1700000000"),
        ("underscore_timestamp", "sha256=" + "0" * 64, "1_700_000_000"),
    ],
)
def test_verify_signature_returns_false_on_bad_headers(
    _case: str, signature: str | None, timestamp: str | None
) -> None:
    accepted = verify_signature(
        secret="s3cret", body=b"{}", signature=signature, timestamp=timestamp, now=1700000000
    )

    assert accepted is False


def test_verify_signature_rejects_empty_secret() -> None:
    # An empty secret would accept signatures that anyone can compute.
    with pytest.raises(ValueError, match="secret is empty"):
        verify_signature(
            secret="", body=b"{}", signature="sha256=" + "0" * 64, timestamp="1700000000"
        )


def test_check_signature_error_message_names_header() -> None:
    with pytest.raises(SignatureError, match="X-VIZOCHOK-Timestamp header is missing"):
        check_signature(secret="s3cret", body=b"{}", signature="sha256=" + "0" * 64, timestamp=None)


DOCS = Path(__file__).resolve().parents[2] / "docs"
# The secret that the request examples of the webhook pages are signed with.
DOC_EXAMPLE_SECRET = "whsec_test_3f9a1c7e5b2d4806"


@pytest.mark.parametrize("page", ["webhooks-products.md", "webhooks-cart-get.md"])
def test_doc_request_example_is_signed(page: str) -> None:
    text = (DOCS / page).read_text("utf-8")
    example = text.split("```http\n", 1)[1].split("```", 1)[0]
    head, _, body = example.partition("\n\n")
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    raw_body = body.rstrip("\n").encode("utf-8")

    assert headers["Content-Type"] == "application/json"
    assert headers[SIGNATURE_HEADER] == compute_signature(
        secret=DOC_EXAMPLE_SECRET, timestamp=int(headers[TIMESTAMP_HEADER]), body=raw_body
    )
    assert DOC_EXAMPLE_SECRET in text
