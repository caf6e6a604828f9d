"""Detection of the shopper's language from the letters and words of a message."""

import re

UKRAINIAN = "uk"
ENGLISH = "en"
RUSSIAN = "ru"
# The languages that a client may name when it starts a conversation.
LANGUAGES = (UKRAINIAN, ENGLISH, RUSSIAN)

_CYRILLIC = re.compile(r"[а-яёіїєґ]", re.IGNORECASE)
_WORD = re.compile(r"[a-zа-яёіїєґ']+", re.IGNORECASE)
# Letters that exist in only one of the two alphabets.
_UKRAINIAN_LETTERS = re.compile(r"[іїєґ]", re.IGNORECASE)
_RUSSIAN_LETTERS = re.compile(r"[ыэъё]", re.IGNORECASE)
# Frequent shopping words written with letters both alphabets share, such as "додай" and
# "добавь", which the letter check alone cannot tell apart.
_UKRAINIAN_WORDS = frozenset(
    [
        *("що", "додай", "додайте", "другий", "другу", "другого", "кошик", "кошика", "кошику"),
        *("видали", "прибери", "знайди", "потрібно", "потрібен", "будь", "ласка", "дякую"),
        *("зроби", "зміни", "мені", "який", "яка", "як", "або", "ще", "скільки", "покажіть"),
        *("треба", "найдешевше", "найдешевший", "найдешевшу", "дешевше", "скасуй"),
    ]
)
_RUSSIAN_WORDS = frozenset(
    [
        *("что", "добавь", "добавьте", "второй", "второго", "вторую", "первый", "первую"),
        *("корзина", "корзину", "корзине", "корзины", "удали", "убери", "найди", "нужно"),
        *("нужен", "пожалуйста", "спасибо", "сделай", "измени", "мне", "какой", "какая"),
        *("как", "или", "еще", "ещё", "сколько", "покажите", "здравствуйте", "привет"),
        *("какое", "какие", "самое", "самый", "самая", "дешевле", "есть", "купить", "нет"),
        *("отмени", "да"),
    ]
)
# Russian adjective endings that Ukrainian does not use ("какое", "свежая", "другие"): the
# Ukrainian forms end in -е, -а and -і.
_RUSSIAN_ENDINGS = ("ое", "ая", "ие", "ее", "яя")
# Shorter words with these endings are often shared or not adjectives ("мая", "ее").
MIN_ENDING_WORD_LENGTH = 5
# A product name in guillemets, curly or straight double quotes, as the widget's add button
# sends it: «…», “…” or "…".
_QUOTED = re.compile(r'«[^«»]*»|“[^“”]*”|"[^"]*"')


def detect_language(text: str, *, fallback: str) -> str:
    """Return ``uk``, ``en`` or ``ru`` for ``text``, or ``fallback`` when the text doesn't tell.

    A message is English when it has no Cyrillic word, or when its Latin words outnumber
    the Cyrillic ones and none of them is a Ukrainian or Russian marker. So "додай lactel"
    is Ukrainian and "I need молоко" English. Cyrillic text is scored by the letters, the
    frequent words and the adjective endings that only Ukrainian or only Russian has. Words
    in quotes count only when the message has no others. A tie (such as "молоко") keeps a
    Cyrillic ``fallback`` and is Ukrainian otherwise. Text without letters, such as "2",
    returns ``fallback``.
    """
    # A quoted product name is in the catalog's language, not the shopper's: "Add «Молоко»"
    # is English. A message that is only quoted names is read whole.
    unquoted = _QUOTED.sub(" ", text)
    if _WORD.search(unquoted):
        text = unquoted
    words = [word.lower() for word in _WORD.findall(text)]
    cyrillic_words = [word for word in words if _CYRILLIC.search(word)]
    latin_words = len(words) - len(cyrillic_words)
    if not words:
        return fallback
    ukrainian = len(_UKRAINIAN_LETTERS.findall(text)) + sum(
        word in _UKRAINIAN_WORDS for word in cyrillic_words
    )
    russian = len(_RUSSIAN_LETTERS.findall(text)) + sum(
        word in _RUSSIAN_WORDS
        or (len(word) >= MIN_ENDING_WORD_LENGTH and word.endswith(_RUSSIAN_ENDINGS))
        for word in cyrillic_words
    )
    has_markers = ukrainian + russian > 0
    if not cyrillic_words or (latin_words > len(cyrillic_words) and not has_markers):
        return ENGLISH
    if russian > ukrainian:
        return RUSSIAN
    if ukrainian > russian:
        return UKRAINIAN
    return fallback if fallback in (UKRAINIAN, RUSSIAN) else UKRAINIAN
