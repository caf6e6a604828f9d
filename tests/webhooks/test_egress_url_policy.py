"""Tests for webhook URL validation: the URL corpus in url_corpus.json and the policy
rules around it. A fake resolver answers every DNS question, so no test queries real DNS."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from webhooks.urls_policy import (
    EgressErrorCode,
    EgressPolicy,
    UnsafeURLError,
    ValidatedURL,
    system_resolver,
    validate_url,
)

CORPUS = json.loads(Path(__file__).with_name("url_corpus.json").read_text("utf-8"))

POLICIES = {
    "default": EgressPolicy(),
    "http": EgressPolicy(allow_http=True),
    "local": EgressPolicy.from_settings(allow_http=True, allowed_networks=["127.0.0.0/8"]),
    "allow_all": EgressPolicy.from_settings(allowed_networks=["0.0.0.0/0", "::/0"]),
}


class TableResolver:
    """A resolver that answers from a fixed table and records every question."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.questions: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.questions.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


def _corpus_params(expected: str) -> list[Any]:
    return [
        pytest.param(case["case"], case, id=case["case"])
        for case in CORPUS["cases"]
        if case["expected"] == expected
    ]


def test_corpus_has_enough_cases() -> None:
    names = [case["case"] for case in CORPUS["cases"]]

    assert len(names) >= 40
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(("_case", "case"), _corpus_params("blocked"))
def test_validate_url_rejects_corpus_url(_case: str, case: dict[str, Any]) -> None:
    # given
    resolver = TableResolver(CORPUS["dns"])

    # when
    with pytest.raises(UnsafeURLError) as raised:
        validate_url(case["url"], policy=POLICIES[case["policy"]], resolver=resolver)

    # then
    assert raised.value.code == case["code"]
    assert raised.value.message


@pytest.mark.parametrize(("_case", "case"), _corpus_params("allowed"))
def test_validate_url_accepts_corpus_url(_case: str, case: dict[str, Any]) -> None:
    # given
    resolver = TableResolver(CORPUS["dns"])

    # when
    validated = validate_url(case["url"], policy=POLICIES[case["policy"]], resolver=resolver)

    # then
    assert validated.hostname == case["hostname"]
    assert [str(address) for address in validated.addresses] == case["addresses"]


def test_validate_url_resolves_ascii_host_once() -> None:
    # given
    resolver = TableResolver({"xn--bcher-kva.test": ["1.1.1.1"]})

    # when
    validate_url("https://Bücher.test./cart", policy=EgressPolicy(), resolver=resolver)

    # then
    assert resolver.questions == [("xn--bcher-kva.test", 443)]


def test_validate_url_without_resolving_skips_dns() -> None:
    # given
    resolver = TableResolver({})

    # when
    validated = validate_url(
        "https://private.test:8443/cart?store_id=1",
        policy=EgressPolicy(),
        resolve=False,
        resolver=resolver,
    )

    # then
    assert validated.addresses == ()
    assert resolver.questions == []


def test_validate_url_without_resolving_still_checks_literals() -> None:
    with pytest.raises(UnsafeURLError) as raised:
        validate_url("https://0x7f.1/", policy=EgressPolicy(), resolve=False)

    assert raised.value.code == EgressErrorCode.ADDRESS_NOT_ALLOWED
    assert raised.value.address == ipaddress.ip_address("127.0.0.1")


def test_validate_url_never_resolves_ip_literals_or_localhost() -> None:
    # given
    resolver = TableResolver({})
    policy = POLICIES["local"]

    # when
    validate_url("http://127.1:8000/", policy=policy, resolver=resolver)
    validate_url("http://api.localhost:8000/", policy=policy, resolver=resolver)

    # then
    assert resolver.questions == []


def test_rejection_message_hides_resolved_address() -> None:
    # given: the message is shown to tenants, who must not learn internal DNS records
    resolver = TableResolver({"internal.test": ["10.1.2.3"]})

    # when
    with pytest.raises(UnsafeURLError) as raised:
        validate_url("https://internal.test/", policy=EgressPolicy(), resolver=resolver)

    # then
    assert "10.1.2.3" not in raised.value.message
    assert "'internal.test' resolves to a non-public address (private)" in raised.value.message
    assert raised.value.address == ipaddress.ip_address("10.1.2.3")


def test_rejection_message_names_category_of_literal() -> None:
    with pytest.raises(UnsafeURLError) as raised:
        validate_url("https://169.254.169.254/", policy=EgressPolicy())

    assert raised.value.message.startswith(
        "URL host 169.254.169.254 is a non-public address (link-local)"
    )


def test_dns_failure_message_names_host() -> None:
    with pytest.raises(UnsafeURLError) as raised:
        validate_url("https://gone.test/", policy=EgressPolicy(), resolver=TableResolver({}))

    assert raised.value.message == (
        "Could not resolve URL host 'gone.test': Name or service not known."
    )


@pytest.mark.parametrize(
    ("_case", "host"),
    [
        ("decimal", "2130706433"),
        ("octal", "0177.0.0.1"),
        ("hex_short", "0x7f.1"),
        ("short", "127.1"),
        ("three_parts", "10.1.258"),
        ("metadata_short", "169.254.43518"),
        ("hex_parts", "0xa9.0xfe.0xa9.0xfe"),
        ("hex_whole", "0x08080808"),
        ("mixed_radix", "8.0x8.010.8"),
        ("leading_zeros", "0010.0x0008.00.8"),
    ],
)
def test_numeric_host_matches_inet_aton(_case: str, host: str) -> None:
    # given: an allowlist that admits every address these forms can reach
    expected = ipaddress.IPv4Address(socket.inet_aton(host))

    # when
    validated = validate_url(f"https://{host}/", policy=POLICIES["allow_all"], resolve=False)

    # then
    assert validated.hostname == str(expected)
    assert validated.addresses == (expected,)


def test_validated_url_parts() -> None:
    # given
    resolver = TableResolver({"shop.example": ["8.8.8.8"]})

    # when
    validated = validate_url(
        "https://Shop.Example:8443/api/vizochok/cart?store_id=store-1&session_id=u#top",
        policy=EgressPolicy(),
        resolver=resolver,
    )

    # then
    assert validated == ValidatedURL(
        scheme="https",
        hostname="shop.example",
        port=8443,
        target="/api/vizochok/cart?store_id=store-1&session_id=u",
        addresses=(ipaddress.IPv4Address("8.8.8.8"),),
    )
    assert validated.host_header == "shop.example:8443"
    assert (
        validated.url == "https://shop.example:8443/api/vizochok/cart?store_id=store-1&session_id=u"
    )
    assert validated.sanitized_url == "https://shop.example:8443/api/vizochok/cart"


def test_validated_url_omits_default_port_and_brackets_ipv6() -> None:
    # when
    default_port = validate_url("https://8.8.8.8:443", policy=EgressPolicy())
    ipv6 = validate_url("https://[2001:4860:4860::8888]:8443", policy=EgressPolicy())

    # then
    assert default_port.host_header == "8.8.8.8"
    assert default_port.target == "/"
    assert ipv6.host_header == "[2001:4860:4860::8888]:8443"
    assert ipv6.url == "https://[2001:4860:4860::8888]:8443/"


def test_validate_url_rejects_empty_and_long_urls() -> None:
    with pytest.raises(UnsafeURLError, match="URL is empty") as empty:
        validate_url("", policy=EgressPolicy())
    with pytest.raises(UnsafeURLError, match="longer than 2048") as long:
        validate_url("https://public.test/" + "a" * 2048, policy=EgressPolicy())

    assert empty.value.code == EgressErrorCode.INVALID_URL
    assert long.value.code == EgressErrorCode.INVALID_URL


def test_scheme_error_suggests_https() -> None:
    with pytest.raises(
        UnsafeURLError,
        match="URL scheme 'http' is not allowed. Use a URL that starts with https://.",
    ):
        validate_url("http://public.test/", policy=EgressPolicy())


def test_policy_from_settings_parses_networks() -> None:
    # when
    policy = EgressPolicy.from_settings(
        allow_http=True,
        allowed_networks=["127.0.0.0/8", "fd00::/8"],
        connect_timeout=0.5,
        max_response_bytes=1024,
    )

    # then
    assert policy == EgressPolicy(
        allow_http=True,
        allowed_networks=(
            ipaddress.IPv4Network("127.0.0.0/8"),
            ipaddress.IPv6Network("fd00::/8"),
        ),
        connect_timeout=0.5,
        max_response_bytes=1024,
    )


def test_policy_defaults() -> None:
    policy = EgressPolicy()

    assert policy.allow_http is False
    assert policy.allowed_networks == ()
    assert policy.connect_timeout == 1.0
    assert policy.max_response_bytes == 256 * 1024
    assert policy.ca_bundle is None


@pytest.mark.parametrize(
    ("_case", "networks", "message"),
    [
        ("host_bits_set", ["10.0.0.1/8"], "invalid network '10.0.0.1/8'"),
        ("not_a_network", ["localhost"], "invalid network 'localhost'"),
    ],
)
def test_policy_from_settings_rejects_bad_network(
    _case: str, networks: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        EgressPolicy.from_settings(allowed_networks=networks)


def test_policy_from_settings_rejects_single_string() -> None:
    with pytest.raises(TypeError, match="list of CIDR strings"):
        EgressPolicy.from_settings(allowed_networks="127.0.0.0/8")


@pytest.mark.parametrize(
    ("_case", "options", "message"),
    [
        ("string_network", {"allowed_networks": ("127.0.0.0/8",)}, "from_settings"),
        ("zero_connect_timeout", {"connect_timeout": 0}, "connect_timeout must be positive"),
        ("zero_response_limit", {"max_response_bytes": 0}, "max_response_bytes must be positive"),
        ("missing_ca_bundle", {"ca_bundle": "/nonexistent/ca.pem"}, "does not exist"),
    ],
)
def test_policy_rejects_invalid_values(_case: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        EgressPolicy(**options)


def test_system_resolver_returns_unique_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    questions: list[tuple[object, ...]] = []

    def fake_getaddrinfo(*args: object, **kwargs: object) -> list[tuple[Any, ...]]:
        questions.append((*args, kwargs))
        stream = socket.SOCK_STREAM
        return [
            (socket.AF_INET6, stream, 6, "", ("2001:4860:4860::8888", 443, 0, 0)),
            (socket.AF_INET, stream, 6, "", ("8.8.8.8", 443)),
            (socket.AF_INET, stream, 6, "", ("8.8.8.8", 443)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)

    # when
    addresses = system_resolver("shop.example", 443)

    # then
    assert addresses == ["2001:4860:4860::8888", "8.8.8.8"]
    assert questions == [
        ("shop.example", 443, {"type": socket.SOCK_STREAM, "flags": socket.AI_ADDRCONFIG})
    ]


def test_system_resolver_failure_becomes_dns_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    def failing_getaddrinfo(*args: object, **kwargs: object) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", failing_getaddrinfo)

    # when
    with pytest.raises(UnsafeURLError) as raised:
        validate_url("https://shop.example/", policy=EgressPolicy())

    # then
    assert raised.value.code == EgressErrorCode.DNS_FAILED
    assert "Name or service not known" in raised.value.message
