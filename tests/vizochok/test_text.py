"""Text that PostgreSQL can and cannot store."""

import pytest

from vizochok.text import is_storable_text


@pytest.mark.parametrize("text", ["", "Молоко 2,5%", "milk \U0001f95b", "tab\tand\nnewline"])
def test_storable_text(text):
    assert is_storable_text(text) is True


@pytest.mark.parametrize(
    "text", ["a\x00b", "\x00", "half \ud83d", "\udc00 low", "pair as two \ud83d\udd5b"]
)
def test_unstorable_text(text):
    assert is_storable_text(text) is False
