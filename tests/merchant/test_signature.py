from __future__ import annotations

import pytest

from merchant.signature import SignatureError, compute_signature, verify_signature

SECRET = "whsec_test"
NOW = 1_700_000_000
BODY = b'{"skus":["milk-001"],"store_id":"store-1"}'
# Computed independently with: printf '1700000000.<BODY>' | openssl dgst -sha256 -hmac whsec_test
KNOWN_SIGNATURE = "sha256=a61d34636aacf3118b5f1ecc1a6cb1f38ed41a210c86bb2d337cdb888b012395"


def verify(**overrides: object) -> None:
    arguments: dict[str, object] = {
        "secret": SECRET,
        "body": BODY,
        "timestamp": str(NOW),
        "signature": KNOWN_SIGNATURE,
        "next_signature": None,
        "now": NOW,
    }
    arguments.update(overrides)
    verify_signature(**arguments)  # type: ignore[arg-type]


def error_code(**overrides: object) -> str:
    with pytest.raises(SignatureError) as raised:
        verify(**overrides)
    return raised.value.code


def test_compute_signature_matches_known_vector() -> None:
    assert compute_signature(SECRET, str(NOW), BODY) == KNOWN_SIGNATURE


def test_valid_signature_accepted() -> None:
    verify()


@pytest.mark.parametrize(
    "signature",
    [
        KNOWN_SIGNATURE.upper(),
        "sha256=" + KNOWN_SIGNATURE.removeprefix("sha256=").upper(),
        f" {KNOWN_SIGNATURE}",
        f"{KNOWN_SIGNATURE}\t",
    ],
    ids=["upper-case prefix and hex", "upper-case hex", "leading space", "trailing tab"],
)
def test_signature_not_as_sent_rejected(signature: str) -> None:
    assert error_code(signature=signature) == "invalid_signature"


@pytest.mark.parametrize("timestamp", [f" {NOW}", f"{NOW} ", "0001700000000"])
def test_timestamp_not_as_sent_rejected(timestamp: str) -> None:
    assert error_code(timestamp=timestamp) == "invalid_signature"


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamp_at_window_edge_accepted(offset: int) -> None:
    verify(now=NOW + offset)


@pytest.mark.parametrize("offset", [-301, 301])
def test_timestamp_outside_window_rejected(offset: int) -> None:
    assert error_code(now=NOW + offset) == "stale_timestamp"


def test_tampered_body_rejected() -> None:
    assert error_code(body=BODY.replace(b"milk-001", b"milk-002")) == "invalid_signature"


def test_reserialized_body_rejected() -> None:
    assert error_code(body=b'{"skus": ["milk-001"], "store_id": "store-1"}') == "invalid_signature"


def test_wrong_secret_rejected() -> None:
    assert error_code(secret="whsec_other") == "invalid_signature"


def test_signature_without_prefix_rejected() -> None:
    assert error_code(signature=KNOWN_SIGNATURE.removeprefix("sha256=")) == "invalid_signature"


@pytest.mark.parametrize("timestamp", ["abc", "17e8", "-1700000000", "1700000000.5", " "])
def test_malformed_timestamp_rejected(timestamp: str) -> None:
    assert error_code(timestamp=timestamp) in {"invalid_signature", "missing_signature"}


def test_missing_timestamp_rejected() -> None:
    assert error_code(timestamp=None) == "missing_signature"


def test_missing_signature_rejected() -> None:
    assert error_code(signature=None) == "missing_signature"


def test_empty_signature_rejected() -> None:
    assert error_code(signature="") == "missing_signature"


def test_next_signature_alone_accepted() -> None:
    verify(signature=None, next_signature=KNOWN_SIGNATURE)


def test_next_signature_accepted_when_primary_wrong() -> None:
    wrong = compute_signature("whsec_old", str(NOW), BODY)
    verify(signature=wrong, next_signature=KNOWN_SIGNATURE)


def test_primary_accepted_when_next_wrong() -> None:
    wrong = compute_signature("whsec_next", str(NOW), BODY)
    verify(next_signature=wrong)


def test_both_signatures_wrong_rejected() -> None:
    assert (
        error_code(
            signature=compute_signature("whsec_old", str(NOW), BODY),
            next_signature=compute_signature("whsec_next", str(NOW), BODY),
        )
        == "invalid_signature"
    )


def test_stale_timestamp_checked_before_signature() -> None:
    assert error_code(now=NOW + 1000, signature="sha256=00") == "stale_timestamp"
