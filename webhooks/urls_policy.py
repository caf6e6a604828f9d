"""Rules for which URLs and IP addresses outbound webhook requests may reach.

Tenants configure webhook URLs, so every URL is untrusted input. A URL passes only if its
scheme is allowed, it carries no credentials, and every address its host names or resolves to
is public or inside the policy's explicit allowlist. Numeric hosts are normalised the way
browsers and ``inet_aton`` read them (``2130706433``, ``0177.0.0.1``, ``0x7f.1`` and ``127.1``
are all 127.0.0.1) before they are judged, so an encoding cannot hide an address.

``webhooks.egress`` re-exports the public names of this module, and other code imports them
from there.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import SplitResult, urlsplit

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A resolver takes a host name and a port and returns IP address strings. Tests inject fake
# resolvers so that they never query real DNS.
Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_CONNECT_TIMEOUT = 1.0
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024
MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}

_LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64_NETWORK = ipaddress.IPv6Network("64:ff9b::/96")
_PRIVATE_NETWORKS = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv6Network("fc00::/7"),
)
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

# Special-purpose ranges that are not globally reachable, from the IANA IPv4 and IPv6
# Special-Purpose Address Registries (read 2026-12). They are listed here rather than taken
# from ``is_private``/``is_global``, whose answers changed between Python 3.11 patch releases
# (3.11.2 calls the 6to4 range 2002::/16 private, 3.11.7 does not). Ranges whose addresses
# embed an IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96, 6to4, Teredo) are absent: the
# embedded address is judged instead.
_NOT_GLOBAL_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "240.0.0.0/4",
        "64:ff9b:1::/48",
        "100::/64",
        "2001:2::/48",
        "2001:10::/28",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
    )
)
# Addresses inside the ranges above that the registries mark globally reachable.
_GLOBAL_EXCEPTIONS = tuple(
    ipaddress.ip_network(network) for network in ("192.0.0.9/32", "192.0.0.10/32")
)

# No server can listen on these, and connecting to 0.0.0.0 or :: reaches the local host on
# Linux, so an allowlist never admits them.
_NEVER_ALLOWED_CATEGORIES = frozenset({"unspecified", "multicast", "broadcast"})

_FORBIDDEN_URL_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")
_HOSTNAME_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_MAX_HOSTNAME_LENGTH = 253
_IPV4_NUMBER_DIGITS = {
    16: re.compile(r"[0-9a-f]*"),
    8: re.compile(r"[0-7]*"),
    10: re.compile(r"[0-9]+"),
}


class EgressErrorCode(StrEnum):
    """Machine-readable cause of an ``EgressError``."""

    INVALID_URL = "invalid_url"
    SCHEME_NOT_ALLOWED = "scheme_not_allowed"
    CREDENTIALS_NOT_ALLOWED = "credentials_not_allowed"
    ADDRESS_NOT_ALLOWED = "address_not_allowed"
    DNS_FAILED = "dns_failed"
    CONNECT_TIMEOUT = "connect_timeout"
    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    CONNECTION_FAILED = "connection_failed"
    TLS_ERROR = "tls_error"
    PROTOCOL_ERROR = "protocol_error"
    RESPONSE_TOO_LARGE = "response_too_large"


class EgressError(Exception):
    """Base of every error raised by webhook URL checks and outbound webhook requests."""

    def __init__(self, code: EgressErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UnsafeURLError(EgressError):
    """A URL that the egress policy rejects.

    ``message`` names the URL's host but never the addresses a name resolved to, so it can
    be shown to the tenant as a field error. ``address`` is the rejected address, for logs.
    """

    def __init__(
        self, code: EgressErrorCode, message: str, *, address: IPAddress | None = None
    ) -> None:
        super().__init__(code, message)
        self.address = address


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Process-wide rules for outbound webhook requests.

    ``allowed_networks`` is an explicit allowlist of otherwise rejected networks, for local
    demos and self-hosted setups (for example ``127.0.0.0/8``). It is empty by default.
    ``ca_bundle`` is a path to a PEM file of trusted CA certificates, and ``None`` means the
    certifi bundle that requests uses.
    """

    allow_http: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    ca_bundle: str | None = None

    def __post_init__(self) -> None:
        for network in self.allowed_networks:
            if not isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise TypeError(
                    f"allowed_networks must contain ipaddress networks, got {network!r}; "
                    "use EgressPolicy.from_settings() to parse strings"
                )
        if not self.connect_timeout > 0:
            raise ValueError(f"connect_timeout must be positive, got {self.connect_timeout!r}")
        if self.max_response_bytes <= 0:
            raise ValueError(
                f"max_response_bytes must be positive, got {self.max_response_bytes!r}"
            )
        if self.ca_bundle is not None and not os.path.isfile(self.ca_bundle):
            raise ValueError(f"CA bundle {self.ca_bundle!r} does not exist or is not a file")

    @classmethod
    def from_settings(
        cls,
        *,
        allow_http: bool = False,
        allowed_networks: Iterable[str] = (),
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ca_bundle: str | None = None,
    ) -> EgressPolicy:
        """Build a policy from setting values, parsing networks given in CIDR notation."""
        if isinstance(allowed_networks, str):
            raise TypeError(
                "allowed_networks must be a list of CIDR strings, not one string: "
                f"{allowed_networks!r}"
            )
        return cls(
            allow_http=allow_http,
            allowed_networks=tuple(_parse_network(value) for value in allowed_networks),
            connect_timeout=connect_timeout,
            max_response_bytes=max_response_bytes,
            ca_bundle=ca_bundle,
        )


@dataclass(frozen=True, slots=True)
class ValidatedURL:
    """A URL that passed ``validate_url``, split into the parts a request needs.

    ``hostname`` is ASCII and lower case, without a trailing dot, and an IP literal is in its
    normal form (``0x7f.1`` becomes ``127.0.0.1``). ``target`` is the path and query of the
    request line. ``addresses`` are the checked addresses in resolver order. They are empty
    only when a host name was validated with ``resolve=False``.
    """

    scheme: str
    hostname: str
    port: int
    target: str
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        """Return the Host header value, with the port only when it is not the default."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """Return the normalised URL, without userinfo or fragment."""
        return f"{self.scheme}://{self.host_header}{self.target}"

    @property
    def sanitized_url(self) -> str:
        """Return the URL without its query string, safe for logs and error messages."""
        path = self.target.split("?", 1)[0]
        return f"{self.scheme}://{self.host_header}{path}"


def validate_url(
    url: str,
    *,
    policy: EgressPolicy,
    resolve: bool = True,
    resolver: Resolver | None = None,
) -> ValidatedURL:
    """Check a webhook URL against the policy and return its normalised parts.

    With ``resolve=True`` a host name is resolved once, and every address returned must pass,
    so a name with one public and one private address is rejected. ``resolve=False`` checks
    only the syntax, the scheme and IP-literal hosts, and is meant for places without DNS.
    ``resolver`` defaults to ``system_resolver``. Raises ``UnsafeURLError``.
    """
    parts = _split_url(url, policy=policy)
    hostname, literal_address = _normalize_host(parts.hostname or "")
    port = parts.port or DEFAULT_PORTS[parts.scheme]

    if literal_address is not None:
        candidates: Sequence[IPAddress] = (literal_address,)
    elif _is_localhost_name(hostname):
        # RFC 6761 reserves these names for loopback, so they are judged without DNS.
        candidates = (_LOOPBACK_V4,)
    elif resolve:
        candidates = _resolve(hostname, port, resolver or system_resolver)
    else:
        candidates = ()

    addresses: list[IPAddress] = []
    for candidate in candidates:
        address = _check_address(candidate, hostname=hostname, policy=policy)
        if address not in addresses:
            addresses.append(address)

    return ValidatedURL(
        scheme=parts.scheme,
        hostname=hostname,
        port=port,
        target=_request_target(parts),
        addresses=tuple(addresses),
    )


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve a host name with the system resolver and return unique addresses in order.

    Raises ``socket.gaierror`` when the name does not resolve.
    """
    # NOTE: getaddrinfo() has no timeout of its own, so a slow DNS server can delay a request
    # past its time budget by the resolver's timeout and attempts (glibc: 5 s, 2 attempts).
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parse_network(value: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise ValueError(
            f"invalid network {value!r} in allowed_networks: {error}; "
            "use CIDR notation such as 127.0.0.0/8"
        ) from error


def _invalid_url(message: str) -> UnsafeURLError:
    return UnsafeURLError(EgressErrorCode.INVALID_URL, message)


def _split_url(url: str, *, policy: EgressPolicy) -> SplitResult:
    if not isinstance(url, str) or not url:
        raise _invalid_url("URL is empty.")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid_url(f"URL is longer than {MAX_URL_LENGTH} characters.")
    if _FORBIDDEN_URL_CHARACTERS.search(url):
        raise _invalid_url("URL contains whitespace, a control character or a backslash.")

    try:
        parts = urlsplit(url)
        # Reading the port validates it: urlsplit() raises ValueError on a non-numeric port
        # or one above 65535 only when .port is accessed.
        port = parts.port
    except ValueError as error:
        raise _invalid_url(f"URL is not valid: {error}.") from error

    allowed_schemes = ("https", "http") if policy.allow_http else ("https",)
    if not parts.scheme:
        raise _invalid_url("URL has no scheme. Use a URL that starts with https://.")
    if parts.scheme not in allowed_schemes:
        raise UnsafeURLError(
            EgressErrorCode.SCHEME_NOT_ALLOWED,
            f"URL scheme {parts.scheme!r} is not allowed. Use a URL that starts with https://.",
        )
    if "@" in parts.netloc:
        raise UnsafeURLError(
            EgressErrorCode.CREDENTIALS_NOT_ALLOWED,
            "URL must not contain a user name or password. "
            "The webhook secret signs each request instead.",
        )
    if not parts.hostname:
        raise _invalid_url("URL has no host.")
    if port == 0:
        raise _invalid_url("URL port 0 is not valid.")
    return parts


def _normalize_host(host: str) -> tuple[str, IPAddress | None]:
    """Return the ASCII host name and, for an IP literal, its address.

    ``host`` is the lower-cased host from ``urlsplit``, without the brackets of an IPv6
    literal. Raises ``UnsafeURLError`` with code ``invalid_url``.
    """
    if ":" in host:
        # urlsplit() leaves a colon in the host only for a bracketed IPv6 literal.
        if "%" in host:
            raise _invalid_url("IPv6 zone identifiers are not allowed in URLs.")
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError as error:
            raise _invalid_url(f"URL host [{host}] is not a valid IPv6 address.") from error
        return str(address), address

    if not host.isascii():
        # UTS 46 mapping also turns full-width digits and dots into ASCII, so the result
        # may be an IPv4 literal and is checked below like any ASCII host.
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as error:
            raise _invalid_url(f"URL host {host!r} is not a valid domain name.") from error

    if host.endswith("."):
        host = host[:-1]
    if _ends_in_number(host):
        ipv4_address = _parse_ipv4(host)
        if ipv4_address is None:
            raise _invalid_url(f"URL host {host!r} is not a valid IPv4 address.")
        return str(ipv4_address), ipv4_address

    labels = host.split(".")
    if len(host) > _MAX_HOSTNAME_LENGTH or not all(
        _HOSTNAME_LABEL.fullmatch(label) for label in labels
    ):
        raise _invalid_url(f"URL host {host!r} is not a valid domain name.")
    return host, None


def _ends_in_number(host: str) -> bool:
    """Tell whether the URL Standard (WHATWG) parses ``host`` as an IPv4 address."""
    last_label = host.rsplit(".", 1)[-1]
    if not last_label:
        return False
    return last_label.isdigit() or _parse_ipv4_number(last_label) is not None


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse an IPv4 host in any form ``inet_aton`` accepts, or return None.

    Each of one to four parts is decimal, octal (leading ``0``) or hex (leading ``0x``). The
    last part fills the remaining bytes, so ``127.1`` is 127.0.0.1 and ``2130706433`` is too.
    """
    parts = host.split(".")
    if len(parts) > 4:
        return None
    numbers = [_parse_ipv4_number(part) for part in parts]
    valid_numbers = [number for number in numbers if number is not None]
    if len(valid_numbers) != len(numbers):
        return None
    if any(number > 255 for number in valid_numbers[:-1]):
        return None
    if valid_numbers[-1] >= 256 ** (5 - len(valid_numbers)):
        return None

    value = valid_numbers[-1]
    for index, number in enumerate(valid_numbers[:-1]):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _parse_ipv4_number(part: str) -> int | None:
    if part.startswith("0x"):
        radix, digits = 16, part[2:]
    elif len(part) > 1 and part.startswith("0"):
        radix, digits = 8, part[1:]
    else:
        radix, digits = 10, part
    if not _IPV4_NUMBER_DIGITS[radix].fullmatch(digits):
        return None
    return int(digits, radix) if digits else 0


def _is_localhost_name(hostname: str) -> bool:
    return hostname == "localhost" or hostname.endswith(".localhost")


def _resolve(hostname: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        answers = resolver(hostname, port)
    except (OSError, UnicodeError) as error:
        raise UnsafeURLError(
            EgressErrorCode.DNS_FAILED,
            f"Could not resolve URL host {hostname!r}: {_resolver_error(error)}.",
        ) from error
    if not answers:
        raise UnsafeURLError(
            EgressErrorCode.DNS_FAILED, f"URL host {hostname!r} resolved to no addresses."
        )

    addresses = []
    for answer in answers:
        try:
            addresses.append(ipaddress.ip_address(answer))
        except ValueError as error:
            raise UnsafeURLError(
                EgressErrorCode.DNS_FAILED,
                f"Resolving URL host {hostname!r} returned an invalid address.",
            ) from error
    return addresses


def _resolver_error(error: OSError | UnicodeError) -> str:
    """Describe a failed lookup without Python's ``[Errno -2]`` prefix or exception names."""
    if isinstance(error, UnicodeError):
        return "the host name cannot be encoded for DNS"
    return error.strerror or str(error) or "the lookup failed"


def _check_address(address: IPAddress, *, hostname: str, policy: EgressPolicy) -> IPAddress:
    """Return the address to connect to, or raise if the policy rejects it.

    An IPv4-mapped IPv6 address becomes its IPv4 address. An IPv4 address embedded in NAT64,
    6to4 or Teredo form is judged as well, so ``[64:ff9b::a00:1]`` counts as 10.0.0.1.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped

    judged: list[IPAddress] = [address]
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        # The NAT64 prefix itself is public, so only the IPv4 address behind it matters.
        judged = [embedded] if address in _NAT64_NETWORK else [address, embedded]

    for candidate in judged:
        category = _rejected_category(candidate, policy=policy)
        if category is not None:
            raise UnsafeURLError(
                EgressErrorCode.ADDRESS_NOT_ALLOWED,
                _rejection_message(hostname, category),
                address=address,
            )
    return address


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address in _NAT64_NETWORK:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _rejected_category(address: IPAddress, *, policy: EgressPolicy) -> str | None:
    category = _non_public_category(address)
    if category is None or category in _NEVER_ALLOWED_CATEGORIES:
        return category
    if any(address in network for network in policy.allowed_networks):
        return None
    return category


def _non_public_category(address: IPAddress) -> str | None:
    """Return the kind of non-public address, or None for a public one.

    Every check uses explicit ranges, so the answer does not depend on the Python version.
    """
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address == _LIMITED_BROADCAST:
        return "broadcast"
    if address in _SHARED_ADDRESS_SPACE:
        return "shared (carrier-grade NAT)"
    if any(address in network for network in _PRIVATE_NETWORKS):
        return "private"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_reserved:
        return "reserved"
    if any(address in network for network in _GLOBAL_EXCEPTIONS):
        return None
    if any(address in network for network in _NOT_GLOBAL_NETWORKS):
        return "special-purpose"
    return None


def _rejection_message(hostname: str, category: str) -> str:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        subject = f"URL host {hostname!r} resolves to"
    else:
        subject = f"URL host {hostname} is"
    return (
        f"{subject} a non-public address ({category}). Webhook URLs must point at public addresses."
    )


def _request_target(parts: SplitResult) -> str:
    path = parts.path or "/"
    if parts.query:
        return f"{path}?{parts.query}"
    return path
