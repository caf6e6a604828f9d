"""Text normalisation shared by the stored full-text documents and by search queries.

Both sides go through :func:`tokenize`, so a query token matches a document token exactly
when the two words normalise to the same stem. The pipeline:

1. Unicode NFKC, lower case, ``ё`` → ``е``, accents dropped from Latin letters
   (``président`` → ``president``) and stress marks from all letters (``моло́ко`` →
   ``молоко``).
2. Apostrophes (``'`` ``’`` ``ʼ`` and look-alikes) are dropped, so ``м'ясо``, ``м’ясо`` and
   ``мясо`` are one word. So are soft hyphens and zero-width joiners.
3. A decimal comma between digits becomes a point, and numbers are split from letters and
   ``%``: ``900мл`` → ``900 мл``, ``2,5%`` → ``2.5 %``.
4. Every other punctuation mark separates words.
5. Latin look-alike letters inside a Cyrillic word are replaced by their Cyrillic twins
   (``мoлoкo`` typed with Latin ``o``).
6. Cyrillic words lose one inflectional ending (Ukrainian and Russian), Latin words lose the
   English plural ending, and numbers stay as they are.

The stemmer is deliberately light: it removes one ending and never leaves a stem shorter
than three letters or without a vowel. It makes the common forms of a word meet
(``молоко``/``молока``/``молоком`` → ``молок``), at the cost of some forms that stay apart
(``молоці`` → ``молоц``). Stems are an internal matching key, not words to show anyone.
"""

import re
import unicodedata
from collections.abc import Iterable
from typing import Literal

_APOSTROPHES = "'’ʼ‘`´ʹ′"
# Invisible characters that text copied from web pages carries inside words: the soft
# hyphen, the zero-width non-joiner and joiner, the word joiner and the byte order mark.
_INVISIBLE_IN_WORDS = "\u00ad\u200c\u200d\u2060\ufeff"
_DROP_CHARACTERS = str.maketrans("", "", _APOSTROPHES + _INVISIBLE_IN_WORDS)

# Latin letters that look like Cyrillic ones, after lower-casing. A word that mixes both
# scripts is almost always a Cyrillic word typed with a few Latin keys.
_LATIN_TO_CYRILLIC = str.maketrans("aceiopxykmthb", "асеіорхукмтнв")

_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d)")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+|%")
_CYRILLIC = re.compile(r"[а-яіїєґ]")
_LATIN = re.compile(r"[a-z]")
_CYRILLIC_WORD = re.compile(r"[а-яіїєґ]+")
_LATIN_WORD = re.compile(r"[a-z]+")
_CYRILLIC_VOWELS = frozenset("аеєиіїоуюяыэ")

MIN_STEM_LENGTH = 3

# PostgreSQL rejects a tsvector over 1 MB (1,048,575 bytes), and the statement that writes
# it fails. Normalised text costs at most 6 tsvector bytes per character: a one-letter word
# of a 3- or 4-byte letter and the space after it take 12 bytes. A body of this many
# characters therefore takes at most 600,000 bytes, which leaves room for the title.
MAX_SEARCH_BODY_LENGTH = 100_000

# Inflectional endings of Ukrainian and Russian nouns and adjectives. The longest matching
# ending is removed first; verbs are rare in product names and are left alone.
_CYRILLIC_ENDINGS = tuple(
    sorted(
        {
            # Adjectives.
            "ього", "ьому", "ого", "его", "ому", "ему", "ими", "іми", "ыми",
            "ьої", "ьою", "ий", "ій", "ый", "ой", "ая", "яя", "ое", "ее", "ые", "ие",
            "ої", "ою", "ую", "юю", "ім", "ым", "им", "их", "іх", "ых",
            # Nouns.
            "ами", "ями", "ові", "еві", "єві", "ом", "ем", "єм", "ею", "єю", "ам", "ям",
            "ах", "ях", "ів", "їв", "ов", "ев", "ей", "ью",
            "а", "я", "о", "е", "є", "у", "ю", "і", "и", "ї", "ы", "ь",
        },
        key=len,
        reverse=True,
    )
)  # fmt: skip

# Endings that start with an iotated vowel hide a "й" when they follow a vowel:
# "олія" is олій + а and "чаю" is чай + у, so the stem keeps the "й".
_IOTATED = frozenset("яюєї")

# Words whose stem changes inside, which suffix rules cannot reach: the Ukrainian і/о
# alternation (сік/соку, сіль/солі), й/є (яйця/яєць), Russian яйца/яиц, a fleeting vowel
# before "р" (цукор/цукру), and two Russian words whose "о" before a final "к" is not
# fleeting.
_IRREGULAR_STEMS = {
    "сік": "сок",
    "сіль": "сол",
    "яєць": "яйц",
    "яиц": "яйц",
    "цукор": "цукр",
    "чеснок": "чеснок",
    "окорок": "окорок",
}

# A vowel that disappears in the other forms of the word: сирок/сирки, перець/перцю,
# огурец/огурца.
_FLEETING_VOWEL = re.compile(r"(?<=[^аеєиіїоуюяыэ])(?:о|е)(к)$|(?<=[^аеєиіїоуюяыэ])е(ц)ь?$")


# Combining acute and grave accents, which dictionaries and some product texts put on
# Cyrillic vowels to mark stress ("моло́ко"). Left in place, a mark splits the word in two.
_STRESS_MARKS = frozenset("\u0300\u0301")


def _fold_accents(text: str) -> str:
    """Drop accents from Latin letters and stress marks from any letter.

    Cyrillic й, ї and ё keep their marks (breve and diaeresis).
    """
    decomposed = unicodedata.normalize("NFD", text)
    kept: list[str] = []
    for char in decomposed:
        if (
            unicodedata.combining(char)
            and kept
            and ("a" <= kept[-1] <= "z" or char in _STRESS_MARKS)
        ):
            continue
        kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept))


def _has_vowel(word: str) -> bool:
    return any(char in _CYRILLIC_VOWELS for char in word)


def _strip_cyrillic_ending(word: str) -> str | None:
    for ending in _CYRILLIC_ENDINGS:
        if not word.endswith(ending):
            continue
        base = word[: -len(ending)]
        if ending[0] in _IOTATED and base and base[-1] in _CYRILLIC_VOWELS:
            base += "й"
        if len(base) >= MIN_STEM_LENGTH and _has_vowel(base):
            return base
    return None


def stem_cyrillic(word: str) -> str:
    """Return the stem of one lower-case Ukrainian or Russian word."""
    if word in _IRREGULAR_STEMS:
        return _IRREGULAR_STEMS[word]
    without_fleeting_vowel = _FLEETING_VOWEL.sub(r"\1\2", word)
    if without_fleeting_vowel != word and len(without_fleeting_vowel) > MIN_STEM_LENGTH:
        return without_fleeting_vowel
    base = _strip_cyrillic_ending(word)
    return word if base is None else base


def stem_english(word: str) -> str:
    """Remove the English plural ending from one lower-case word.

    eggs → egg, boxes → box, batteries → battery, tomatoes → tomato.
    """
    if len(word) < 4:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes", "oes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _fix_mixed_script(word: str) -> str:
    if _CYRILLIC.search(word) and _LATIN.search(word):
        return word.translate(_LATIN_TO_CYRILLIC)
    return word


def stem(word: str) -> str:
    """Return the stem of one normalised word; numbers and other scripts stay as they are."""
    if _CYRILLIC_WORD.fullmatch(word):
        return stem_cyrillic(word)
    if _LATIN_WORD.fullmatch(word):
        return stem_english(word)
    return word


def surface_words(text: str) -> list[str]:
    """Split ``text`` into normalised words before stemming (numbers and ``%`` included)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("ё", "е")
    text = _fold_accents(text).translate(_DROP_CHARACTERS)
    text = _DECIMAL_COMMA.sub(".", text)
    return [_fix_mixed_script(word) for word in _TOKEN.findall(text)]


def tokenize(text: str) -> list[str]:
    """Split ``text`` into normalised, stemmed tokens (numbers and ``%`` included)."""
    return [stem(word) for word in surface_words(text)]


def normalize_text(text: str) -> str:
    """Return the normalised form of ``text``: its tokens joined by single spaces."""
    return " ".join(tokenize(text))


def _join_unique(parts: Iterable[str]) -> str:
    """Join normalised parts, skipping a part whose tokens all appeared already."""
    seen: set[str] = set()
    kept: list[str] = []
    for part in parts:
        tokens = tokenize(part)
        if not tokens or seen.issuperset(tokens):
            continue
        seen.update(tokens)
        kept.append(" ".join(tokens))
    return " ".join(kept)


def build_search_title(*, name: str, brand: str) -> str:
    """Build the heavily weighted part of a product's full-text document."""
    return _join_unique([name, brand])


def build_search_body(
    *, category_path: str, description: str, ingredients: str, country: str
) -> str:
    """Build the lightly weighted part of a product's full-text document.

    A body longer than ``MAX_SEARCH_BODY_LENGTH`` characters is cut after its last whole
    word within that length, so the words after it are not searchable.
    """
    body = " ".join(
        normalize_text(part)
        for part in (category_path, description, ingredients, country)
        if part.strip()
    )
    if len(body) <= MAX_SEARCH_BODY_LENGTH:
        return body
    end = body.rfind(" ", 0, MAX_SEARCH_BODY_LENGTH + 1)
    return body[:end] if end != -1 else body[:MAX_SEARCH_BODY_LENGTH]


def build_tsquery(
    text: str, *, match: Literal["all", "any"] = "all", prefix_last: bool = True
) -> str:
    """Build a ``to_tsquery('simple', ...)`` string from user text, or "" if it has no terms.

    Every term is a normalised token quoted as a lexeme, so operators and quotes in the user
    text can never reach the tsquery syntax. ``match="all"`` joins the terms with ``&``,
    ``"any"`` with ``|``.

    With ``prefix_last`` the last word also matches longer words (``:*``), which suits text
    typed so far. A half-typed word can look like a different inflected form to the
    stemmer ("молок" is cut to "молк"), so the last word matches as a prefix in both its
    stemmed and its unstemmed form. The prefix applies only to a word of two or more
    letters, because a one-letter prefix matches almost everything.
    """
    words = [word for word in surface_words(text) if word != "%"]
    if not words:
        return ""
    terms = list(dict.fromkeys(stem(word) for word in words))
    last_word = words[-1]
    last_stem = stem(last_word)
    lexemes = [f"'{term}'" for term in terms if term != last_stem]
    if prefix_last and len(last_word) >= 2 and not last_word[0].isdigit():
        if last_word.startswith(last_stem):
            lexemes.append(f"'{last_stem}':*")
        else:
            lexemes.append(f"('{last_stem}':* | '{last_word}':*)")
    else:
        lexemes.append(f"'{last_stem}'")
    operator = " & " if match == "all" else " | "
    return operator.join(lexemes)


# Function words of Ukrainian, Russian and English that tell nothing about the product on
# their own: "для" in "корм для котів" or "with" in "tea with lemon".
STOPWORDS = frozenset(
    {
        "а", "або", "без", "в", "від", "до", "з", "за", "зі", "із", "й", "і", "на", "о",
        "по", "та", "у", "чи", "во", "для", "и", "или", "из", "от", "с", "со",
        "a", "an", "and", "by", "for", "in", "of", "on", "or", "the", "to", "with",
        "without",
    }
)  # fmt: skip


# Latin spellings of Ukrainian and Russian letters, as shoppers type them without a
# Cyrillic keyboard ("moloko", "hlib", "kefir"). Longer spellings are tried first. Letters
# with several readings list the likelier first: "h" is "х" as often as "г", and "y" is
# "и" in Ukrainian, "ы" in Russian and "й" after a vowel.
_TRANSLITERATION: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shch", ("щ",)),
    ("sch", ("щ",)),
    ("zh", ("ж",)),
    ("kh", ("х",)),
    ("ch", ("ч",)),
    ("sh", ("ш",)),
    ("ts", ("ц",)),
    ("yu", ("ю",)),
    ("ya", ("я",)),
    ("ye", ("є", "е")),
    ("yi", ("ї",)),
    ("yo", ("йо", "е")),
    ("ju", ("ю",)),
    ("ja", ("я",)),
    ("je", ("є", "е")),
    ("ia", ("ія", "я", "іа")),
    ("iu", ("ію", "ю")),
    ("a", ("а",)),
    ("b", ("б",)),
    ("c", ("ц", "к")),
    ("d", ("д",)),
    ("e", ("е",)),
    ("f", ("ф",)),
    ("g", ("г", "ґ")),
    ("h", ("х", "г")),
    ("i", ("і", "и", "й")),
    ("j", ("й",)),
    ("k", ("к",)),
    ("l", ("л",)),
    ("m", ("м",)),
    ("n", ("н",)),
    ("o", ("о",)),
    ("p", ("п",)),
    ("q", ("к",)),
    ("r", ("р",)),
    ("s", ("с",)),
    ("t", ("т",)),
    ("u", ("у",)),
    ("v", ("в",)),
    ("w", ("в",)),
    ("x", ("кс",)),
    ("y", ("и", "ы", "й")),
    ("z", ("з",)),
)
MAX_TRANSLITERATIONS = 12
# A Latin word shorter than this is more likely a unit or a size ("ml", "xl") than a word.
MIN_TRANSLITERATED_LENGTH = 3


def _transliteration_choices(word: str) -> list[tuple[str, ...]]:
    choices: list[tuple[str, ...]] = []
    position = 0
    while position < len(word):
        for latin, cyrillic in _TRANSLITERATION:
            if word.startswith(latin, position):
                choices.append(cyrillic)
                position += len(latin)
                break
        else:
            return []
    return choices


def transliterate_latin(word: str) -> list[str]:
    """Return Cyrillic readings of a Latin-script word, likeliest first, at most 12.

    ``moloko`` → ``молоко``; ``hlib`` → ``хліб``, ``хлиб``, ``хлйб``, ``гліб``, …. Returns
    [] for words that are not plain Latin letters or are too short to be worth reading.
    """
    if len(word) < MIN_TRANSLITERATED_LENGTH or not _LATIN_WORD.fullmatch(word):
        return []
    readings = [""]
    for options in _transliteration_choices(word):
        readings = [reading + option for reading in readings for option in options]
        readings = readings[: MAX_TRANSLITERATIONS * 4]
    return readings[:MAX_TRANSLITERATIONS]


# Ukrainian dative and locative forms soften a final к, г or х to ц, з or с before "і"
# (молоко → у молоці, нога → на нозі), which suffix stripping cannot undo.
_SOFTENED_ENDINGS = (("ці", "к"), ("зі", "г"), ("сі", "х"))


def stem_variants(word: str) -> list[str]:
    """Return the stem of one normalised query word followed by other stems it may mean.

    The other stems come from Latin transliteration and from undoing the Ukrainian
    consonant alternation of dative and locative forms. They are meant for query
    expansion: a wrong guess only adds a term that no product contains.
    """
    variants = [stem(word)]
    for reading in transliterate_latin(word):
        variants.append(stem_cyrillic(reading))
    for ending, consonant in _SOFTENED_ENDINGS:
        if _CYRILLIC_WORD.fullmatch(word) and word.endswith(ending):
            base = word[: -len(ending)] + consonant
            if len(base) >= MIN_STEM_LENGTH:
                variants.append(base)
    return list(dict.fromkeys(variants))


def edit_distance(first: str, second: str, *, limit: int) -> int:
    """Return the Damerau–Levenshtein distance of two words, or ``limit + 1`` if it exceeds
    ``limit``.

    Insertions, deletions, substitutions and swaps of two neighbouring letters each cost 1.
    """
    if abs(len(first) - len(second)) > limit:
        return limit + 1
    previous_row: list[int] = []
    row = list(range(len(second) + 1))
    for i, first_char in enumerate(first, start=1):
        before_previous, previous_row, row = previous_row, row, [i] + [0] * len(second)
        for j, second_char in enumerate(second, start=1):
            cost = 0 if first_char == second_char else 1
            row[j] = min(previous_row[j] + 1, row[j - 1] + 1, previous_row[j - 1] + cost)
            if i > 1 and j > 1 and first_char == second[j - 2] and first[i - 2] == second_char:
                row[j] = min(row[j], before_previous[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
    return min(row[-1], limit + 1)


# Typos are forgiven only in stems at least this long: shorter words are too often one
# letter away from an unrelated word ("пив" and "пит").
MIN_TYPO_STEM_LENGTH = 4
# Stems at least this long may have two typos.
TWO_TYPO_STEM_LENGTH = 8


def allowed_typos(word_stem: str) -> int:
    """Return how many letter edits a query stem may be away from a catalog word."""
    if len(word_stem) < MIN_TYPO_STEM_LENGTH or not word_stem.isalpha():
        return 0
    return 2 if len(word_stem) >= TWO_TYPO_STEM_LENGTH else 1
