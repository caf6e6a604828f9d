"""The grocery lexicon that translates query words between English, Ukrainian and Russian."""

import pytest

from catalog.lexicon import lexicon_stems
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
