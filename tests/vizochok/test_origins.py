"""Normalization of web origins (vizochok.origins)."""

import re

import pytest

from vizochok.origins import origin_normalize, origins_normalize


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://shop.example.com", "https://shop.example.com"),
        ("HTTPS://Shop.Example.COM", "https://shop.example.com"),
        ("https://shop.example.com/", "https://shop.example.com"),
        ("https://shop.example.com:443", "https://shop.example.com"),
        ("http://shop.example.com:80", "http://shop.example.com"),
        ("http://shop.example.com:443", "http://shop.example.com:443"),
        ("https://shop.example.com:8443", "https://shop.example.com:8443"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("https://[2001:DB8:0:0::1]", "https://[2001:db8::1]"),
        ("https://xn--80aaxitdbjk.xn--j1amh", "https://xn--80aaxitdbjk.xn--j1amh"),
    ],
)
def test_origin_normalize_accepts(value, expected):
    assert origin_normalize(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Enter an origin such as https://shop.example.com, without spaces."),
        (" https://a.example", "Enter an origin such as https://shop.example.com, without spaces."),
        ("shop.example.com", "'shop.example.com' must start with http:// or https://."),
        ("ftp://shop.example.com", "'ftp://shop.example.com' must start with http:// or https://."),
        ("null", "'null' must start with http:// or https://."),
        ("*", "'*' must start with http:// or https://."),
        ("https://shop.example.com/shop", "'https://shop.example.com/shop' has a path. Enter only scheme://host[:port]."),
        ("https://shop.example.com?a=1", "'https://shop.example.com?a=1' has a query or fragment. Enter only scheme://host[:port]."),
        ("https://shop.example.com#top", "'https://shop.example.com#top' has a query or fragment. Enter only scheme://host[:port]."),
        ("https://user:pw@shop.example.com", "'https://user:pw@shop.example.com' contains user info. Enter only scheme://host[:port]."),
        ("https://shop.example.com:0", "'https://shop.example.com:0' has port 0. Use a port from 1 to 65535."),
        ("https://shop.example.com:65536", "'https://shop.example.com:65536' is not a valid origin. Enter one such as https://shop.example.com."),
        ("https://shop.example.com:http", "'https://shop.example.com:http' is not a valid origin. Enter one such as https://shop.example.com."),
        ("https://", "'https://' has no host. Enter one such as https://shop.example.com."),
        ("https://*.example.com", "'https://*.example.com' has an invalid host name."),
        ("https://shop..example.com", "'https://shop..example.com' has an invalid host name."),
        ("https://-shop.example.com", "'https://-shop.example.com' has an invalid host name."),
        ("https://магазин.укр", "'https://магазин.укр' has a non-ASCII host. Enter it in its punycode (xn--) form, as browsers send it."),
        ("https://[::g]", "'https://[::g]' is not a valid origin. Enter one such as https://shop.example.com."),
    ],
)  # fmt: skip
def test_origin_normalize_rejects(value, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        origin_normalize(value)


def test_origins_normalize_removes_duplicates_in_order():
    origins = [
        "https://b.example",
        "HTTPS://A.example:443",
        "https://b.example/",
        "https://a.example",
    ]

    assert origins_normalize(origins, max_count=2) == ["https://b.example", "https://a.example"]


def test_origins_normalize_limits_distinct_origins():
    origins = [f"https://shop{index}.example" for index in range(3)]

    with pytest.raises(ValueError, match="^Enter at most 2 origins, got 3.$"):
        origins_normalize(origins, max_count=2)
