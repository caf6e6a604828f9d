"""The network address of a chat client, for tenants that count anonymous shoppers by it.

A tenant whose ``AssistantSettings.anonymous_limit_identity`` is ``client_network`` counts
the daily limits of an anonymous shopper on a public key by this address. Other tenants
never read it.

Behind reverse proxies the server's direct peer is the nearest proxy. Each proxy appends
the address of its own peer to ``X-Forwarded-For``, so with ``TRUSTED_PROXY_COUNT`` (N)
proxies in front, the N-th address from the right is the one that the outermost trusted
proxy saw: the client. Addresses further left come from the client and can be forged, so
they are never read.

The HTTP API and the WebSocket endpoint both build a ``ConnectionAddresses`` and pass it to
``client_address_resolve``, so both follow the same rule.
"""

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.http import HttpRequest
from rest_framework.request import Request

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# One host usually gets a whole /64 from its provider, so the addresses of one IPv6 /64
# count as one client.
IPV6_CLIENT_PREFIX_LENGTH = 64


class AddressFallback(StrEnum):
    """The reason that ``X-Forwarded-For`` or the peer gave no client address."""

    FORWARDED_FOR_TOO_SHORT = "forwarded_for_too_short"
    FORWARDED_FOR_INVALID = "forwarded_for_invalid"
    PEER_INVALID = "peer_invalid"


@dataclass(frozen=True)
class ConnectionAddresses:
    """The addresses that a request arrived with.

    ``peer`` is the direct peer of the server (``REMOTE_ADDR``, or the ``client`` of an ASGI
    scope), and ``forwarded_for`` all ``X-Forwarded-For`` headers joined with commas, or
    None without the header.
    """

    peer: str | None
    forwarded_for: str | None

    @classmethod
    def from_request(cls, request: HttpRequest | Request) -> "ConnectionAddresses":
        """Read the addresses of a Django request.

        gunicorn, and Django under ASGI, join repeated headers with commas into one value.
        """
        return cls(
            peer=request.META.get("REMOTE_ADDR") or None,
            forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR"),
        )

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any]) -> "ConnectionAddresses":
        """Read the addresses of an ASGI connection scope.

        NOTE: uvicorn replaces the scope's ``client`` with an address from
        ``X-Forwarded-For`` when the peer is in its ``--forwarded-allow-ips`` (127.0.0.1
        and ::1 by default). docs/deployment.md therefore starts it with
        ``--no-proxy-headers``, so that ``client`` is the direct peer as for gunicorn.
        """
        client = scope.get("client")
        headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", [])
        forwarded = [
            value.decode("latin-1") for name, value in headers if name.lower() == b"x-forwarded-for"
        ]
        return cls(
            peer=str(client[0]) if client else None,
            forwarded_for=",".join(forwarded) if forwarded else None,
        )


@dataclass(frozen=True)
class ClientAddress:
    """The client's address, or None when neither the header nor the peer gave one.

    ``fallback`` is the reason that the configured source was not used: an unusable
    ``X-Forwarded-For`` (the peer is then used), or an unusable peer.
    """

    address: IPAddress | None
    fallback: AddressFallback | None = None
    # Addresses in X-Forwarded-For, for the log line of a fallback.
    forwarded_count: int = 0


def client_address_resolve(
    *, addresses: ConnectionAddresses, trusted_proxies: int
) -> ClientAddress:
    """Return the client's address: the ``trusted_proxies``-th from the right, or the peer.

    With ``trusted_proxies`` at 0 ``X-Forwarded-For`` is ignored. A header with fewer
    addresses, or an invalid address at that place, falls back to the peer.
    """
    peer = address_parse(addresses.peer) if addresses.peer else None
    if not trusted_proxies:
        fallback = None if peer is not None else AddressFallback.PEER_INVALID
        return ClientAddress(address=peer, fallback=fallback)
    entries = addresses.forwarded_for.split(",") if addresses.forwarded_for is not None else []
    if len(entries) < trusted_proxies:
        return ClientAddress(
            address=peer,
            fallback=AddressFallback.FORWARDED_FOR_TOO_SHORT,
            forwarded_count=len(entries),
        )
    address = address_parse(entries[-trusted_proxies])
    if address is None:
        return ClientAddress(
            address=peer,
            fallback=AddressFallback.FORWARDED_FOR_INVALID,
            forwarded_count=len(entries),
        )
    return ClientAddress(address=address, forwarded_count=len(entries))


def address_parse(value: str) -> IPAddress | None:
    """Parse one address of a peer or of ``X-Forwarded-For``; return None when invalid.

    Accepts ``203.0.113.7``, ``203.0.113.7:443``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:443``, with blanks around. An IPv6 zone (``%eth0``) is dropped, and an
    IPv4-mapped IPv6 address (``::ffff:203.0.113.7``) is returned as its IPv4 address.
    """
    text = value.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and _is_port(rest[1:]))):
            return None
        text = host
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not _is_port(port):
            return None
        text = host
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_network(address: IPAddress) -> str:
    """Return what counts as one client: an IPv4 address whole, an IPv6 address's /64."""
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    network = ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX_LENGTH), strict=False)
    return str(network)


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= 65535
