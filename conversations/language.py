"""Detection of the shopper's language from the letters of a message."""

import re

UKRAINIAN = "uk"
ENGLISH = "en"
RUSSIAN = "ru"
SUPPORTED_LANGUAGES = (UKRAINIAN, ENGLISH, RUSSIAN)

_CYRILLIC = re.compile(r"[а-яёіїєґ]", re.IGNORECASE)
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)
# Letters that exist in only one of the two alphabets.
_UKRAINIAN_ONLY = re.compile(r"[іїєґ]", re.IGNORECASE)
_RUSSIAN_ONLY = re.compile(r"[ыэъё]", re.IGNORECASE)


def detect_language(text: str, *, fallback: str) -> str:
    """Return ``uk``, ``en`` or ``ru`` for ``text``, or ``fallback`` when the letters don't tell.

    Cyrillic text is Ukrainian unless it has Russian-only letters and no Ukrainian-only ones.
    Cyrillic text with neither (such as "молоко") keeps a Cyrillic ``fallback`` and is
    Ukrainian otherwise. Text without letters, such as "2", returns ``fallback``.
    """
    cyrillic = len(_CYRILLIC.findall(text))
    latin = len(_LATIN.findall(text))
    if cyrillic == 0 and latin == 0:
        return fallback
    if latin > cyrillic:
        return ENGLISH
    has_ukrainian = _UKRAINIAN_ONLY.search(text) is not None
    has_russian = _RUSSIAN_ONLY.search(text) is not None
    if has_russian and not has_ukrainian:
        return RUSSIAN
    if has_ukrainian:
        return UKRAINIAN
    return fallback if fallback in (UKRAINIAN, RUSSIAN) else UKRAINIAN
