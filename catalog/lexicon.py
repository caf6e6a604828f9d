"""A small English–Ukrainian–Russian lexicon of everyday grocery words, for query expansion.

Each group lists words that name the same kind of food in the three languages (singular
and plural, where English has both). A query word that belongs to a group also matches
the other words of the group in the full-text stage, so ``cheese`` finds ``сир``, ``хлеб``
finds ``хліб`` and ``курка`` finds ``курица``. The words are general vocabulary taken from
a dictionary, not from any shop's catalog or query log. Brands, pack sizes and product
lines never belong here.

Groups are matched on stems (``catalog.text.stem``), so inflected forms of a listed word
expand too. A word should belong to one group only; when it does not, the first group
that lists it wins. An entry of several words ("sour cream") is a phrase: it matches
those words next to each other in a query, which then translate to the group's
single-word entries instead of their own groups ("cream" alone is "вершки").
"""

from collections.abc import Sequence
from functools import cache

from catalog.text import stem, surface_words

GROCERY_GROUPS: tuple[tuple[str, ...], ...] = (
    # Dairy.
    ("milk", "молоко"),
    ("kefir", "кефір", "кефир"),
    ("cheese", "сир", "сыр"),
    ("butter", "масло"),
    ("sour cream", "smetana", "сметана"),
    ("cream", "вершки", "сливки"),
    ("yogurt", "yoghurt", "йогурт"),
    ("margarine", "маргарин"),
    ("ryazhenka", "ряжанка", "ряженка"),
    ("cottage", "кисломолочний", "творог", "творожный"),
    # Eggs, bread and baking.
    ("egg", "eggs", "яйце", "яйця", "яйцо", "яйца"),
    ("bread", "loaf", "хліб", "хлеб"),
    ("baton", "батон"),
    ("rye", "житній", "ржаной"),
    ("wheat", "пшеничний", "пшеничный"),
    ("flour", "борошно", "мука"),
    ("sugar", "цукор", "сахар"),
    ("salt", "сіль", "соль"),
    ("yeast", "дріжджі", "дрожжи"),
    # Grains, pasta and pulses.
    ("buckwheat", "гречка", "гречаний", "гречневый"),
    ("rice", "рис"),
    ("oats", "oatmeal", "вівсянка", "вівсяний", "овсянка", "овсяный"),
    ("millet", "пшоно", "пшено"),
    ("pasta", "macaroni", "spaghetti", "макарони", "макароны", "спагеті", "спагетти"),
    ("beans", "квасоля", "фасоль"),
    ("peas", "горох"),
    ("lentils", "сочевиця", "чечевица"),
    ("cereal", "крупа"),
    # Oils, sauces and spices.
    ("oil", "олія"),
    ("sunflower", "соняшниковий", "подсолнечный"),
    ("vinegar", "оцет", "уксус"),
    ("pepper", "перець", "перец"),
    ("spice", "spices", "спеції", "приправа", "специи"),
    ("ketchup", "кетчуп"),
    ("mayonnaise", "майонез"),
    ("mustard", "гірчиця", "горчица"),
    ("honey", "мед"),
    # Meat and fish.
    ("meat", "мясо"),
    ("chicken", "курка", "курчата", "бройлер", "курятина", "курица", "куриный", "курячий"),
    ("pork", "свинина", "свинячий", "свиной"),
    ("beef", "яловичина", "говядина"),
    ("turkey", "індичка", "индейка"),
    ("sausage", "sausages", "ковбаса", "колбаса", "сосиски", "сардельки"),
    ("ham", "шинка", "ветчина"),
    ("bacon", "бекон"),
    ("lard", "сало"),
    ("liver", "печінка", "печень"),
    ("fish", "риба", "рыба"),
    ("herring", "оселедець", "селедка", "сельдь"),
    ("mackerel", "скумбрія", "скумбрия"),
    ("salmon", "лосось", "сьомга", "семга"),
    ("hake", "хек"),
    ("shrimp", "креветки"),
    # Vegetables.
    ("vegetables", "овочі", "овощи"),
    ("potato", "potatoes", "картопля", "картофель", "картошка"),
    ("carrot", "carrots", "морква", "морковь"),
    ("onion", "onions", "цибуля", "лук"),
    ("garlic", "часник", "чеснок"),
    ("cabbage", "капуста"),
    ("beetroot", "beet", "beets", "буряк", "свекла", "свёкла"),
    ("cucumber", "cucumbers", "огірок", "огірки", "огурец", "огурцы"),
    ("tomato", "tomatoes", "помідор", "помідори", "томат", "помидор", "помидоры"),
    ("pumpkin", "гарбуз", "тыква"),
    ("zucchini", "кабачок", "кабачки"),
    ("mushroom", "mushrooms", "гриби", "печериці", "грибы", "шампиньоны"),
    ("sauerkraut", "квашена", "квашеная"),
    ("pickled", "мариновані", "маринованные", "солоні", "соленые"),
    # Fruit and nuts.
    ("fruit", "fruits", "фрукти", "фрукты"),
    ("apple", "apples", "яблуко", "яблука", "яблоко", "яблоки"),
    ("pear", "pears", "груша", "груші", "груши"),
    ("banana", "bananas", "банан", "банани", "бананы"),
    ("orange", "oranges", "апельсин", "апельсини", "апельсины"),
    ("lemon", "lemons", "лимон", "лимони", "лимоны"),
    ("grapes", "виноград"),
    ("tangerine", "mandarin", "мандарин", "мандарини", "мандарины"),
    ("kiwi", "ківі", "киви"),
    ("plum", "plums", "слива", "сливи", "сливы"),
    ("raisins", "родзинки", "изюм"),
    ("prunes", "чорнослив", "чернослив"),
    ("apricot", "apricots", "курага", "абрикос"),
    ("dried", "сушені", "сушеные", "сухофрукти", "сухофрукты"),
    ("nuts", "горіхи", "орехи"),
    ("walnut", "walnuts", "волоський", "грецкий"),
    ("peanut", "peanuts", "арахіс", "арахис"),
    ("berries", "ягоди", "ягоды"),
    # Drinks and sweets.
    ("water", "вода"),
    ("juice", "сік", "сок"),
    ("tea", "чай"),
    ("coffee", "кава", "кофе"),
    ("cocoa", "какао"),
    ("beer", "пиво"),
    ("wine", "вино"),
    ("candy", "sweets", "цукерки", "конфеты"),
    ("chocolate", "шоколад", "шоколадні", "шоколадные"),
    ("cookies", "biscuits", "печиво", "печенье"),
    ("ground", "мелена", "молотый"),
    ("instant", "розчинна", "растворимый"),
    ("green", "зелений", "зеленый"),
    ("black", "чорний", "черный"),
    # Household.
    ("soap", "мило", "мыло"),
    ("detergent", "порошок"),
)


@cache
def _stem_groups() -> dict[str, frozenset[str]]:
    """Map the stem of every single-word lexicon entry to the stems of its group."""
    groups: dict[str, frozenset[str]] = {}
    for words in GROCERY_GROUPS:
        stems = frozenset(
            stem(surface[0]) for word in words if len(surface := surface_words(word)) == 1
        )
        for member in stems:
            groups.setdefault(member, stems)
    return groups


def lexicon_stems(word_stem: str) -> frozenset[str]:
    """Return the stems that translate ``word_stem``, without ``word_stem`` itself."""
    return _stem_groups().get(word_stem, frozenset()) - {word_stem}


@cache
def _phrase_groups() -> dict[tuple[str, ...], frozenset[str]]:
    """Map the stems of every multi-word lexicon entry to those of its group's one-word entries."""
    phrases: dict[tuple[str, ...], frozenset[str]] = {}
    for words in GROCERY_GROUPS:
        single = frozenset(
            stem(surface[0]) for word in words if len(surface := surface_words(word)) == 1
        )
        for word in words:
            surface = surface_words(word)
            if len(surface) > 1:
                phrases.setdefault(tuple(stem(part) for part in surface), single)
    return phrases


def lexicon_phrase_stems(word_stems: Sequence[str]) -> dict[int, frozenset[str]]:
    """Return the translations of the lexicon phrases in a query, by query word position.

    ``word_stems`` are the stems of the query's words in order. Each word of a phrase found
    among them maps to the stems of the phrase's group. A word in two phrases gets the
    first one's.
    """
    translations: dict[int, frozenset[str]] = {}
    for phrase, stems in _phrase_groups().items():
        for start in range(len(word_stems) - len(phrase) + 1):
            if tuple(word_stems[start : start + len(phrase)]) != phrase:
                continue
            for position in range(start, start + len(phrase)):
                translations.setdefault(position, stems)
    return translations
