"""Client addresses from the peer and X-Forwarded-For, and the networks that count as one."""

from ipaddress import IPv4Address, IPv6Address

import pytest

from conversations.client_address import (
    AddressFallback,
    ClientAddress,
    ConnectionAddresses,
    address_parse,
    client_address_resolve,
    client_network,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.7", IPv4Address("203.0.113.7")),
        (" 203.0.113.7 ", IPv4Address("203.0.113.7")),
        ("203.0.113.7:443", IPv4Address("203.0.113.7")),
        ("2001:db8::1", IPv6Address("2001:db8::1")),
        ("[2001:db8::1]", IPv6Address("2001:db8::1")),
        ("[2001:db8::1]:443", IPv6Address("2001:db8::1")),
        ("fe80::1%eth0", IPv6Address("fe80::1")),
        ("::ffff:203.0.113.7", IPv4Address("203.0.113.7")),
        ("[::ffff:203.0.113.7]:80", IPv4Address("203.0.113.7")),
    ],
)
def test_address_parse_accepts(value, expected):
    assert address_parse(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "unknown",
        "_hidden",
        "203.0.113",
        "203.0.113.7:",
        "203.0.113.7:http",
        "203.0.113.7:65536",
        "203.0.113.07",
        "[2001:db8::1",
        "[2001:db8::1]443",
        "[2001:db8::1]:",
        "2001:db8::1:443:",
        "example.com",
        "203.0.113.7:٤٤٣",
    ],
)
def test_address_parse_rejects(value):
    assert address_parse(value) is None


def test_client_network_keeps_ipv4_whole():
    assert client_network(IPv4Address("203.0.113.7")) == "203.0.113.7"


def test_client_network_of_ipv6_is_its_64():
    first = client_network(IPv6Address("2001:db8:1:2::1"))
    second = client_network(IPv6Address("2001:db8:1:2:ffff:ffff:ffff:ffff"))
    neighbour = client_network(IPv6Address("2001:db8:1:3::1"))

    assert first == "2001:db8:1:2::/64"
    assert second == "2001:db8:1:2::/64"
    assert neighbour == "2001:db8:1:3::/64"


def resolve(peer: str | None, forwarded_for: str | None, trusted_proxies: int) -> ClientAddress:
    return client_address_resolve(
        addresses=ConnectionAddresses(peer=peer, forwarded_for=forwarded_for),
        trusted_proxies=trusted_proxies,
    )


def test_no_trusted_proxy_ignores_forwarded_for():
    resolved = resolve("198.51.100.20", "203.0.113.7", 0)

    assert resolved == ClientAddress(address=IPv4Address("198.51.100.20"))


@pytest.mark.parametrize(
    ("trusted_proxies", "forwarded_for", "client"),
    [
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "192.0.2.66, 203.0.113.7", "203.0.113.7"),
        (2, "192.0.2.66, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (2, "203.0.113.7,10.0.0.2", "203.0.113.7"),
        # Two headers, joined by the server or by ConnectionAddresses.from_scope.
        (1, "192.0.2.66,203.0.113.7", "203.0.113.7"),
        # Addresses left of the client's may be anything the client sent.
        (1, "not an address, 203.0.113.7", "203.0.113.7"),
    ],
)
def test_trusted_proxies_pick_from_the_right(trusted_proxies, forwarded_for, client):
    resolved = resolve("10.0.0.1", forwarded_for, trusted_proxies)

    assert resolved.address == IPv4Address(client)
    assert resolved.fallback is None
    assert resolved.forwarded_count == len(forwarded_for.split(","))


@pytest.mark.parametrize(
    ("trusted_proxies", "forwarded_for", "fallback", "count"),
    [
        (1, None, AddressFallback.FORWARDED_FOR_TOO_SHORT, 0),
        (2, "203.0.113.7", AddressFallback.FORWARDED_FOR_TOO_SHORT, 1),
        (3, "192.0.2.66, 203.0.113.7", AddressFallback.FORWARDED_FOR_TOO_SHORT, 2),
        (1, "", AddressFallback.FORWARDED_FOR_INVALID, 1),
        (1, "203.0.113.7, unknown", AddressFallback.FORWARDED_FOR_INVALID, 2),
        (2, "203.0.113.7, , 10.0.0.2", AddressFallback.FORWARDED_FOR_INVALID, 3),
    ],
)
def test_unusable_forwarded_for_falls_back_to_peer(trusted_proxies, forwarded_for, fallback, count):
    resolved = resolve("10.0.0.1", forwarded_for, trusted_proxies)

    assert resolved == ClientAddress(
        address=IPv4Address("10.0.0.1"), fallback=fallback, forwarded_count=count
    )


@pytest.mark.parametrize("peer", [None, "", "unix:/run/gunicorn.sock"])
def test_invalid_peer_gives_no_address(peer):
    resolved = resolve(peer, None, 0)

    assert resolved == ClientAddress(address=None, fallback=AddressFallback.PEER_INVALID)


def test_from_scope_joins_repeated_headers():
    scope = {
        "client": ("10.0.0.1", 51234),
        "headers": [
            (b"x-forwarded-for", b"192.0.2.66"),
            (b"origin", b"https://shop.example"),
            (b"X-Forwarded-For", b"203.0.113.7"),
        ],
    }

    addresses = ConnectionAddresses.from_scope(scope)

    assert addresses == ConnectionAddresses(peer="10.0.0.1", forwarded_for="192.0.2.66,203.0.113.7")


def test_from_scope_without_client_or_header():
    addresses = ConnectionAddresses.from_scope({"headers": []})

    assert addresses == ConnectionAddresses(peer=None, forwarded_for=None)
