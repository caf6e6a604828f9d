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


def _is_unstorable_character(character: str) -> bool:
    return character == "\x00" or "\ud800" <= character <= "\udfff"


def escape_unstorable_text(text: str) -> str:
    """Return ``text`` with each NUL and surrogate written as a ``\\uXXXX`` escape.

    Error messages that name a client's key pass it through this, so that the message can be
    stored in PostgreSQL and encoded as UTF-8 in a response.
    """
    if is_storable_text(text):
        return text
    return "".join(
        f"\\u{ord(character):04x}" if _is_unstorable_character(character) else character
        for character in text
    )


def count_noun(count: int, singular: str, plural: str | None = None) -> str:
    """Return ``count`` and the English form of the noun for it: "1 product", "0 products".

    ``plural`` defaults to ``singular`` with an "s" appended.
    """
    noun = singular if count == 1 else plural or f"{singular}s"
    return f"{count} {noun}"
