"""Rule-based understanding of shopper messages in Ukrainian, English and Russian.

``parse_intent`` turns one message into an ``Intent``: what the shopper wants (search, add,
remove, set a quantity, clear or show the cart), which product they refer to and how much.
It uses word lists, not a model, so it understands short imperative messages such as
"додай 2 шт першого" or "set the first to 2" and treats anything else as a search.
"""

import re
import unicodedata
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from catalog.lexicon import lexicon_phrase_stems, lexicon_stems
from catalog.text import stem, surface_words
from conversations.assistants.transliteration import cyrillic_from_latin, without_soft_signs


class IntentKind(StrEnum):
    SEARCH = "search"
    ADD = "add"
    REMOVE = "remove"
    SET_QUANTITY = "set_quantity"
    CLEAR_CART = "clear_cart"
    SHOW_CART = "show_cart"
    HELP = "help"
    THANKS = "thanks"
    # A farewell, with or without thanks: "дякую, до побачення", "bye".
    GOODBYE = "goodbye"
    # A request to take back the last change ("скасуй", "undo"), which the assistant cannot do.
    UNDO = "undo"
    # A cart command the shopper negated ("не додавай хліб", "don't add it"): nothing changes.
    NEGATED = "negated"
    # A question about the price of a listed product: "скільки коштує перший?", "а другий?".
    PRICE = "price"


@dataclass(frozen=True)
class Ordinal:
    """A position in the list shown last: 1 is the first, -1 the last."""

    position: int


@dataclass(frozen=True)
class NameFragment:
    """Words of a product name, such as "молоко" in "прибери молоко"."""

    text: str


Reference = Ordinal | NameFragment


@dataclass(frozen=True)
class Quantity:
    """An amount with the unit the shopper named, if any.

    The unit is "pcs", "pack" (a pack or bottle word), "kg", "g", "l" or "ml". The value
    keeps its sign and may be 0 or huge: the caller rejects what no product allows.
    """

    value: Decimal
    unit: str | None = None


@dataclass(frozen=True)
class Intent:
    kind: IntentKind
    # The search terms of a SEARCH intent.
    query: str = ""
    reference: Reference | None = None
    quantity: Quantity | None = None
    # The count and the pack size that ``quantity`` multiplies, as 2 pcs and 500 g in
    # "додай 2 шт по 500 г". None without a count beside a weight or volume.
    packs: tuple[Quantity, Quantity] | None = None
    # True for a message that is only a position ("2", "другий"), which may answer the
    # question which product an earlier command meant.
    position_only: bool = False
    # True for "зменш на 1" and "decrease it by 200 g", whose ``quantity`` is the change:
    # it is never a weight or volume that names the product, even if the name states it.
    by_amount: bool = False
    # True for a removal of "все молоко" or "both milks": it takes every cart line that
    # the name matches, instead of asking which one.
    every: bool = False
    # The price ceiling and floor of a search or an add ("молоко до 40 грн", "milk over
    # 100", "від 50 до 100"), in the shop's currency, and whether it requests the cheapest
    # first ("найдешевше масло"). The floor may be above the ceiling, which fits nothing.
    max_price: Decimal | None = None
    cheapest: bool = False
    min_price: Decimal | None = None


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


def _forms(stems: dict[str, int], endings: str) -> dict[str, int]:
    """Expand stems into every word form: ``{"перш": 1}`` with "ий а" gives перший, перша."""
    return {stem + ending: value for stem, value in stems.items() for ending in endings.split()}


# Ordinal words in every case and gender a shopper is likely to type.
ORDINALS: dict[str, int] = {
    **_forms(
        {
            "перш": 1,
            "друг": 2,
            "четверт": 4,
            "п'ят": 5,
            "шост": 6,
            "сьом": 7,
            "восьм": 8,
            "дев'ят": 9,
            "десят": 10,
        },
        "ий а е у ого ої ому ій",
    ),
    **_forms({"трет": 3, "останн": -1}, "ій я є ю ього ьої ьому"),
    **_forms(
        {"перв": 1, "четверт": 4, "пят": 5, "девят": 9, "десят": 10}, "ый ая ое ую ого ой ому"
    ),
    **_forms({"втор": 2, "шест": 6, "седьм": 7, "восьм": 8}, "ой ая ое ую ого ому"),
    **_forms({"трет": 3}, "ий ья ье ью ьего ьей ьему"),
    **_forms({"последн": -1}, "ий яя ее юю его ей ему"),
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "last": -1,
}

NUMBER_WORDS: dict[str, Decimal] = {
    **dict.fromkeys(["один", "одна", "одне", "одну", "одно", "one"], Decimal(1)),
    **dict.fromkeys(["два", "дві", "двоє", "две", "two", "couple"], Decimal(2)),
    **dict.fromkeys(["три", "троє", "трое", "three"], Decimal(3)),
    **dict.fromkeys(["чотири", "четыре", "four"], Decimal(4)),
    **dict.fromkeys(["п'ять", "пять", "five"], Decimal(5)),
    **dict.fromkeys(["шість", "шесть", "six"], Decimal(6)),
    **dict.fromkeys(["сім", "семь", "seven"], Decimal(7)),
    **dict.fromkeys(["вісім", "восемь", "eight"], Decimal(8)),
    **dict.fromkeys(["дев'ять", "девять", "nine"], Decimal(9)),
    **dict.fromkeys(["десять", "ten"], Decimal(10)),
    **dict.fromkeys(["пів", "половину", "половина", "half"], Decimal("0.5")),
    **dict.fromkeys(["півтора", "півтори", "полтора", "полторы"], Decimal("1.5")),
}
# Words after a number that add a half: "два з половиною", "two and a half".
HALF_SUFFIXES: tuple[tuple[str, ...], ...] = (
    ("and", "a", "half"),
    ("and", "half"),
    ("з", "половиною"),
    ("із", "половиною"),
    ("с", "половиной"),
)
# Numbers beyond this many digits are read as infinite: no product is sold in such amounts,
# and converting them to integers would cost memory and time.
MAX_NUMBER_DIGITS = 12

UNITS: dict[str, str] = {
    **dict.fromkeys(
        ["шт", "штук", "штуки", "штука", "штуку", "pcs", "pc", "piece", "pieces", "x", "х"], "pcs"
    ),
    # A pack or a bottle is a piece of packaged goods, but means nothing for goods sold by
    # weight, so it keeps a unit of its own.
    **dict.fromkeys(
        ["пляшка", "пляшку", "пляшки", "пляшок", "бутылка", "бутылку", "бутылки", "бутылок"],
        "pack",
    ),
    # "пачек" is the Russian genitive plural ("5 пачек"). Both languages share the others.
    **dict.fromkeys(["пачка", "пачку", "пачки", "пачок", "пачек"], "pack"),
    **dict.fromkeys(["упаковка", "упаковку", "упаковки", "упаковок"], "pack"),
    **dict.fromkeys(["bottle", "bottles", "pack", "packs", "packet", "packets"], "pack"),
    **dict.fromkeys(["кг", "кіло", "кило", "kg", "kilo", "kilos"], "kg"),
    **dict.fromkeys(["кілограм", "кілограми", "кілограмів", "килограмм", "килограмма"], "kg"),
    **dict.fromkeys(["килограммов", "kilogram", "kilograms"], "kg"),
    **dict.fromkeys(["г", "гр", "грам", "грами", "грамів", "грамм", "грамма", "граммов"], "g"),
    **dict.fromkeys(["g", "gram", "grams"], "g"),
    **dict.fromkeys(["л", "літр", "літри", "літрів", "литр", "литра", "литров"], "l"),
    **dict.fromkeys(["l", "liter", "liters", "litre", "litres"], "l"),
    **dict.fromkeys(["мл", "ml"], "ml"),
}
MASS = "mass"
VOLUME = "volume"


@dataclass(frozen=True)
class MeasureUnit:
    """A unit of weight or volume: ``base_factor`` of it is one gram or one millilitre."""

    dimension: str
    base_factor: Decimal

    @property
    def base_unit(self) -> str:
        return "g" if self.dimension == MASS else "ml"


# Units of weight and volume, as opposed to counts of pieces or packs.
MEASURE_UNITS = {
    "g": MeasureUnit(MASS, Decimal(1)),
    "kg": MeasureUnit(MASS, Decimal(1000)),
    "ml": MeasureUnit(VOLUME, Decimal(1)),
    "l": MeasureUnit(VOLUME, Decimal(1000)),
}
# Units that count pieces: "pcs" ("2 шт") and "pack" ("пачка", "bottle").
COUNT_UNITS = frozenset({"pcs", "pack"})
# "півкіло" and "пол-кило" are one word for half a kilogram.
HALF_KILO_WORDS = frozenset({"півкіло", "півкілограма", "полкило", "пол-кило"})
# A word for a kilogram or a litre without a number is one of it: "додай кіло яблук".
ONE_UNIT_WORDS = _word_set("кіло кило kilo кілограм килограмм kilogram літр литр liter litre")

ADD_VERBS = _word_set(
    """додай додайте додати додам додаси додавай додавайте поклади покладіть покласти клади
    кладіть візьми візьміть візьму беру бери купи купіть куплю купити купуй купуйте закинь
    кинь добавь добавьте добавить добавляй добавляйте положи положите кладите возьми
    возьмите возьму берите покупай постав поставте поставь add put buy take grab"""
)
REMOVE_VERBS = _word_set(
    """видали видаліть видалити видаляй видаляйте прибери приберіть прибрати прибирай
    прибирайте забери заберіть вилучи вийми викинь удали удалите удалить удаляй удаляйте
    убери уберите убрать убирай убирайте выкинь remove delete drop"""
)
CLEAR_VERBS = _word_set("очисти очистіть очистити очисть спорожни очистите empty clear reset")
# "зменш на 1" and "збільш на 2" change a quantity by an amount: they take it off or add it.
# With "до" or "to" ("зменш до 1") they set the quantity, as the other set verbs do.
DECREASE_VERBS = _word_set("зменш зменши зменшіть уменьши уменьшите reduce decrease")
INCREASE_VERBS = _word_set("збільш збільши збільшіть увеличь увеличьте increase")
TARGET_PREPOSITIONS = frozenset({"до", "to"})
# Words before the new amount of a quantity change: "зміни на 3", "поменяй на 2", "set to 3".
NEW_AMOUNT_PREPOSITIONS = TARGET_PREPOSITIONS | {"на"}
# Words before the amount of any quantity change, the change itself included: "decrease by 1".
AMOUNT_PREPOSITIONS = NEW_AMOUNT_PREPOSITIONS | {"by"}
SET_VERBS = (
    _word_set(
        """зміни змініть змінити змінюй зроби зробіть встанови встановіть поміняй міняй
        измени измените изменить изменяй меняй сделай сделайте установи поменяй set change
        make update"""
    )
    | DECREASE_VERBS
    | INCREASE_VERBS
)
QUANTITY_NOUNS = _word_set("кількість кількості количество quantity qty amount")
SEARCH_VERBS = _word_set(
    """покажи покажіть показати знайди знайдіть знайти шукай шукаю пошукай пошукати підбери
    порадь є маєте маєш продаєте продаете хочу хочеться хотів хотіла потрібен потрібна потрібне потрібно
    потрібні треба найди найдите найти ищу поищи покажите нужен нужна нужно нужны есть хочу
    find search show look looking need want have got sell"""
)
CART_WORDS = _word_set(
    """кошик кошика кошику кошиком корзина корзину корзине корзині корзины корзиной
    cart basket trolley"""
)
EVERYTHING_WORDS = _word_set("все усе всё всі усі геть everything all")
# "Both" after "which one?" or beside a name means every product meant. Alone after a
# removal verb it does not clear the cart, because the cart may contain more products.
BOTH_WORDS = _word_set("обидва обидві обоє оба обе both")
# "take" with one of these, before or after its object, removes: "take it out", "take 2 off".
TAKE_OUT_PARTICLES = frozenset({"out", "off"})
MORE_WORDS = _word_set("ще еще ещё more another")
GREETING_WORDS = _word_set(
    """привіт привітик вітаю добрий доброго день ранок ранку вечір вечора здрастуйте
    здравствуйте привет добрый hello hi hey good morning afternoon evening"""
)
HELP_WORDS = _word_set(
    "допомога допоможи допоможіть вмієш можеш помощь помоги умеешь можешь help can"
)
THANKS_WORDS = _word_set("дякую дякуємо дякс спасибі спасибо пасиб thanks thank thx ty")
# Farewells; "до побачення" is "до" (a filler word) and "побачення".
FAREWELL_WORDS = _word_set("бувай бувайте побачення свидания пока bye goodbye cya")
# Words of a request to take back the last change. Only the first cart verb counts, so in
# "видали молоко, скасуй" the removal runs.
UNDO_WORDS = _word_set(
    "скасуй скасуйте скасувати відміни відмініть отмени отмените отменить undo revert"
)
# Words of a search for the cheapest products, which sorts the results by price.
CHEAPEST_WORDS = _word_set(
    """найдешевше найдешевший найдешевша найдешевшу найдешевші найдешевшого найдешевшої
    найдешевших дешевий дешева дешеве дешеву дешеві дешевое дешевый дешевая дешевую дешевые
    cheapest"""
)
# The Russian superlative "самое дешевое". Before any other adjective ("самый свежий хлеб") it
# does not request a price order, so it stays in the search.
SUPERLATIVE_WORDS = _word_set("самое самый самая самую самые")
# Words before a price ceiling: "дешевше 40", "under 40". "до" counts only with a currency
# word after the number ("до 40 грн"), because "до 2" is also a new quantity.
PRICE_CEILING_WORDS = _word_set("дешевше дешевле under below")
# Words before a price that count only with a currency word after the number: "до 40 грн",
# "за 40 грн", "for 40 uah", "по 40 грн". Such a price, or a number with a currency word
# and none of these words ("молоко 40 грн"), is a ceiling.
PRICE_CURRENCY_PREPOSITIONS = _word_set("до за по for at")
# Of those, the one that also makes a price at the end of the message, without a currency
# word: "додай молоко за 40". No count or measure follows "за", while "по 2" is two of each
# and "for 2" may be for two people.
PRICE_AT_END_PREPOSITIONS = _word_set("за")
# Conjunctions between two price limits: "дешевше 50 і дорожче 20", "under 50 and over 20".
PRICE_LIMIT_CONJUNCTIONS = _word_set("і й та а и and but")
# Words before a price floor: "дорожче 100", "over 100". A unit after the number makes it no
# price: "понад 2 кг" is a weight.
PRICE_FLOOR_WORDS = _word_set("дорожче дороже понад свыше over above")
# Words before a price floor only when a currency word or the end of the message follows
# the number ("від 100 грн", "от 100", "більше 100"), because "від 2 виробників" and
# "more than 2 apples" count other things. "more" counts only before "than".
PRICE_FLOOR_PREPOSITIONS = _word_set("від от from більше больше")
# Words between a price comparison and its number: "дорожче за 100", "дороже чем 100",
# "more than 100", "дешевле чем 40".
PRICE_COMPARISON_LINKS = _word_set("за чем than")
# The words around a price range: "від 50 до 100", "от 50 до 100", "from 50 to 100",
# "between 50 and 100". The range ends with a currency word, the end of the message or a
# word other than a unit: "від 1 до 2 кг" is a weight.
PRICE_RANGE_STARTS = _word_set("від от from between")
PRICE_RANGE_ENDS = _word_set("до to and")
HRYVNIA_WORDS = _word_set(
    "грн гривень гривні гривня гривен гривны hryvnia hryvnias hryvnas uah hrn grn ₴"
)
# A currency word after a number makes it a price. The number is compared with the shop's
# prices as written, whatever currency the word names: "сыр дороже 100 руб" is from 100.
CURRENCY_WORDS = HRYVNIA_WORDS | _word_set("руб рубль рубля рублей ₽")
_CURRENCY_PATTERN = "|".join(
    re.escape(word) for word in sorted(CURRENCY_WORDS, key=len, reverse=True)
)
# A price written together with its currency: "100грн", "40,50₴", "₴40".
_GLUED_PRICE = re.compile(
    rf"(?P<number>\d+(?:[.,]\d+)?)(?P<after>{_CURRENCY_PATTERN})"
    r"|(?P<before>[₴₽])(?P<signed>\d+(?:[.,]\d+)?)"
)
# Words of a question about the cart's total: "скільки разом?", "сума?", "what's the total?".
TOTAL_WORDS = _word_set(
    """разом сума суму всього загалом оплати сумма сумму всего итого итог оплате оплаты total
    subtotal altogether"""
)
# Words of a price question: "скільки коштує перший?", "how much is the second one?". With
# a product name instead of a position the question is a search, which lists prices.
PRICE_WORDS = _word_set(
    """коштує коштують коштуватиме ціна ціну вартість почому стоит стоят стоимость цена
    почем price prices cost costs much"""
)
# Question words that go with PRICE_WORDS and name no product: "скільки", "how much".
PRICE_QUESTION_WORDS = PRICE_WORDS | _word_set("скільки сколько how")
# A word right before a cart verb that negates it: "не додавай хліб", "don't add it",
# "do not remove the milk". The cart then stays as it is.
NEGATION_WORDS = _word_set("не don't dont not never")
# Interjections and words of a correction or an apology, which name no product: "ой, зроби 1",
# "actually make it 1", "вибач, я мав на увазі кефір".
INTERJECTIONS = _word_set(
    """ой ой-ой ох ах упс ні так ок окей добре гаразд вибач вибачте пробач пробачте нет да
    ладно хорошо извини извините прости простите oops sorry ok okay actually oh yes yeah"""
)
# Object pronouns and "such" ("прибери його", "remove 2 of them", "ще 2 таких") leave the
# product unnamed, so the command applies to the product changed last, and a number beside
# them is an amount.
PRONOUNS = _word_set(
    """його її їх нього неї них такий таку таке такого такої таких такі его ее их него нее
    такой такая такую такое таких такие він вона воно вони он она оно они it its them
    цих тих этих тех these those"""
)
# Words that carry no product meaning in a request.
# NOTE: in a cart command a final letter that is also a preposition stays a filler word, so
# "додай вітамін с" names "вітамін" and may pick another vitamin. Searches keep the letter.
FILLER_WORDS = (
    INTERJECTIONS
    | PRONOUNS
    | _word_set(
        """мені мене мною будь ласка будь-ласка будьласка у в до з із зі на і й та а також теж
        ну цей цю це ця цього того той ту те вас вам ви ти тебе тобі нас нам чи що мій моєму мого
        моя мою мої моїх мій товар товару товари позицію позиція позиції ще як як-небудь
        мне меня пожалуйста во из с со и к ли тоже мой моей эту этот это этого вы ты тебя что позицию
        позиция позиции
        the a an of to in into my me please some any for i you do does is are there can
        could would like i'd i'll i'm let's with from item items product products that this
        what what's whats which by number номер по яке який яка яку які какой какое какая какую
        какие"""
    )
)
# Pronouns that follow a preposition: "у вас", "в мене", "with me".
PREPOSITION_OBJECTS = _word_set(
    """мені мене мною нас нам нами вас вам вами тебе тобі тобою мне меня мной тебя тебе
    me us you them him her"""
)
# After one of these, "one" is a pronoun ("the second one"), not a quantity.
PRONOUN_ONE_PRECEDERS = frozenset({"the", "this", "that", "another"})
# A word before a list position: "номер 2", "item 2", "позицію 2". Without a number after it,
# a word of these that is also a filler word ("item", "товар") stays a filler word.
POSITION_MARKERS = frozenset(
    {"номер", "number", "no", "nr", "№", "#", "item", "товар"}
    | _word_set("позиція позицію позиції позиция позицию позиции")
)

# A number may carry a sign and an exponent ("-1", "1e9", "1e-1"), so that these are read
# as the amounts they are and rejected, instead of losing the sign or splitting at the "e".
# It may also start with its decimal separator (".5") or be a fraction ("1/2", "1 1/2").
_NUMBER = r"[-−–]?(?:(?:\d+\s)?\d+/\d+|\d+(?:[.,]\d+)?|[.,]\d+)(?:e[-+]?\d+)?"
_TOKEN = re.compile(
    r"[#№]\s*\d+"
    # A minus sign counts only at the start of a word: "ab-1" is not a negative number. A
    # leading separator counts only there too: "шт.5" is "шт" and 5.
    r"|(?:(?<![\w'])[-−–])?(?:(?:\d+\s)?\d+/\d+|\d+(?:[.,]\d+)?|(?<![\w'.,])[.,]\d+)"
    r"(?:e[-+]?\d+)?"
    # A percentage ("2,5%") is part of a product name, such as the fat content of milk.
    r"(?:\s?%|-?[a-zа-яіїєґ']+)?"
    r"|[a-zа-яіїєґ']+(?:-[a-zа-яіїєґ']+)*"
    r"|[#№]"
)
_PERCENTAGE = re.compile(r"^(.*?)\s?%$")
_NUMBER_WITH_SUFFIX = re.compile(rf"^({_NUMBER})-?(.*)$")
# Endings written after a digit: "2-й", "2-ге", "3-тю", "1-шу", "5-тий" (Ukrainian), "2-ой",
# "3-ья" (Russian), "2nd".
_ORDINAL_SUFFIXES = _word_set(
    "й ий ій а я е є у ю го ого ому ой ая ое ую "
    "ша ше шу ший га ге гу гий тя тє тю тій та те ту тий ья ье ью st nd rd th"
)
_APOSTROPHES = str.maketrans({"’": "'", "ʼ": "'", "`": "'", "‘": "'", "ё": "е"})
_EDGE_PUNCTUATION = '.,!?;:«»"()[]…'
# A product name in guillemets, curly or straight double quotes: «…», “…” or "…".
_QUOTED_NAME = re.compile(r'«([^«»]*)»|“([^“”]*)”|"([^"]*)"')
# The commands whose product a quoted name can be. A price question that names a product
# is a search, as it is without quotes.
_QUOTED_NAME_KINDS = frozenset({IntentKind.ADD, IntentKind.REMOVE, IntentKind.SET_QUANTITY})


@dataclass
class _Words:
    """The parts of a message other than its verb, sorted into what they mean."""

    references: list[Reference]
    quantities: list[Quantity]
    # Numbers without a unit and without an ordinal form, such as the 2 of "видали 2".
    bare_numbers: list[Decimal]
    name_words: list[str]
    # Whether the message has an object pronoun ("його", "them") for the product changed last.
    pronoun: bool = False
    # Whether the message has "ще" or "more": "видали ще 1" takes one more off.
    more: bool = False


# Fraction characters that shoppers type for weights: "½ кг", "1½ kg". A mixed number may
# have one space before its fraction ("2 ½ kg" is 2.5 kg, not 2 and 0.5 kg). The digits
# start only after a non-digit. Otherwise a run of digits is scanned again from each digit,
# which takes minutes for a message of 64 KB of digits.
_FRACTIONS = {"½": "5", "¼": "25", "¾": "75"}
_FRACTION = re.compile(r"(?:(?<!\d)(\d+)\s?)?([½¼¾])")


def _fraction_as_decimal(match: re.Match[str]) -> str:
    return f"{match.group(1) or '0'}.{_FRACTIONS[match.group(2)]}"


# The fractions of _FRACTIONS as a separator, so that fold_message() leaves them as they are.
_FRACTION_CHARACTER = re.compile(f"([{''.join(_FRACTIONS)}])")


def without_format_characters(text: str) -> str:
    """Return ``text`` without invisible format characters (Unicode category Cf).

    They include the bidi embeddings, overrides and isolates (U+202A-U+202E,
    U+2066-U+2069), which reverse the text that follows them in the widget, the zero-width
    joiners, the soft hyphen and the byte order mark.
    """
    return "".join(character for character in text if unicodedata.category(character) != "Cf")


def fold_message(text: str) -> str:
    """Return a shopper's message in the form that intent parsing reads.

    NFKC turns full-width and other compatibility forms into plain characters ("ｍｏｌｏｋｏ"
    is "moloko"), as catalog search does (catalog/text.py). The fractions ½, ¼ and ¾ are kept,
    because NFKC would write ½ as "1⁄2". Format characters are dropped.
    """
    parts = _FRACTION_CHARACTER.split(text)
    folded = "".join(
        part if part in _FRACTIONS else unicodedata.normalize("NFKC", part) for part in parts
    )
    return without_format_characters(folded)


def normalize(text: str) -> str:
    text = _FRACTION.sub(_fraction_as_decimal, text)
    return text.lower().translate(_APOSTROPHES).strip()


def tokenize(text: str) -> list[str]:
    return [_percentage_token(token) for token in _TOKEN.findall(normalize(text))]


def _percentage_token(token: str) -> str:
    """Return a percentage as one spelling, so that "2,5 %" in a message matches "2.5%"."""
    match = _PERCENTAGE.match(token)
    if match is None:
        return token
    return f"{match.group(1).replace(',', '.')}%"


def parse_intent(text: str) -> Intent:
    """Return the intent of ``text``; any message that is not a cart command is a search."""
    quoted = _QUOTED_NAME.search(text)
    if quoted is not None:
        intent = _quoted_name_intent(text, quoted)
        if intent is not None:
            return intent
    return _unquoted_intent(text)


def _unquoted_intent(text: str) -> Intent:
    """Return the intent of ``text`` read without its quotes (see ``parse_intent``)."""
    tokens = tokenize(text)
    kind = _intent_kind(tokens)
    if kind == IntentKind.SEARCH:
        prices = _price_filter(text)
        query = search_query(prices.text)
        if not (query or prices.cheapest or prices.limited):
            return Intent(kind=IntentKind.HELP)
        return Intent(
            kind=kind,
            query=query,
            max_price=prices.max_price,
            cheapest=prices.cheapest,
            min_price=prices.min_price,
        )
    if kind in (
        IntentKind.CLEAR_CART,
        IntentKind.SHOW_CART,
        IntentKind.HELP,
        IntentKind.THANKS,
        IntentKind.GOODBYE,
        IntentKind.UNDO,
        IntentKind.NEGATED,
    ):
        return Intent(kind=kind)
    if kind == IntentKind.ADD:
        prices = _price_filter(text)
        if prices.limited or prices.cheapest:
            # "додай молоко до 40 грн": the 40 is a price, not an amount to add.
            return replace(
                _unquoted_intent(prices.text),
                max_price=prices.max_price,
                min_price=prices.min_price,
                cheapest=prices.cheapest,
            )
    words = _sort_words(_operands(tokens))
    words.more = any(token in MORE_WORDS for token in tokens)
    position = _position_only(tokens, words)
    if position is not None:
        # "а другий?" asks about the second product, "другий" adds it.
        is_question = text.rstrip().endswith("?")
        kind = IntentKind.PRICE if is_question else IntentKind.ADD
        return Intent(kind=kind, reference=position, position_only=True)
    if kind == IntentKind.PRICE:
        reference = words.references[0] if words.references else None
        return Intent(kind=kind, reference=reference)
    if kind == IntentKind.SET_QUANTITY and _change_verb(tokens) is None:
        # "зменш на 1" names the change, not the new amount, so nothing before "на" is old.
        _drop_old_amounts(_operands(tokens), words)
    intent = _relative_change(_with_target(kind, words), tokens)
    if intent.kind == IntentKind.REMOVE and not intent.by_amount:
        every = any(token in EVERYTHING_WORDS or token in BOTH_WORDS for token in tokens)
        intent = replace(intent, every=every)
    return intent


def _quoted_name_intent(text: str, quoted: re.Match[str]) -> Intent | None:
    """Return the cart command of ``text`` on the product named in quotes, or None.

    The widget's add button sends `Add «Fahrenheit 451»`, and the name between the quotes
    is read whole: its numbers and units are part of the name, never an amount or a
    position. The words outside the quotes give the command and any amount ("add 2
    «Catch-22»"). A message whose words outside the quotes are no cart command, such as
    a quoted name alone, returns None and is parsed as if it had no quotes.
    """
    name = next(group for group in quoted.groups() if group is not None).strip()
    if not tokenize(name):
        return None
    # Only the first quoted name counts, so the rest is read without quotes, which also
    # keeps a message of many quoted names from recursing once per name.
    intent = _unquoted_intent(text[: quoted.start()] + " " + text[quoted.end() :])
    if intent.kind not in _QUOTED_NAME_KINDS:
        return None
    return replace(intent, reference=NameFragment(name), position_only=False)


def means_every_listed(text: str) -> bool:
    """Tell whether ``text`` means every product of a "which one?" list after a removal.

    That is "обидва", "всі", "both" or "all", alone or after a removal verb ("видали всі",
    "remove both"). In this context "видали всі" is about the listed products, so it does
    not clear the whole cart as it does elsewhere.
    """
    tokens = tokenize(text)
    removal_words = REMOVE_VERBS
    if _takes_out(tokens):
        removal_words = removal_words | TAKE_OUT_PARTICLES | {"take"}
    tokens = [token for token in tokens if token not in FILLER_WORDS and token not in removal_words]
    return bool(tokens) and all(
        token in EVERYTHING_WORDS or token in BOTH_WORDS for token in tokens
    )


def measures(text: str) -> tuple[Quantity, ...]:
    """Return the weights and volumes in ``text`` that may be part of a product name.

    Among several products that match a name, the one whose name states one of them is
    meant: "видали воду 1.5 л" and "зміни воду 1.5 л на 2" mean the 1.5 l bottle. The
    amount after "на", "до", "to" or "by" in a quantity change is the new amount or the
    change, not a name: "зміни воду на 1.5 л" and "зменш сир на 250 г" name no size.
    """
    tokens = tokenize(text)
    operands = _operands(tokens)
    if _verb_kind(tokens) == IntentKind.SET_QUANTITY:
        operands = _before_amount(operands)
    words = _sort_words(operands)
    return tuple(quantity for quantity in words.quantities if quantity.unit in MEASURE_UNITS)


def _before_amount(operands: list[str]) -> list[str]:
    """Return the words of a quantity change before "на", "до", "to" or "by" and an amount.

    Without an amount after the last of these words, all the words are returned.
    """
    split = _amount_start(operands, AMOUNT_PREPOSITIONS)
    return operands if split is None else operands[:split]


def _drop_old_amounts(operands: list[str], words: _Words) -> None:
    """Drop the amounts before "на", "до" or "to" when a new amount follows it.

    In "зміни 2 на 500 г" and "зміни 2 пачки на 500 г" the 2 is the old amount, so the new
    quantity is 500 g, not two packs of 500 g, and "зміни 2 пачки на 3" is 3. An old weight
    goes too: "зміни 2 кг на 3" is 3, not three packs of 2 kg. A count after the preposition
    still counts packs: "зміни на 2 по 500 г".
    """
    split = _amount_start(operands, NEW_AMOUNT_PREPOSITIONS)
    if split is None:
        return
    before = _sort_words(operands[:split])
    # The words before the preposition come first in ``words``, in the same order.
    del words.bare_numbers[: len(before.bare_numbers)]
    del words.quantities[: len(before.quantities)]


def _amount_start(operands: list[str], prepositions: frozenset[str]) -> int | None:
    """Return the index of the last of ``prepositions`` when an amount follows it, or None."""
    indexes = [index for index, token in enumerate(operands) if token in prepositions]
    if not indexes:
        return None
    after = _sort_words(operands[indexes[-1] + 1 :])
    if not after.quantities and not after.bare_numbers:
        return None
    return indexes[-1]


def _intent_kind(tokens: list[str]) -> IntentKind:
    if not tokens:
        return IntentKind.HELP
    verb_kind = _verb_kind(tokens)
    if verb_kind == IntentKind.REMOVE and _means_everything(tokens):
        return IntentKind.CLEAR_CART
    if verb_kind not in (None, IntentKind.SEARCH):
        return verb_kind
    if any(token in CART_WORDS for token in tokens) or _asks_total(tokens):
        return IntentKind.SHOW_CART
    if _asks_price_of_listed(tokens):
        return IntentKind.PRICE
    if verb_kind is None:
        return _kind_without_verb(tokens)
    return IntentKind.SEARCH


def _asks_total(tokens: list[str]) -> bool:
    """Tell whether the message is only a question about the total: "скільки разом?", "what's the total?"."""
    meaningful = [token for token in tokens if token not in FILLER_WORDS]
    return any(token in TOTAL_WORDS for token in meaningful) and all(
        token in TOTAL_WORDS or token in PRICE_QUESTION_WORDS or token in SEARCH_VERBS
        for token in meaningful
    )


def _asks_price_of_listed(tokens: list[str]) -> bool:
    """Tell "скільки коштує перший?" and "how much is it?" from "скільки коштує молоко?".

    A price question without a product name asks about a position or the product changed
    last. One with a name is a search, which lists the prices.
    """
    if not any(token in PRICE_WORDS for token in tokens):
        return False
    operands = [token for token in _operands(tokens) if token not in PRICE_QUESTION_WORDS]
    words = _sort_words(operands)
    return not words.name_words and not words.quantities and not words.bare_numbers


def _verb_kind(tokens: list[str]) -> IntentKind | None:
    """Return the kind of the first cart verb, else SEARCH if a search verb occurs.

    Search verbs are weaker because they also introduce other requests: "I want to add
    milk" is an ADD. A cart verb after a negation ("не додавай") gives NEGATED.
    """
    has_search_verb = False
    for index, token in enumerate(tokens):
        kind = _cart_verb_kind(tokens, index)
        if kind is not None:
            negated = index > 0 and tokens[index - 1] in NEGATION_WORDS
            # NOTE: only the first cart verb counts, so a correction in the same message
            # ("не додавай хліб, додай молоко", "don't make it 3, make it 2") changes nothing.
            return IntentKind.NEGATED if negated else kind
        has_search_verb = has_search_verb or token in SEARCH_VERBS
    return IntentKind.SEARCH if has_search_verb else None


def _cart_verb_kind(tokens: list[str], index: int) -> IntentKind | None:
    """Return the kind of cart command that ``tokens[index]`` starts, or None."""
    token = tokens[index]
    if token == "take" and _takes_out(tokens[index + 1 :]):
        return IntentKind.REMOVE
    if token in ADD_VERBS:
        return IntentKind.ADD
    if token in REMOVE_VERBS:
        return IntentKind.REMOVE
    if token in CLEAR_VERBS:
        return IntentKind.CLEAR_CART
    if token in UNDO_WORDS:
        return IntentKind.UNDO
    if token in SET_VERBS or token in QUANTITY_NOUNS:
        return IntentKind.SET_QUANTITY
    return None


def _takes_out(tokens: list[str]) -> bool:
    """Tell whether the words after "take" make a removal: "take out milk", "take it out"."""
    return any(token in TAKE_OUT_PARTICLES for token in tokens)


def _means_everything(tokens: list[str]) -> bool:
    """Tell "видали все" (clear the cart) from "видали все молоко" (remove the milk)."""
    if not any(token in EVERYTHING_WORDS for token in tokens):
        return False
    words = _sort_words([token for token in _operands(tokens) if token not in EVERYTHING_WORDS])
    return not (words.name_words or words.references)


def _kind_without_verb(tokens: list[str]) -> IntentKind:
    """Classify a message without a verb: "дякую", "привіт", "ще 2", "#2" or a product."""
    meaningful = [token for token in tokens if token not in FILLER_WORDS]
    polite_words = THANKS_WORDS | GREETING_WORDS | FAREWELL_WORDS
    if meaningful and all(token in polite_words for token in meaningful):
        if any(token in FAREWELL_WORDS for token in meaningful):
            return IntentKind.GOODBYE
        if any(token in THANKS_WORDS for token in meaningful):
            return IntentKind.THANKS
        return IntentKind.HELP
    if meaningful and all(token in HELP_WORDS | GREETING_WORDS for token in meaningful):
        return IntentKind.HELP
    more_words = [
        token
        for index, token in enumerate(tokens)
        if token in MORE_WORDS and _price_limit(tokens, index, kind=_FLOOR) is None
    ]
    if more_words:
        # "more than 100" is a price floor, not "more" of a product.
        return IntentKind.ADD
    words = _sort_words(_operands(tokens))
    if _position_only(tokens, words) is not None:
        return IntentKind.ADD
    if words.pronoun and (words.bare_numbers or words.quantities) and not words.name_words:
        # "2 таких" and "two of them" are an amount of the product changed last.
        return IntentKind.ADD
    return IntentKind.SEARCH


def _position_only(tokens: list[str], words: _Words) -> Ordinal | None:
    """Return the position of a message that is only a position ("2", "#2", "другий")."""
    if _verb_kind(tokens) is not None or any(token in MORE_WORDS for token in tokens):
        return None
    if words.name_words or words.quantities:
        return None
    if len(words.references) == 1 and not words.bare_numbers:
        reference = words.references[0]
        return reference if isinstance(reference, Ordinal) else None
    if not words.references and len(words.bare_numbers) == 1 and not words.pronoun:
        number = words.bare_numbers[0]
        if is_position(number):
            return Ordinal(int(number))
    return None


def number_only(text: str) -> bool:
    """Tell whether ``text`` is only a number that cannot be a position: "0", "-1", "2,5", "1001".

    Such a reply to "which one?" is a wrong position, not a search for the number.
    """
    tokens = tokenize(text)
    if not tokens or _verb_kind(tokens) is not None:
        return False
    if any(token in MORE_WORDS or token in CART_WORDS for token in tokens):
        return False
    words = _sort_words(tokens)
    if words.references or words.quantities or words.name_words or words.pronoun:
        return False
    return len(words.bare_numbers) == 1 and not is_position(words.bare_numbers[0])


def names_product(text: str, name: str) -> bool:
    """Tell whether ``text``, a reply without a verb, names the product called ``name``.

    "Lactel" names "Молоко Lactel 2.5%", and "1,5 л" names "Вода Моршинська 1.5 л": every
    word matches as in ``name_matches`` and every weight or volume is one the name states.
    A number, a position or a count of pieces names no product.
    """
    words = _sort_words(tokenize(text))
    if words.references or words.bare_numbers or words.pronoun:
        return False
    if any(quantity.unit not in MEASURE_UNITS for quantity in words.quantities):
        return False
    if not words.name_words and not words.quantities:
        return False
    if words.name_words and not name_matches(" ".join(words.name_words), name):
        return False
    return all(names_quantity(name, quantity) for quantity in words.quantities)


def _operands(tokens: list[str]) -> list[str]:
    """Drop the verbs and the cart words, keeping what the verb applies to."""
    verbs = ADD_VERBS | REMOVE_VERBS | CLEAR_VERBS | SET_VERBS | QUANTITY_NOUNS | SEARCH_VERBS
    operands: list[str] = []
    for index, token in enumerate(tokens):
        if token in verbs or token in CART_WORDS or token in MORE_WORDS:
            continue
        if token in TAKE_OUT_PARTICLES and "take" in tokens[:index]:
            continue
        operands.append(token)
    return operands


def _sort_words(tokens: list[str]) -> _Words:
    words = _Words(references=[], quantities=[], bare_numbers=[], name_words=[])
    index = 0
    while index < len(tokens):
        index = _sort_word(tokens, index, words)
    return words


def _sort_word(tokens: list[str], index: int, words: _Words) -> int:
    """File ``tokens[index]`` (and any unit after it) into ``words``; return the next index."""
    token = tokens[index]
    following = tokens[index + 1] if index + 1 < len(tokens) else ""
    previous = tokens[index - 1] if index > 0 else ""

    if token[0] in "#№" and token[1:].strip().isdigit():
        words.references.append(Ordinal(int(token[1:].strip())))
        return index + 1
    if token in POSITION_MARKERS and following.isdigit():
        words.references.append(Ordinal(int(following)))
        return index + 2
    if token in ORDINALS:
        words.references.append(Ordinal(ORDINALS[token]))
        return index + 1
    if token in HALF_KILO_WORDS:
        words.quantities.append(Quantity(Decimal("0.5"), "kg"))
        return index + 1
    if token == "пол" and following in UNITS:
        # Russian "пол кило", "пол литра": half of the unit. Alone, "пол" may be a name.
        words.quantities.append(Quantity(Decimal("0.5"), UNITS[following]))
        return index + 2
    if token in ONE_UNIT_WORDS:
        words.quantities.append(Quantity(Decimal(1), UNITS[token]))
        return index + 1
    if _starts_number(token):
        return _sort_number(tokens, index, words)
    if token in NUMBER_WORDS:
        if token == "one" and (previous in ORDINALS or previous in PRONOUN_ONE_PRECEDERS):
            return index + 1
        return _sort_amount(NUMBER_WORDS[token], tokens, index, words)
    if token in PRONOUNS:
        words.pronoun = True
        return index + 1
    if token in UNITS or token in FILLER_WORDS or token in EVERYTHING_WORDS:
        return index + 1
    if token in BOTH_WORDS:
        return index + 1
    if token in GREETING_WORDS or token in THANKS_WORDS or token in FAREWELL_WORDS:
        return index + 1
    words.name_words.append(token)
    return index + 1


def _sort_number(tokens: list[str], index: int, words: _Words) -> int:
    match = _NUMBER_WITH_SUFFIX.match(tokens[index])
    if match is None:  # pragma: no cover - _TOKEN only yields numbers that match
        return index + 1
    value = _decimal(match.group(1))
    suffix = match.group(2)
    if value is None:
        return index + 1
    if suffix in _ORDINAL_SUFFIXES and is_position(value):
        words.references.append(Ordinal(int(value)))
        return index + 1
    if suffix in UNITS:
        words.quantities.append(Quantity(value, UNITS[suffix]))
        return index + 1
    if suffix:
        # Digits glued to letters that are neither a unit nor an ordinal ending, such as
        # "3в1", are part of a product name.
        words.name_words.append(tokens[index])
        return index + 1
    return _sort_amount(value, tokens, index, words)


def _sort_amount(value: Decimal, tokens: list[str], index: int, words: _Words) -> int:
    """File the amount ``value`` at ``tokens[index]`` with a following half and unit, if any.

    Handles "2 з половиною кг", "one and a half kg" and "half a kilo".
    """
    index += 1
    for suffix in HALF_SUFFIXES:
        if tuple(tokens[index : index + len(suffix)]) == suffix:
            value += Decimal("0.5")
            index += len(suffix)
            break
    following = tokens[index] if index < len(tokens) else ""
    if following == "a" and index + 1 < len(tokens) and tokens[index + 1] in UNITS:
        index += 1
        following = tokens[index]
    if following in UNITS:
        words.quantities.append(Quantity(value, UNITS[following]))
        return index + 1
    words.bare_numbers.append(value)
    return index


def _starts_number(token: str) -> bool:
    unsigned = token[1:] if token[0] in "-−–" else token
    if unsigned[:1] in (".", ","):
        unsigned = unsigned[1:]
    return unsigned[:1].isdigit()


def is_position(value: Decimal) -> bool:
    """Tell whether ``value`` can be a position in a list: a whole number from 1 to 1000."""
    return value.is_finite() and value == value.to_integral_value() and 1 <= value <= 1000


def _decimal(text: str) -> Decimal | None:
    """Parse a number token; magnitudes beyond ``MAX_NUMBER_DIGITS`` digits become ±Infinity."""
    text = text.replace(",", ".").replace("−", "-").replace("–", "-")
    try:
        value = _fraction(text) if "/" in text else Decimal(text)
    except InvalidOperation:  # pragma: no cover - the token pattern admits only numbers
        return None
    return _bounded(value)


def _bounded(value: Decimal) -> Decimal:
    """Return ``value``, with magnitudes beyond ``MAX_NUMBER_DIGITS`` digits as ±Infinity."""
    if value and value.adjusted() >= MAX_NUMBER_DIGITS:
        return Decimal("Infinity").copy_sign(value)
    if value and value.adjusted() < -MAX_NUMBER_DIGITS:
        # Far below any quantity step, so it counts as zero.
        return Decimal(0)
    return value


def _packs_total(count: Decimal, size: Decimal) -> Decimal:
    """Return the amount of ``count`` packs of ``size``, for "2 по 500 г".

    A sign on either number makes the total negative, so that "-2 по -500 г" is rejected
    instead of read as 1 kg. Either number 0 gives 0, even beside an infinite one.
    """
    if not count or not size:
        return Decimal(0)
    total = _bounded(abs(count) * abs(size))
    return -total if count < 0 or size < 0 else total


def _fraction(text: str) -> Decimal:
    """Return the value of "1/2" or "-1 1/2". A zero denominator gives an infinite amount."""
    sign = Decimal(-1) if text.startswith("-") else Decimal(1)
    *whole, fraction = text.lstrip("-").split()
    numerator, denominator = (Decimal(part) for part in fraction.split("/"))
    if not denominator:
        return Decimal("Infinity").copy_sign(sign)
    return sign * (Decimal(whole[0] if whole else 0) + numerator / denominator)


def _with_target(kind: IntentKind, words: _Words) -> Intent:
    """Pick the product reference and the quantity of a cart command."""
    references = list(words.references)
    quantities = list(words.quantities)
    bare = list(words.bare_numbers)
    packs: tuple[Quantity, Quantity] | None = None
    if len(quantities) == 1 and quantities[0].unit in MEASURE_UNITS and bare:
        # A count beside a weight or volume counts packs of that size: "додай 2 по 500 г",
        # "додай 2 гречки 500 г" and "видали 2 по 500 г" are 1 kg, not 500 g.
        measure = quantities[0]
        packs = (Quantity(bare.pop(0)), measure)
        quantities = [Quantity(_packs_total(packs[0].value, measure.value), measure.unit)]
    elif (
        len(quantities) == 2
        and quantities[0].unit in COUNT_UNITS
        and quantities[1].unit in MEASURE_UNITS
    ):
        # A count of pieces or packs before a weight counts packs too: "додай 2 шт по 500 г",
        # "2 пачки по 500 г" and "2 x 500 г" are 1 kg, not 2 packs of the product's own size.
        count, measure = quantities
        packs = (count, measure)
        quantities = [Quantity(_packs_total(count.value, measure.value), measure.unit)]
    if (
        kind == IntentKind.REMOVE
        and not references
        and bare
        and is_position(bare[0])
        and not words.name_words
        and not words.pronoun
        and not words.more
    ):
        # "видали 2" is the second product, but "remove 2 of them" and "видали ще 2" are 2 of
        # the product changed last.
        references.append(Ordinal(int(bare.pop(0))))
    if not quantities and bare:
        # An added amount usually comes first ("додай 2 першого"), a new quantity last
        # ("зміни другий на 3").
        quantities.append(Quantity(bare[-1] if kind == IntentKind.SET_QUANTITY else bare[0]))
    reference: Reference | None = references[0] if references else None
    if reference is None and words.name_words:
        reference = NameFragment(" ".join(words.name_words))
    if kind == IntentKind.SET_QUANTITY and quantities:
        quantity: Quantity | None = quantities[-1]
    else:
        quantity = quantities[0] if quantities else None
    return Intent(kind=kind, reference=reference, quantity=quantity, packs=packs)


def _relative_change(intent: Intent, tokens: list[str]) -> Intent:
    """Return "зменш на 1" as a removal of 1 and "збільш на 2" as an add of 2.

    A quantity change by another verb, without an amount, or with "до" or "to" stays a
    quantity change: "зменш до 1" sets the quantity to 1.
    """
    if intent.kind != IntentKind.SET_QUANTITY or intent.quantity is None:
        return intent
    verb = _change_verb(tokens)
    if verb in DECREASE_VERBS:
        return replace(intent, kind=IntentKind.REMOVE, by_amount=True)
    if verb in INCREASE_VERBS:
        return replace(intent, kind=IntentKind.ADD, by_amount=True)
    return intent


def _change_verb(tokens: list[str]) -> str | None:
    """Return the verb of "зменш на 1" or "збільш на 2", which change by an amount.

    None for another verb, or with "до" or "to", which set the amount: "зменш до 1".
    """
    if any(token in TARGET_PREPOSITIONS for token in tokens):
        return None
    verb = next((token for token in tokens if token in SET_VERBS), None)
    return verb if verb in DECREASE_VERBS | INCREASE_VERBS else None


_PRICE = re.compile(r"\d+(?:[.,]\d+)?")


@dataclass(frozen=True)
class _PriceFilter:
    """A search split into its words and its price limits."""

    text: str
    max_price: Decimal | None = None
    min_price: Decimal | None = None
    cheapest: bool = False

    @property
    def limited(self) -> bool:
        return self.max_price is not None or self.min_price is not None


def _price_filter(text: str) -> _PriceFilter:
    """Split the price limits and the words for the cheapest off a search.

    "молоко 2,5% до 40 гривень" is "молоко 2,5%" up to 40, "сир дорожче за 100" is "сир"
    from 100 and "between 50 and 100 uah" is a search without words from 50 to 100. A
    limit whose number is 0 or less is no limit, and its words stay in the search. Several
    limits all apply, so the lowest ceiling and the highest floor count, and a floor above
    the ceiling ("дешевше 20 і дорожче 50") is returned as it is for the caller to reject.
    """
    words = [word.strip(_EDGE_PUNCTUATION) for word in normalize(text).split()]
    words = [part for word in words if word for part in _price_words(word)]
    remaining_words: list[str] = []
    max_price: Decimal | None = None
    min_price: Decimal | None = None
    cheapest = False
    index = 0
    limit_end = -1
    while index < len(words):
        limit = _price_limit_at(words, index)
        if limit is not None:
            floor, ceiling, index = limit
            if floor is not None:
                min_price = floor if min_price is None else max(min_price, floor)
            if ceiling is not None:
                max_price = ceiling if max_price is None else min(max_price, ceiling)
            limit_end = index
            continue
        word = words[index]
        following = words[index + 1] if index + 1 < len(words) else ""
        if (
            word in PRICE_LIMIT_CONJUNCTIONS
            and index == limit_end
            and _price_limit_at(words, index + 1) is not None
        ):
            # "і" joins two limits, so it is not a word of the search.
            index += 1
            continue
        if word in SUPERLATIVE_WORDS and following in CHEAPEST_WORDS:
            index += 1
            continue
        if word in CHEAPEST_WORDS:
            cheapest = True
        else:
            remaining_words.append(word)
        index += 1
    return _PriceFilter(
        text=" ".join(remaining_words),
        max_price=max_price,
        min_price=min_price,
        cheapest=cheapest,
    )


def _price_limit_at(
    words: list[str], index: int
) -> tuple[Decimal | None, Decimal | None, int] | None:
    """Read a price range, ceiling or floor that starts at ``words[index]``.

    Return the floor, the ceiling (either may be None) and the index of the first word
    after the limit, or None when no limit starts there.
    """
    if index >= len(words):
        return None
    price_range = _price_range(words, index)
    if price_range is not None:
        return price_range
    ceiling = _price_limit(words, index, kind=_CEILING)
    if ceiling is not None:
        return None, ceiling[0], ceiling[1]
    floor = _price_limit(words, index, kind=_FLOOR)
    if floor is not None:
        return floor[0], None, floor[1]
    value = _price_at(words, index)
    if value is not None:
        after, end = _after_price(words, index + 1)
        if after == "currency":
            # "молоко 40 грн" names what the shopper means to pay: at most 40.
            return None, value, end
    return None


def _price_words(word: str) -> list[str]:
    """Split a price glued to its currency ("100грн", "₴40") into the number and the word."""
    glued = _GLUED_PRICE.fullmatch(word)
    if glued is None:
        return [word]
    if glued["number"] is not None:
        return [glued["number"], glued["after"]]
    return [glued["signed"], glued["before"]]


_CEILING = "ceiling"
_FLOOR = "floor"


def _price_at(words: list[str], index: int) -> Decimal | None:
    """Return the number ``words[index]`` when it is a price above 0, else None.

    A number of more than ``MAX_NUMBER_DIGITS`` digits is no price, because no product
    costs that much and the replies cannot write it.
    """
    if index >= len(words) or not _PRICE.fullmatch(words[index]):
        return None
    value = _decimal(words[index])
    if value is None or not value.is_finite() or value <= 0:
        return None
    return value


def _after_price(words: list[str], index: int) -> tuple[str, int]:
    """Return what follows a price at ``index - 1`` and the index after its currency word.

    The first value is "currency", "end", "unit" or "word".
    """
    if index >= len(words):
        return "end", index
    if words[index] in CURRENCY_WORDS:
        return "currency", index + 1
    if words[index] in UNITS or words[index] in ONE_UNIT_WORDS:
        return "unit", index
    return "word", index


def _price_limit(words: list[str], index: int, *, kind: str) -> tuple[Decimal, int] | None:
    """Read a price ceiling or floor that starts at ``words[index]``.

    Return the price and the index of the first word after the limit, or None.
    """
    word = words[index]
    following = words[index + 1] if index + 1 < len(words) else ""
    number_index = index + 1
    if kind == _CEILING:
        needs_end = word in PRICE_CURRENCY_PREPOSITIONS
        if word not in PRICE_CEILING_WORDS and not needs_end:
            return None
    else:
        needs_end = word in PRICE_FLOOR_PREPOSITIONS or (word == "more" and following == "than")
        if word not in PRICE_FLOOR_WORDS and not needs_end:
            return None
    if word not in PRICE_CURRENCY_PREPOSITIONS and following in PRICE_COMPARISON_LINKS:
        number_index += 1
    value = _price_at(words, number_index)
    if value is None:
        return None
    after, end = _after_price(words, number_index + 1)
    if kind == _CEILING and word in PRICE_CURRENCY_PREPOSITIONS:
        # "до 2" is also a new quantity and "по 2" a count of packs, so they need a currency
        # word.
        if after == "currency" or (after == "end" and word in PRICE_AT_END_PREPOSITIONS):
            return value, end
        return None
    if after == "unit" or (needs_end and after == "word"):
        return None
    return value, end


def _price_range(words: list[str], index: int) -> tuple[Decimal | None, Decimal, int] | None:
    """Read a price range that starts at ``words[index]``: "від 50 до 100", "between 50 and 100".

    Return the floor (None for a range from 0), the ceiling and the index of the first word
    after the range, or None. A range written from the higher price is read in order.
    """
    if words[index] not in PRICE_RANGE_STARTS or index + 1 >= len(words):
        return None
    low_index = index + 1
    if not _PRICE.fullmatch(words[low_index]):
        return None
    low = _decimal(words[low_index])
    after_low, join_index = _after_price(words, low_index + 1)
    if low is None or not low.is_finite() or after_low == "unit" or join_index >= len(words):
        return None
    if words[join_index] not in PRICE_RANGE_ENDS:
        return None
    high = _price_at(words, join_index + 1)
    if high is None:
        return None
    after_high, end = _after_price(words, join_index + 2)
    if after_high == "unit":
        return None
    low, high = min(low, high), max(low, high)
    return (low if low > 0 else None), high, end


_CYRILLIC = re.compile(r"[а-яіїєґ]")
_LATIN = re.compile(r"[a-z]")


def _command_vocabulary(word_sets: tuple[frozenset[str], ...]) -> dict[str, str]:
    """Return the Cyrillic words of ``word_sets`` by their spelling without soft signs."""
    words = {word for word_set in word_sets for word in word_set if _CYRILLIC.search(word)}
    return {without_soft_signs(word): word for word in sorted(words)}


# The word lists whose words, written in Latin letters, make a message Ukrainian. Filler
# words other than the prepositions of an amount are left out, so that an English sentence
# such as "so add milk" ("со") is not taken for Ukrainian.
_UKRAINIAN_MARKER_SETS = (
    ADD_VERBS,
    REMOVE_VERBS,
    CLEAR_VERBS,
    SET_VERBS,
    QUANTITY_NOUNS,
    SEARCH_VERBS,
    CART_WORDS,
    MORE_WORDS,
    GREETING_WORDS,
    HELP_WORDS,
    THANKS_WORDS,
    FAREWELL_WORDS,
    UNDO_WORDS,
    TOTAL_WORDS,
    PRICE_QUESTION_WORDS,
    CHEAPEST_WORDS,
    PRICE_CEILING_WORDS,
    PRICE_FLOOR_WORDS,
    _word_set("більше"),
    HRYVNIA_WORDS,
    frozenset(ORDINALS),
)
# Words that name no action, and whose Latin spellings include English words: "try" (три),
# "sim" (сім), "use" (усе), "vin" (він), "den" (день). They are read in Cyrillic only in a
# message that a word of _UKRAINIAN_MARKER_SETS makes Ukrainian, so "add sim card" and
# "remove use" stay English.
_NEUTRAL_SETS = (
    PRONOUNS,
    EVERYTHING_WORDS,
    BOTH_WORDS,
    SUPERLATIVE_WORDS,
    HALF_KILO_WORDS,
    ONE_UNIT_WORDS,
    frozenset(NUMBER_WORDS),
    frozenset(UNITS),
    AMOUNT_PREPOSITIONS | {"по", "з", "із", "зі", "в", "у", "від", "за"},
    _word_set("день ранок ранку вечір вечора"),
)
_COMMAND_VOCABULARY = _command_vocabulary(_UKRAINIAN_MARKER_SETS + _NEUTRAL_SETS)
_UKRAINIAN_MARKERS = frozenset(_command_vocabulary(_UKRAINIAN_MARKER_SETS)) - frozenset(
    _command_vocabulary(_NEUTRAL_SETS)
)
# Every Latin word that the word lists know already, which is read as English.
_LATIN_VOCABULARY = frozenset(
    word
    for word_set in (FILLER_WORDS, NEGATION_WORDS, INTERJECTIONS, frozenset(_COMMAND_VOCABULARY))
    for word in word_set
) | {
    word
    for word_set in (ADD_VERBS, REMOVE_VERBS, CLEAR_VERBS, SET_VERBS, SEARCH_VERBS, CART_WORDS)
    for word in word_set
    if _LATIN.search(word)
}


def ukrainian_from_latin(text: str) -> str | None:
    """Return ``text`` with Ukrainian command words written in Latin letters in Cyrillic.

    "dodaj druhyi" becomes "додай другий" and "vydaly khlib" becomes "видали khlib": words
    that are no command word, such as product names, stay in Latin letters. A quoted
    product name ("dodaj «Молоко»") is kept as written and is not read at all. Return None
    when the text outside the quotes has Cyrillic letters or no word of
    ``_UKRAINIAN_MARKER_SETS`` written with 3 or more Latin letters.
    """
    lowered = normalize(text)
    quoted = [match.span() for match in _QUOTED_NAME.finditer(lowered)]
    starts = [0] + [end for _, end in quoted]
    ends = [start for start, _ in quoted] + [len(lowered)]
    outside = [lowered[start:end] for start, end in zip(starts, ends, strict=True)]
    unquoted = " ".join(outside)
    if _CYRILLIC.search(unquoted) or not _LATIN.search(unquoted):
        return None
    words = unquoted.split()
    readings = [_COMMAND_VOCABULARY.get(cyrillic_from_latin(_core(word))) for word in words]
    # Only a marker word that is no English word of the lists makes the message Ukrainian.
    # Once it is, "do", "na", "sim" and "vse" are read as "до", "на", "сім" and "все" too.
    if not any(
        reading is not None
        and len(_core(word)) >= 3
        and without_soft_signs(reading) in _UKRAINIAN_MARKERS
        and not _known_latin_word(_core(word))
        for word, reading in zip(words, readings, strict=True)
    ):
        return None
    parts = [_cyrillic_commands(outside[0])]
    for (start, end), following in zip(quoted, outside[1:], strict=True):
        parts.append(lowered[start:end])
        parts.append(_cyrillic_commands(following))
    return " ".join(part for part in parts if part)


def _cyrillic_commands(text: str) -> str:
    """Return ``text`` with each word that reads as a command word in Cyrillic."""
    readings = [
        (word, _COMMAND_VOCABULARY.get(cyrillic_from_latin(_core(word)))) for word in text.split()
    ]
    return " ".join(
        word if reading is None else word.replace(_core(word), reading)
        for word, reading in readings
    )


def _core(word: str) -> str:
    return word.strip(_EDGE_PUNCTUATION)


def _known_latin_word(word: str) -> bool:
    """Tell whether ``word`` is an English word of the command lists ("add", "take", "two")."""
    return (
        word in _LATIN_VOCABULARY
        or word in ORDINALS
        or word in NUMBER_WORDS
        or word in UNITS
        or word in THANKS_WORDS
    )


def search_query(text: str) -> str:
    """Return ``text`` without request words ("покажи", "I need", "please") for the search."""
    words = [word.strip(_EDGE_PUNCTUATION) for word in normalize(text).split()]
    words = [word for word in words if word]
    skipped = (
        SEARCH_VERBS
        | FILLER_WORDS
        | GREETING_WORDS
        | THANKS_WORDS
        | FAREWELL_WORDS
        | CART_WORDS
        | PRICE_QUESTION_WORDS
    )
    # Request words after the query ("вітамін с, будь ласка") do not end it.
    end = len(words)
    while end > 0 and words[end - 1] in skipped and not _names_letter(words, end - 1):
        end -= 1
    search_words = [word for word in words[: end - 1] if word not in skipped]
    if end > 0:
        last = words[end - 1]
        # A single letter ending a query names something ("вітамін с", "вітамін а"): a
        # preposition or a conjunction cannot end it.
        if last not in skipped or (search_words and _names_letter(words, end - 1)):
            search_words.append(last)
    return " ".join(search_words)


def _names_letter(words: list[str], index: int) -> bool:
    """Tell whether ``words[index]`` may be a letter name, as the "с" of "вітамін с".

    Before a pronoun a letter is a preposition: the "у" of "сыр у вас есть?".
    """
    before_pronoun = index + 1 < len(words) and words[index + 1] in PREPOSITION_OBJECTS
    return _is_letter(words[index]) and not before_pronoun


# Single-letter words that never name a letter: the pronoun "I" and the verb "є" ("is").
_NOT_LETTER_NAMES = frozenset({"i", "є"})


def _is_letter(word: str) -> bool:
    return len(word) == 1 and word.isalpha() and word not in _NOT_LETTER_NAMES


def _stem(word: str) -> str:
    """Cut a word to a prefix that its inflected forms share: "молока" and "молоко" → "моло"."""
    if len(word) >= 5:
        return word[:-2]
    if len(word) == 4:
        return word[:-1]
    return word


def _in_base_unit(quantity: Quantity) -> tuple[Decimal, str]:
    unit = MEASURE_UNITS[quantity.unit or ""]
    return quantity.value * unit.base_factor, unit.base_unit


def names_quantity(name: str, quantity: Quantity) -> bool:
    """Tell whether a product name states the weight or volume ``quantity``, in any unit.

    "Сир Комо 250 г" states 250 g and 0.25 kg. A count is not part of a name: "видали 4 шт
    батарейок" takes 4 off the line of "Батарейки AA 4 шт".
    """
    if quantity.unit not in MEASURE_UNITS:
        return False
    stated = [
        _in_base_unit(named)
        for named in _sort_words(tokenize(name)).quantities
        if named.unit in MEASURE_UNITS
    ]
    return _in_base_unit(quantity) in stated


def name_matches(fragment: str, name: str) -> bool:
    """Tell whether every word of ``fragment`` is in ``name``, ignoring endings.

    A word matches a name word that starts with its stem, a name word with the same
    catalog stem ("чорного" and "чорний"), or a name word that the catalog search's lexicon
    gives as its translation, so "milk" matches "Молоко 2,5%".
    """
    fragment_words = [word for word in tokenize(fragment) if word not in FILLER_WORDS]
    name_words = tokenize(name)
    if not fragment_words:
        return False
    name_stems = {stem(word) for word in surface_words(name)}
    catalog_stems = _catalog_stems(fragment_words)
    return all(
        any(name_word.startswith(_stem(word)) for name_word in name_words)
        or not catalog_stems[index].isdisjoint(name_stems)
        or _matches_in_cyrillic(word, name)
        for index, word in enumerate(fragment_words)
    )


def _matches_in_cyrillic(word: str, name: str) -> bool:
    """Tell whether a Latin ``word`` ("khlib") read in Cyrillic starts a word of ``name``."""
    if not _LATIN.search(word):
        return False
    reading = _stem(cyrillic_from_latin(word))
    return any(without_soft_signs(name_word).startswith(reading) for name_word in tokenize(name))


def _catalog_stems(words: list[str]) -> list[frozenset[str]]:
    """Return each word's stem as catalog search computes it, with its lexicon translations.

    A word of a lexicon phrase ("cream" in "sour cream") takes the phrase's translations
    instead of its own, as in search.
    """
    word_stems = []
    for word in words:
        surface = surface_words(word)
        word_stems.append(stem(surface[0]) if len(surface) == 1 else "")
    phrases = lexicon_phrase_stems(word_stems)
    catalog_stems: list[frozenset[str]] = []
    for index, word_stem in enumerate(word_stems):
        if not word_stem:
            catalog_stems.append(frozenset())
            continue
        translations = phrases.get(index) or lexicon_stems(word_stem)
        catalog_stems.append(translations | {word_stem})
    return catalog_stems
