"""The grocery lexicon that translates query words between English, Ukrainian and Russian."""

import pytest

from catalog.lexicon import lexicon_phrase_stems, lexicon_stems
from catalog.text import stem


@pytest.mark.parametrize(
    ("word", "translation"),
    [("cheese", "сир"), ("сыр", "сир"), ("хлеб", "хліб"), ("eggs", "яйця"), ("курица", "курка")],
)
def test_lexicon_translates(word, translation):
    assert stem(translation) in lexicon_stems(stem(word))


def test_lexicon_leaves_unknown_words():
    assert lexicon_stems(stem("iphone")) == frozenset()


def test_lexicon_excludes_the_word_itself():
    assert stem("milk") not in lexicon_stems(stem("milk"))


def test_lexicon_phrase_translates_its_words():
    translations = lexicon_phrase_stems([stem("fresh"), stem("sour"), stem("cream"), "15"])

    assert sorted(translations) == [1, 2]
    assert stem("сметана") in translations[1]
    assert translations[1] == translations[2]
    assert stem("вершки") not in translations[2]


@pytest.mark.parametrize(
    "words", [["cream", "sour"], ["sour", "fresh", "cream"], ["sour"], []], ids=str
)
def test_lexicon_phrase_needs_adjacent_words(words):
    assert lexicon_phrase_stems([stem(word) for word in words]) == {}
