"""Text that PostgreSQL can and cannot store."""

import pytest

from vizochok.text import count_noun, escape_unstorable_text, is_storable_text


@pytest.mark.parametrize("text", ["", "Молоко 2,5%", "milk \U0001f95b", "tab\tand\nnewline"])
def test_storable_text(text):
    assert is_storable_text(text) is True


@pytest.mark.parametrize(
    "text", ["a\x00b", "\x00", "half \ud83d", "\udc00 low", "pair as two \ud83d\udd5b"]
)
def test_unstorable_text(text):
    assert is_storable_text(text) is False


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("Молоко 2,5%", "Молоко 2,5%"),
        ("pri\x00ce", "pri\\u0000ce"),
        ("half \ud83d", "half \\ud83d"),
        ("pair \ud83d\udd5b", "pair \\ud83d\\udd5b"),
        ("milk \U0001f95b\x00", "milk \U0001f95b\\u0000"),
    ],
)
def test_escape_unstorable_text(text, escaped):
    assert escape_unstorable_text(text) == escaped
    assert is_storable_text(escape_unstorable_text(text)) is True


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 products"), (1, "1 product"), (2, "2 products"), (11, "11 products")],
)
def test_count_noun_regular_plural(count, expected):
    assert count_noun(count, "product") == expected


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 webhook deliveries"), (1, "1 webhook delivery"), (3, "3 webhook deliveries")],
)
def test_count_noun_given_plural(count, expected):
    assert count_noun(count, "webhook delivery", "webhook deliveries") == expected
