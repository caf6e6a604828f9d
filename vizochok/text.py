"""Checks on text before it reaches PostgreSQL."""


def is_storable_text(text: str) -> bool:
    """Return whether PostgreSQL can store ``text``: no NUL character and no surrogate.

    PostgreSQL text cannot contain NUL, and a surrogate code point has no UTF-8 encoding.
    Both reach Python from JSON escapes (``\\u0000``, ``\\ud800``) and from command-line
    bytes that are not UTF-8.
    """
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
