"""Web origins (``scheme://host[:port]``) as browsers send them in the ``Origin`` header.

Browsers send an origin with a lowercase scheme and host and without a default port or a
path, so two origins match when their normalized forms are equal.
"""

import ipaddress
import re
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
# A DNS name of letters, digits and hyphens in ASCII (internationalized names in their
# punycode "xn--" form), as browsers send it.
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_MAX_HOST_LENGTH = 253
EXAMPLE = "https://shop.example.com"


def origin_normalize(value: str) -> str:
    """Return ``value`` as a lowercase ``scheme://host[:port]`` without its default port.

    Raises ValueError with a readable message when ``value`` is not an http or https origin.
    One trailing "/" is accepted and dropped. Any other path, a query, a fragment or user
    info is rejected.
    """
    if value != value.strip() or not value:
        raise ValueError(f"Enter an origin such as {EXAMPLE}, without spaces.")
    if "?" in value or "#" in value:
        raise ValueError(f"{value!r} has a query or fragment. Enter only scheme://host[:port].")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} is not a valid origin. Enter one such as {EXAMPLE}.") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"{value!r} must start with http:// or https://.")
    if "@" in parts.netloc:
        raise ValueError(f"{value!r} contains user info. Enter only scheme://host[:port].")
    if parts.path not in ("", "/"):
        raise ValueError(f"{value!r} has a path. Enter only scheme://host[:port].")
    host = _host_normalize(parts.hostname or "", original=value)
    if port == 0:
        raise ValueError(f"{value!r} has port 0. Use a port from 1 to 65535.")
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _host_normalize(hostname: str, *, original: str) -> str:
    # urlsplit lowercases the host and removes the brackets of an IPv6 address.
    if ":" in hostname:
        try:
            return f"[{ipaddress.IPv6Address(hostname).compressed}]"
        except ValueError:
            raise ValueError(f"{original!r} has an invalid IPv6 address.") from None
    if not hostname:
        raise ValueError(f"{original!r} has no host. Enter one such as {EXAMPLE}.")
    if not hostname.isascii():
        raise ValueError(
            f"{original!r} has a non-ASCII host. Enter it in its punycode (xn--) form, as "
            "browsers send it."
        )
    labels = hostname.split(".")
    if len(hostname) > _MAX_HOST_LENGTH or not all(_HOST_LABEL.fullmatch(x) for x in labels):
        raise ValueError(f"{original!r} has an invalid host name.")
    return hostname


def origins_normalize(values: list[str], *, max_count: int) -> list[str]:
    """Return ``values`` normalized, without duplicates, in their first order.

    Raises ValueError naming the first invalid value, or when more than ``max_count``
    distinct origins remain.
    """
    normalized = list(dict.fromkeys(origin_normalize(value) for value in values))
    if len(normalized) > max_count:
        raise ValueError(f"Enter at most {max_count} origins, got {len(normalized)}.")
    return normalized
