"""Ukrainian written in Latin letters, read back in Cyrillic.

Shoppers without a Ukrainian keyboard write "dodaj druhyi" or "shcho v koshyku". Such
words turn back into Cyrillic by the usual Latin spellings of Ukrainian letters ("kh",
"zh", "shch", "y" for "и", "h" for "г"). The informal spellings that people also type are
read too: "j" and "i" after a vowel for "й", "g" for "г", "ie" and "iu" for "є" and "ю".
Latin spellings lose the soft sign and the apostrophe, so the result has neither.
Search tries several readings of each word (``catalog.text.transliterate_latin``); a
command word needs one reading, so this module gives the likeliest.
"""

# Longest spellings first, so that "shch" wins over "sh" and "zh" over "z".
_MULTI_LETTER = (
    ("shch", "щ"),
    ("sch", "щ"),
    ("zh", "ж"),
    ("kh", "х"),
    ("ts", "ц"),
    ("ch", "ч"),
    ("sh", "ш"),
    ("yu", "ю"),
    ("iu", "ю"),
    ("ya", "я"),
    ("ia", "я"),
    ("ye", "є"),
    ("ie", "є"),
    ("yo", "йо"),
)
_SINGLE_LETTER = {
    "a": "а",
    "b": "б",
    "c": "ц",
    "d": "д",
    "e": "е",
    "f": "ф",
    "g": "г",
    "h": "г",
    "j": "й",
    "k": "к",
    "l": "л",
    "m": "м",
    "n": "н",
    "o": "о",
    "p": "п",
    "q": "к",
    "r": "р",
    "s": "с",
    "t": "т",
    "u": "у",
    "v": "в",
    "w": "в",
    "x": "кс",
    "y": "и",
    "z": "з",
}
_VOWELS = frozenset("aeiouy")


def cyrillic_from_latin(word: str) -> str:
    """Return the Cyrillic reading of a lower-case Ukrainian ``word`` written in Latin letters.

    "i" after a vowel is "й" ("dodai", "pershyi"), elsewhere "і". Characters that are not
    Latin letters, such as digits, stay as they are.
    """
    letters: list[str] = []
    index = 0
    while index < len(word):
        for latin, cyrillic in _MULTI_LETTER:
            if word.startswith(latin, index):
                letters.append(cyrillic)
                index += len(latin)
                break
        else:
            letter = word[index]
            if letter == "i":
                after_vowel = index > 0 and word[index - 1] in _VOWELS
                letters.append("й" if after_vowel else "і")
            elif letter != "'":
                letters.append(_SINGLE_LETTER.get(letter, letter))
            index += 1
    return "".join(letters)


def without_soft_signs(word: str) -> str:
    """Return ``word`` without the soft sign and apostrophes, as a Latin spelling loses them."""
    return word.replace("ь", "").replace("'", "")
