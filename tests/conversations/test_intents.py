import time
from decimal import Decimal

import pytest

from conversations.assistants.intents import (
    Intent,
    IntentKind,
    NameFragment,
    Ordinal,
    Quantity,
    fold_message,
    means_every_listed,
    measures,
    name_matches,
    names_product,
    names_quantity,
    normalize,
    number_only,
    parse_intent,
    search_query,
    ukrainian_from_latin,
)

SEARCH = IntentKind.SEARCH
ADD = IntentKind.ADD
REMOVE = IntentKind.REMOVE
SET = IntentKind.SET_QUANTITY


def pieces(value: str, unit: str | None = None) -> Quantity:
    return Quantity(Decimal(value), unit)


def packs(
    count: str, size: str, unit: str, count_unit: str | None = None
) -> tuple[Quantity, Quantity]:
    """Return the count and the pack size that an intent's quantity multiplies."""
    return (pieces(count, count_unit), pieces(size, unit))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("молоко", Intent(SEARCH, query="молоко")),
        ("покажи кефір", Intent(SEARCH, query="кефір")),
        ("Знайди хліб, будь ласка", Intent(SEARCH, query="хліб")),
        ("чи є у вас кефір?", Intent(SEARCH, query="кефір")),
        ("хочу молоко 2.5%", Intent(SEARCH, query="молоко 2.5%")),
        ("I need milk", Intent(SEARCH, query="milk")),
        ("find bread", Intent(SEARCH, query="bread")),
        ("do you have oat milk?", Intent(SEARCH, query="oat milk")),
        ("найди сыр", Intent(SEARCH, query="сыр")),
        ("привіт, покажи молоко", Intent(SEARCH, query="молоко")),
    ],
)
def test_parse_search_requests(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("додай другий", Intent(ADD, reference=Ordinal(2))),
        ("додай другу", Intent(ADD, reference=Ordinal(2))),
        ("додай 2 шт першого", Intent(ADD, reference=Ordinal(1), quantity=pieces("2", "pcs"))),
        ("додай три першого", Intent(ADD, reference=Ordinal(1), quantity=pieces("3"))),
        (
            "додай дві пляшки третього",
            Intent(ADD, reference=Ordinal(3), quantity=pieces("2", "pack")),
        ),
        ("додай останній", Intent(ADD, reference=Ordinal(-1))),
        ("додай №2", Intent(ADD, reference=Ordinal(2))),
        ("додай # 3", Intent(ADD, reference=Ordinal(3))),
        ("додай номер 4", Intent(ADD, reference=Ordinal(4))),
        ("додай 2-й", Intent(ADD, reference=Ordinal(2))),
        ("додай 2-ге", Intent(ADD, reference=Ordinal(2))),
        ("додай 3-тю", Intent(ADD, reference=Ordinal(3))),
        ("видали 1-шу", Intent(REMOVE, reference=Ordinal(1))),
        ("додай 3-ье", Intent(ADD, reference=Ordinal(3))),
        ("додай 5-тий", Intent(ADD, reference=Ordinal(5))),
        ("add the second one", Intent(ADD, reference=Ordinal(2))),
        ("add 3 of the first", Intent(ADD, reference=Ordinal(1), quantity=pieces("3"))),
        ("add ten of the 2nd", Intent(ADD, reference=Ordinal(2), quantity=pieces("10"))),
        ("add the last one", Intent(ADD, reference=Ordinal(-1))),
        ("add number 5", Intent(ADD, reference=Ordinal(5))),
        ("add milk", Intent(ADD, reference=NameFragment("milk"))),
        ("I want to add milk", Intent(ADD, reference=NameFragment("milk"))),
        ("додай два молока", Intent(ADD, reference=NameFragment("молока"), quantity=pieces("2"))),
        (
            "додай 0,5 кг сиру",
            Intent(ADD, reference=NameFragment("сиру"), quantity=pieces("0.5", "kg")),
        ),
        (
            "додай 1.5 кг яблук",
            Intent(ADD, reference=NameFragment("яблук"), quantity=pieces("1.5", "kg")),
        ),
        (
            "додай пів кіло сиру",
            Intent(ADD, reference=NameFragment("сиру"), quantity=pieces("0.5", "kg")),
        ),
        (
            "додай 500г сиру",
            Intent(ADD, reference=NameFragment("сиру"), quantity=pieces("500", "g")),
        ),
        (
            "додай 2 по 500 г гречки",
            Intent(
                ADD,
                reference=NameFragment("гречки"),
                quantity=pieces("1000", "g"),
                packs=packs("2", "500", "g"),
            ),
        ),
        (
            "додай 2 гречки 500 г",
            Intent(
                ADD,
                reference=NameFragment("гречки"),
                quantity=pieces("1000", "g"),
                packs=packs("2", "500", "g"),
            ),
        ),
        (
            "добавь 3 по 1 л",
            Intent(ADD, quantity=pieces("3", "l"), packs=packs("3", "1", "l")),
        ),
        # A count of packs or pieces beside a weight counts packs of that size too.
        (
            "додай 2 пачки 500 г",
            Intent(ADD, quantity=pieces("1000", "g"), packs=packs("2", "500", "g", "pack")),
        ),
        (
            "додай 2 шт по 500 г",
            Intent(ADD, quantity=pieces("1000", "g"), packs=packs("2", "500", "g", "pcs")),
        ),
        (
            "add 2 bottles of 0.5 l",
            Intent(ADD, quantity=pieces("1.0", "l"), packs=packs("2", "0.5", "l", "pack")),
        ),
        (
            "додай 2x500г",
            Intent(ADD, quantity=pieces("1000", "g"), packs=packs("2", "500", "g", "pcs")),
        ),
        # The Cyrillic "х" that Ukrainian keyboards type for "times".
        (
            "додай 2х500г гречки",
            Intent(
                ADD,
                reference=NameFragment("гречки"),
                quantity=pieces("1000", "g"),
                packs=packs("2", "500", "g", "pcs"),
            ),
        ),
        (
            "додай 2 х 500 г",
            Intent(ADD, quantity=pieces("1000", "g"), packs=packs("2", "500", "g", "pcs")),
        ),
        ("додай 500 г 2 шт", Intent(ADD, quantity=pieces("500", "g"))),
        ("додай молоко в кошик", Intent(ADD, reference=NameFragment("молоко"))),
        ("додай ще один", Intent(ADD, quantity=pieces("1"))),
        ("ще 2", Intent(ADD, quantity=pieces("2"))),
        ("ще 2 таких", Intent(ADD, quantity=pieces("2"))),
        # Beside a pronoun a number is an amount, not a position, without a verb too.
        ("2 таких", Intent(ADD, quantity=pieces("2"))),
        ("дві такі", Intent(ADD, quantity=pieces("2"))),
        ("2 of them", Intent(ADD, quantity=pieces("2"))),
        ("таких 2 кг", Intent(ADD, quantity=pieces("2", "kg"))),
        ("другий такий", Intent(ADD, reference=Ordinal(2), position_only=True)),
        ("добавь ещё такой", Intent(ADD)),
        ("one more", Intent(ADD, quantity=pieces("1"))),
        ("добавь второй", Intent(ADD, reference=Ordinal(2))),
        ("2", Intent(ADD, reference=Ordinal(2), position_only=True)),
        ("#3", Intent(ADD, reference=Ordinal(3), position_only=True)),
        ("другий", Intent(ADD, reference=Ordinal(2), position_only=True)),
    ],
)
def test_parse_add_commands(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("видали перший", Intent(REMOVE, reference=Ordinal(1))),
        ("видали 2", Intent(REMOVE, reference=Ordinal(2))),
        ("видали позицію 3", Intent(REMOVE, reference=Ordinal(3))),
        ("remove item 1", Intent(REMOVE, reference=Ordinal(1))),
        ("прибери молоко", Intent(REMOVE, reference=NameFragment("молоко"))),
        ("видали все молоко", Intent(REMOVE, reference=NameFragment("молоко"), every=True)),
        ("remove the second", Intent(REMOVE, reference=Ordinal(2))),
        ("take out the third one", Intent(REMOVE, reference=Ordinal(3))),
        ("take it out", Intent(REMOVE)),
        ("take the milk out of the cart", Intent(REMOVE, reference=NameFragment("milk"))),
        ("take 2 of them out", Intent(REMOVE, quantity=pieces("2"))),
        ("delete milk", Intent(REMOVE, reference=NameFragment("milk"))),
        ("удали последний", Intent(REMOVE, reference=Ordinal(-1))),
        ("прибери його", Intent(REMOVE)),
        ("видали її", Intent(REMOVE)),
        ("убери её", Intent(REMOVE)),
        ("remove it", Intent(REMOVE)),
        ("видали 2 шт першого", Intent(REMOVE, reference=Ordinal(1), quantity=pieces("2", "pcs"))),
        (
            "прибери 500 г сиру",
            Intent(REMOVE, reference=NameFragment("сиру"), quantity=pieces("500", "g")),
        ),
        # Beside a pronoun a number is an amount of the product changed last, not a position.
        ("remove 2 of them", Intent(REMOVE, quantity=pieces("2"))),
        ("remove one of them", Intent(REMOVE, quantity=pieces("1"))),
        ("видали дві з них", Intent(REMOVE, quantity=pieces("2"))),
        ("прибери 2 його", Intent(REMOVE, quantity=pieces("2"))),
        ("удали 2 из них", Intent(REMOVE, quantity=pieces("2"))),
        ("видали 2 таких", Intent(REMOVE, quantity=pieces("2"))),
        # After "ще" or "more" too: one more piece off, not the first product.
        ("видали ще 1", Intent(REMOVE, quantity=pieces("1"))),
        ("remove 1 more", Intent(REMOVE, quantity=pieces("1"))),
        ("видали ще другий", Intent(REMOVE, reference=Ordinal(2))),
        # A number that cannot be a position is an amount too.
        ("видали половину", Intent(REMOVE, quantity=pieces("0.5"))),
        # A count beside a weight counts packs of that size, as in an add.
        (
            "видали 2 по 500 г",
            Intent(REMOVE, quantity=pieces("1000", "g"), packs=packs("2", "500", "g")),
        ),
        (
            "удали 2 по 0,5 кг",
            Intent(REMOVE, quantity=pieces("1.0", "kg"), packs=packs("2", "0.5", "kg")),
        ),
        (
            "видали 2 шт по 500 г",
            Intent(REMOVE, quantity=pieces("1000", "g"), packs=packs("2", "500", "g", "pcs")),
        ),
        (
            "видали 2 по 500 г першого",
            Intent(
                REMOVE,
                reference=Ordinal(1),
                quantity=pieces("1000", "g"),
                packs=packs("2", "500", "g"),
            ),
        ),
        # "зменш" keeps the count and the pack size it multiplies.
        (
            "зменш сир комо 250 г на 1",
            Intent(
                REMOVE,
                reference=NameFragment("сир комо"),
                quantity=pieces("250", "g"),
                packs=packs("1", "250", "g"),
                by_amount=True,
            ),
        ),
    ],
)
def test_parse_remove_commands(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("зменш на 1", Intent(REMOVE, quantity=pieces("1"), by_amount=True)),
        (
            "зменш першого на 1",
            Intent(REMOVE, reference=Ordinal(1), quantity=pieces("1"), by_amount=True),
        ),
        (
            "уменьши второй на 2",
            Intent(REMOVE, reference=Ordinal(2), quantity=pieces("2"), by_amount=True),
        ),
        ("decrease it by 200 g", Intent(REMOVE, quantity=pieces("200", "g"), by_amount=True)),
        (
            "зменш сир на 250 г",
            Intent(
                REMOVE,
                reference=NameFragment("сир"),
                quantity=pieces("250", "g"),
                by_amount=True,
            ),
        ),
        ("збільш на 2", Intent(ADD, quantity=pieces("2"), by_amount=True)),
        ("увеличь на 1", Intent(ADD, quantity=pieces("1"), by_amount=True)),
        (
            "increase milk by 1",
            Intent(ADD, reference=NameFragment("milk"), quantity=pieces("1"), by_amount=True),
        ),
        # With "до" or "to" the amount is the new quantity.
        ("зменш до 1", Intent(SET, quantity=pieces("1"))),
        ("збільш до 5", Intent(SET, quantity=pieces("5"))),
        ("increase milk to 3", Intent(SET, reference=NameFragment("milk"), quantity=pieces("3"))),
        # Without an amount it stays a quantity change without a quantity.
        ("зменш першого", Intent(SET, reference=Ordinal(1))),
    ],
)
def test_parse_relative_changes(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("зміни кількість другого на 3", Intent(SET, reference=Ordinal(2), quantity=pieces("3"))),
        ("зроби 5", Intent(SET, quantity=pieces("5"))),
        (
            "зроби 2 шт по 500 г",
            Intent(SET, quantity=pieces("1000", "g"), packs=packs("2", "500", "g", "pcs")),
        ),
        ("зміни кількість першого на дві", Intent(SET, reference=Ordinal(1), quantity=pieces("2"))),
        ("зміни кількість другого", Intent(SET, reference=Ordinal(2))),
        ("set the first to 2", Intent(SET, reference=Ordinal(1), quantity=pieces("2"))),
        ("make it 3", Intent(SET, quantity=pieces("3"))),
        ("зміни його на 3", Intent(SET, quantity=pieces("3"))),
        (
            "change quantity of milk to 3",
            Intent(SET, reference=NameFragment("milk"), quantity=pieces("3")),
        ),
        (
            "зроби молока 2 літри",
            Intent(SET, reference=NameFragment("молока"), quantity=pieces("2", "l")),
        ),
        ("измени количество второго на 4", Intent(SET, reference=Ordinal(2), quantity=pieces("4"))),
        # A position word before a number names a list position.
        ("change item 2 to 3", Intent(SET, reference=Ordinal(2), quantity=pieces("3"))),
        ("зміни позицію 2 на 3", Intent(SET, reference=Ordinal(2), quantity=pieces("3"))),
        ("измени позицию 2 на 3", Intent(SET, reference=Ordinal(2), quantity=pieces("3"))),
        ("зміни товар на 2", Intent(SET, quantity=pieces("2"))),
        ("измени позицию на 3", Intent(SET, quantity=pieces("3"))),
        # A bare number before the preposition is the old amount, not a count of packs.
        ("зміни 2 на 500 г", Intent(SET, quantity=pieces("500", "g"))),
        ("set 2 to 500 g", Intent(SET, quantity=pieces("500", "g"))),
        (
            "зміни сир 2 на 0,5 кг",
            Intent(SET, reference=NameFragment("сир"), quantity=pieces("0.5", "kg")),
        ),
        ("зміни 2 на 3", Intent(SET, quantity=pieces("3"))),
        # The Russian "с" before the old amount is a filler word, as the Ukrainian "з".
        (
            "измени количество молока с 2 на 3",
            Intent(SET, reference=NameFragment("молока"), quantity=pieces("3")),
        ),
        (
            "зміни кількість молока з 2 на 3",
            Intent(SET, reference=NameFragment("молока"), quantity=pieces("3")),
        ),
        # So is a count of packs or pieces.
        ("зміни 2 пачки на 500 г", Intent(SET, quantity=pieces("500", "g"))),
        ("зміни 3 шт на 1 кг", Intent(SET, quantity=pieces("1", "kg"))),
        ("change 2 packs to 500 g", Intent(SET, quantity=pieces("500", "g"))),
        (
            "зміни 2 пачки на 2 по 500 г",
            Intent(SET, quantity=pieces("1000", "g"), packs=packs("2", "500", "g")),
        ),
        ("зміни 2 пачки на 3", Intent(SET, quantity=pieces("3"))),
        # So is an old weight or volume.
        ("зміни 2 кг на 3", Intent(SET, quantity=pieces("3"))),
        ("зміни 500 г на 2", Intent(SET, quantity=pieces("2"))),
        ("change 1 l to 2 l", Intent(SET, quantity=pieces("2", "l"))),
        (
            "зміни сир комо 250 г на 3",
            Intent(SET, reference=NameFragment("сир комо"), quantity=pieces("3")),
        ),
        (
            "зміни на 2 по 500 г",
            Intent(SET, quantity=pieces("1000", "g"), packs=packs("2", "500", "g")),
        ),
        (
            "зміни 3 на 2 по 500 г",
            Intent(SET, quantity=pieces("1000", "g"), packs=packs("2", "500", "g")),
        ),
    ],
)
def test_parse_quantity_changes(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("очисти кошик", IntentKind.CLEAR_CART),
        ("clear the cart", IntentKind.CLEAR_CART),
        ("empty my cart", IntentKind.CLEAR_CART),
        ("видали все", IntentKind.CLEAR_CART),
        ("remove everything", IntentKind.CLEAR_CART),
        ("очисти корзину", IntentKind.CLEAR_CART),
        ("що в кошику?", IntentKind.SHOW_CART),
        ("покажи кошик", IntentKind.SHOW_CART),
        ("мій кошик", IntentKind.SHOW_CART),
        ("show my cart", IntentKind.SHOW_CART),
        ("what's in my cart?", IntentKind.SHOW_CART),
        ("что в корзине?", IntentKind.SHOW_CART),
        ("привіт", IntentKind.HELP),
        ("help", IntentKind.HELP),
        ("what can you do?", IntentKind.HELP),
        ("що ти вмієш?", IntentKind.HELP),
        ("покажи", IntentKind.HELP),
        ("", IntentKind.HELP),
        ("дякую!", IntentKind.THANKS),
        ("thanks", IntentKind.THANKS),
    ],
)
def test_parse_cart_and_conversation_commands(text, kind):
    assert parse_intent(text) == Intent(kind)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        # A question about the total shows the cart, which ends with the total.
        ("скільки разом?", IntentKind.SHOW_CART),
        ("сума?", IntentKind.SHOW_CART),
        ("яка загальна сума", SEARCH),
        ("скільки всього до оплати?", IntentKind.SHOW_CART),
        ("сколько всего к оплате?", IntentKind.SHOW_CART),
        ("итого?", IntentKind.SHOW_CART),
        ("what's the total?", IntentKind.SHOW_CART),
        ("how much in total", IntentKind.SHOW_CART),
        ("покажи суму", IntentKind.SHOW_CART),
        # Farewells, with or without thanks.
        ("дякую, до побачення", IntentKind.GOODBYE),
        ("бувай", IntentKind.GOODBYE),
        ("до свидания", IntentKind.GOODBYE),
        ("thanks, bye!", IntentKind.GOODBYE),
        ("goodbye", IntentKind.GOODBYE),
        ("ок дякс", IntentKind.THANKS),
        # Undo, which the assistant cannot do.
        ("скасуй", IntentKind.UNDO),
        ("відміни останню зміну", IntentKind.UNDO),
        ("отмени последнее", IntentKind.UNDO),
        ("undo", IntentKind.UNDO),
        ("не скасовуй", SEARCH),
    ],
)
def test_parse_total_farewell_and_undo(text, kind):
    assert parse_intent(text).kind == kind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("add 3 of those", Intent(ADD, quantity=pieces("3"))),
        ("add 2 of these", Intent(ADD, quantity=pieces("2"))),
        ("додай 2 цих", Intent(ADD, quantity=pieces("2"))),
        ("добавь 3 этих", Intent(ADD, quantity=pieces("3"))),
        ("remove those", Intent(REMOVE)),
    ],
)
def test_parse_demonstrative_pronouns(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("есть ли у вас водка?", "водка"),
        ("do you sell iphones?", "iphones"),
        ("ви продаєте пиво?", "пиво"),
        ("молоко, до побачення", "молоко"),
    ],
)
def test_search_query_drops_question_words(text, expected):
    assert parse_intent(text) == Intent(SEARCH, query=expected)


@pytest.mark.parametrize(
    "text",
    [
        "не додавай хліб",
        "не додавай другий",
        "не прибирай молоко",
        "не видаляй все",
        "не добавляй сыр",
        "don't add the third one",
        "dont clear the cart",
        "do not remove the milk",
    ],
)
def test_parse_negated_commands(text):
    assert parse_intent(text) == Intent(IntentKind.NEGATED)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ой, зроби 2", Intent(SET, quantity=pieces("2"))),
        ("actually make it 1", Intent(SET, quantity=pieces("1"))),
        ("ні, додай кефір", Intent(ADD, reference=NameFragment("кефір"))),
        ("вибач, прибери хліб", Intent(REMOVE, reference=NameFragment("хліб"))),
        ("sorry, remove the bread", Intent(REMOVE, reference=NameFragment("bread"))),
        ("нет, удали второй", Intent(REMOVE, reference=Ordinal(2))),
        (
            "окей, додай 2 шт першого",
            Intent(ADD, reference=Ordinal(1), quantity=pieces("2", "pcs")),
        ),
        ("прибирай хліб", Intent(REMOVE, reference=NameFragment("хліб"))),
        ("oops", Intent(IntentKind.HELP)),
    ],
)
def test_parse_commands_after_interjections(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("скільки коштує перший?", Intent(IntentKind.PRICE, reference=Ordinal(1))),
        ("сколько стоит второй?", Intent(IntentKind.PRICE, reference=Ordinal(2))),
        ("how much is the second one?", Intent(IntentKind.PRICE, reference=Ordinal(2))),
        ("what is the price of the third?", Intent(IntentKind.PRICE, reference=Ordinal(3))),
        ("покажи ціну першого", Intent(IntentKind.PRICE, reference=Ordinal(1))),
        ("скільки він коштує?", Intent(IntentKind.PRICE)),
        (
            "а другий?",
            Intent(IntentKind.PRICE, reference=Ordinal(2), position_only=True),
        ),
        ("2?", Intent(IntentKind.PRICE, reference=Ordinal(2), position_only=True)),
        ("другий", Intent(ADD, reference=Ordinal(2), position_only=True)),
        ("скільки коштує молоко?", Intent(SEARCH, query="молоко")),
        ("how much is milk", Intent(SEARCH, query="milk")),
        ("скільки є молока?", Intent(SEARCH, query="молока")),
        ("скільки коштує кошик?", Intent(IntentKind.SHOW_CART)),
        ("how are you?", Intent(IntentKind.HELP)),
    ],
)
def test_parse_price_questions(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The widget's add button quotes the product name in guillemets in every language.
        (
            "Add «Fahrenheit 451 by Ray Bradbury»",
            Intent(ADD, reference=NameFragment("Fahrenheit 451 by Ray Bradbury")),
        ),
        ("Додай «Батарейки AA 4 шт»", Intent(ADD, reference=NameFragment("Батарейки AA 4 шт"))),
        (
            "Додай «Молоко 0,84 кг ферма 2,5%»",
            Intent(ADD, reference=NameFragment("Молоко 0,84 кг ферма 2,5%")),
        ),
        ("Добавь «Catch-22»", Intent(ADD, reference=NameFragment("Catch-22"))),
        ("add the «Second Sex»", Intent(ADD, reference=NameFragment("Second Sex"))),
        ('add "Catch-22"', Intent(ADD, reference=NameFragment("Catch-22"))),
        ("add “Catch-22”", Intent(ADD, reference=NameFragment("Catch-22"))),
        # An amount outside the quotes is the amount of the command.
        (
            "add 2 «Fahrenheit 451»",
            Intent(ADD, reference=NameFragment("Fahrenheit 451"), quantity=pieces("2")),
        ),
        ("remove «Catch-22»", Intent(REMOVE, reference=NameFragment("Catch-22"))),
        (
            "set «Catch-22» to 3",
            Intent(SET, reference=NameFragment("Catch-22"), quantity=pieces("3")),
        ),
        # Without a cart command outside the quotes, the quotes change nothing.
        ("«Dune»", Intent(SEARCH, query="dune")),
        ("how much is «Catch-22»?", Intent(SEARCH, query="catch-22")),
        ("додай «»", Intent(ADD)),
    ],
)
def test_parse_quoted_product_names(text, expected):
    assert parse_intent(text) == expected


def test_parse_many_quoted_names_takes_first():
    # Each quoted name had been parsed by a recursive call, so 1,500 of them (9 KB) raised
    # RecursionError.
    text = "add «Dune» " + '"a" ' * 1500

    assert parse_intent(text) == Intent(ADD, reference=NameFragment("Dune"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("удали всё молоко", Intent(REMOVE, reference=NameFragment("молоко"), every=True)),
        ("remove all the milk", Intent(REMOVE, reference=NameFragment("milk"), every=True)),
        ("прибери обидва молока", Intent(REMOVE, reference=NameFragment("молока"), every=True)),
        ("видали обидва", Intent(REMOVE, every=True)),
        ("видали всі", Intent(IntentKind.CLEAR_CART)),
        ("прибери молоко", Intent(REMOVE, reference=NameFragment("молоко"))),
    ],
)
def test_parse_removal_of_every_match(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("обидва", True),
        ("обидва, будь ласка", True),
        ("both", True),
        ("all of them", True),
        ("всі", True),
        ("видали всі", True),
        ("прибери обидва", True),
        ("remove both", True),
        ("take out both", True),
        ("обидва молока", False),
        ("видали всі молоко", False),
        ("не видаляй все", False),
        ("очисти все", False),
        ("take both", False),
        ("другий", False),
        ("будь ласка", False),
    ],
)
def test_means_every_listed(text, expected):
    assert means_every_listed(text) is expected


def test_parse_ordinal_word_forms():
    forms = {
        1: ["перший", "першу", "першого", "перша", "first", "1st", "первый", "первую"],
        2: ["другий", "другу", "другого", "second", "2nd", "второй", "вторую"],
        3: ["третій", "третю", "третього", "third", "3rd", "третий", "третью"],
        4: ["четвертий", "четверту", "fourth", "четвертый"],
        5: ["п'ятий", "п’яту", "fifth", "пятый"],
        10: ["десятий", "tenth", "десятый"],
        -1: ["останній", "останню", "last", "последний"],
    }
    for position, words in forms.items():
        for word in words:
            assert parse_intent(f"видали {word}") == Intent(REMOVE, reference=Ordinal(position)), (
                word
            )


def test_parse_number_words():
    numbers = {
        "один": "1",
        "одну": "1",
        "два": "2",
        "дві": "2",
        "три": "3",
        "чотири": "4",
        "п'ять": "5",
        "шість": "6",
        "сім": "7",
        "вісім": "8",
        "дев'ять": "9",
        "десять": "10",
        "two": "2",
        "seven": "7",
        "пять": "5",
    }
    for word, value in numbers.items():
        assert parse_intent(f"зроби {word}") == Intent(SET, quantity=pieces(value)), word


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("покажи вітамін с", "вітамін с"),
        ("витамин с", "витамин с"),
        ("є вітамін а?", "вітамін а"),
        ("і", ""),
        ("покажи сир з", "сир з"),
        ("вітамін с, будь ласка", "вітамін с"),
        ("знайди вітамін с будь ласка", "вітамін с"),
        ("vitamin a please", "vitamin a"),
        ("покажи мені, будь ласка", ""),
        ("сир є у вас?", "сир"),
        ("сыр у вас есть?", "сыр"),
        ("есть сыр у вас?", "сыр"),
        ("хліб у мене, будь ласка", "хліб"),
        ("bread i want", "bread"),
        ("milk do i have", "milk"),
        ("молоко є?", "молоко"),
        ("вітамін с є?", "вітамін с"),
        ("вітамін с у вас є?", "вітамін с"),
        ("витамин с у вас есть?", "витамин с"),
    ],
)
def test_search_query_keeps_final_letter(text, expected):
    assert search_query(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("молоко, дякую", "молоко"),
        ("хлеб, спасибо", "хлеб"),
        ("oat milk thank you", "oat milk"),
        ("кефір у тебе є?", "кефір"),
        ("есть у тебя сыр?", "сыр"),
    ],
)
def test_search_query_drops_thanks_and_pronouns(text, expected):
    assert search_query(text) == expected


def test_search_query_drops_request_words():
    assert search_query("Покажіть мені, будь ласка, йогурт Danone!") == "йогурт danone"


@pytest.mark.parametrize(
    ("fragment", "name", "expected"),
    [
        ("молоко", "Молоко Lactel 2.5%", True),
        ("молока", "Молоко Галичина 3.2%", True),
        ("галичину", "Молоко Галичина 3.2%", True),
        ("молоко галичина", "Молоко Галичина 3.2%", True),
        ("молоко галичина", "Молоко Lactel 2.5%", False),
        ("хліба", "Хліб Київхліб білий", True),
        ("milk", "Oat milk Alpro", True),
        ("кефір", "Молоко Lactel 2.5%", False),
        ("the", "Молоко Lactel 2.5%", False),
    ],
)
def test_name_matches_ignores_word_endings(fragment, name, expected):
    assert name_matches(fragment, name) is expected


@pytest.mark.parametrize(
    ("fragment", "name", "expected"),
    [
        ("milk", "Молоко Lactel 2.5%", True),
        ("the honey", "Мед липовий 250 г", True),
        ("bananas", "Банани", True),
        # A brand in Latin letters matches by its Cyrillic reading.
        ("milk galychyna", "Молоко Галичина 3.2%", True),
        ("milk lactel", "Молоко Галичина 3.2%", False),
        ("milk 3.2%", "Молоко Галичина 3.2%", True),
        ("milk 3.2%", "Молоко Lactel 2.5%", False),
        ("sour cream", "Сметана Галичина 15%", True),
        ("cream", "Сметана Галичина 15%", False),
        ("cream", "Вершки 10%", True),
        ("milk", "Кефір 2.5%", False),
        ("молоко", "Oat milk Alpro", True),
        ("чорного чаю", "Чай чорний Lipton 25 пакетиків", True),
        ("гречаного меду", "Мед гречаний 500 г", True),
        ("зеленого чаю", "Чай чорний Lipton 25 пакетиків", False),
    ],
)
def test_name_matches_catalog_stems(fragment, name, expected):
    assert name_matches(fragment, name) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("додай -1 першого", Intent(ADD, reference=Ordinal(1), quantity=pieces("-1"))),
        ("додай −1 першого", Intent(ADD, reference=Ordinal(1), quantity=pieces("-1"))),
        (
            "зміни кількість першого на -2",
            Intent(SET, reference=Ordinal(1), quantity=pieces("-2")),
        ),
        ("додай 1e9 першого", Intent(ADD, reference=Ordinal(1), quantity=pieces("1e9"))),
        ("додай 1e999 першого", Intent(ADD, reference=Ordinal(1), quantity=pieces("Infinity"))),
        ("add 1e-999 of the first", Intent(ADD, reference=Ordinal(1), quantity=pieces("0"))),
        (
            "add 1e-1 kg of the first",
            Intent(ADD, reference=Ordinal(1), quantity=pieces("0.1", "kg")),
        ),
        ("додай півтора першого", Intent(ADD, reference=Ordinal(1), quantity=pieces("1.5"))),
        ("добавь полтора первого", Intent(ADD, reference=Ordinal(1), quantity=pieces("1.5"))),
        (
            "add one and a half kg of the first",
            Intent(ADD, reference=Ordinal(1), quantity=pieces("1.5", "kg")),
        ),
        (
            "додай два з половиною кг першого",
            Intent(ADD, reference=Ordinal(1), quantity=pieces("2.5", "kg")),
        ),
        (
            "добавь два с половиной кг первого",
            Intent(ADD, reference=Ordinal(1), quantity=pieces("2.5", "kg")),
        ),
        (
            "add half a kilo of the first",
            Intent(ADD, reference=Ordinal(1), quantity=pieces("0.5", "kg")),
        ),
        ("додай пів першого", Intent(ADD, reference=Ordinal(1), quantity=pieces("0.5"))),
        (
            "додай 500 г сиру",
            Intent(ADD, reference=NameFragment("сиру"), quantity=pieces("500", "g")),
        ),
        (
            "додай кілограм яблук",
            Intent(ADD, reference=NameFragment("яблук"), quantity=pieces("1", "kg")),
        ),
        (
            "купи литр молока",
            Intent(ADD, reference=NameFragment("молока"), quantity=pieces("1", "l")),
        ),
        (
            "добавь пол кило яблок",
            Intent(ADD, reference=NameFragment("яблок"), quantity=pieces("0.5", "kg")),
        ),
        (
            "добавь пол литра молока",
            Intent(ADD, reference=NameFragment("молока"), quantity=pieces("0.5", "l")),
        ),
        ("добавь пол", Intent(ADD, reference=NameFragment("пол"))),
        (
            "додай 3 л молока",
            Intent(ADD, reference=NameFragment("молока"), quantity=pieces("3", "l")),
        ),
        (
            "додай одну пачку другого",
            Intent(ADD, reference=Ordinal(2), quantity=pieces("1", "pack")),
        ),
        (
            "add 2 packs of the second",
            Intent(ADD, reference=Ordinal(2), quantity=pieces("2", "pack")),
        ),
        # The Russian genitive plural of a pack word, used after five and after "с".
        (
            "добавь 5 пачек молока",
            Intent(ADD, reference=NameFragment("молока"), quantity=pieces("5", "pack")),
        ),
        (
            "поменяй второе с 5 пачек на 2",
            Intent(SET, reference=Ordinal(2), quantity=pieces("2")),
        ),
        ("поменяй 5 пачек на 2", Intent(SET, quantity=pieces("2"))),
        ("видали -1", Intent(REMOVE, quantity=pieces("-1"))),
        ("-2", Intent(SEARCH, query="-2")),
    ],
)
def test_parse_signed_and_fractional_amounts(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "додай .5 кг сиру",
            Intent(ADD, reference=NameFragment("сиру"), quantity=pieces("0.5", "kg")),
        ),
        (
            "add ,5 kg of cheese",
            Intent(ADD, reference=NameFragment("cheese"), quantity=pieces("0.5", "kg")),
        ),
        ("додай -.5 першого", Intent(ADD, reference=Ordinal(1), quantity=pieces("-0.5"))),
        # A separator glued to a word is punctuation.
        ("додай 2 шт.5", Intent(ADD, quantity=pieces("2", "pcs"))),
        (
            "додай 1/2 кг сиру",
            Intent(ADD, reference=NameFragment("сиру"), quantity=pieces("0.5", "kg")),
        ),
        (
            "додай 3/4кг сиру",
            Intent(ADD, reference=NameFragment("сиру"), quantity=pieces("0.75", "kg")),
        ),
        (
            "add 1 1/2 kg of the first",
            Intent(ADD, reference=Ordinal(1), quantity=pieces("1.5", "kg")),
        ),
        (
            "додай 2\u00a01/2 кг першого",
            Intent(ADD, reference=Ordinal(1), quantity=pieces("2.5", "kg")),
        ),
        ("додай 1/0 першого", Intent(ADD, reference=Ordinal(1), quantity=pieces("Infinity"))),
    ],
)
def test_parse_leading_separator_and_fractions(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("додай молоко 3%", Intent(ADD, reference=NameFragment("молоко 3%"))),
        ("додай кефір 2,5 %", Intent(ADD, reference=NameFragment("кефір 2.5%"))),
        (
            "додай 2 шт молока 3,2%",
            Intent(ADD, reference=NameFragment("молока 3.2%"), quantity=pieces("2", "pcs")),
        ),
        ("видали молоко 2.5%", Intent(REMOVE, reference=NameFragment("молоко 2.5%"))),
        (
            "зміни молоко 2,5% на 3",
            Intent(SET, reference=NameFragment("молоко 2.5%"), quantity=pieces("3")),
        ),
    ],
)
def test_parse_percentage_as_part_of_the_name(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("fragment", "name", "expected"),
    [
        ("молоко 2,5%", "Молоко Lactel 2.5%", True),
        ("молоко 2,5 %", "Молоко Lactel 2.5%", True),
        ("молоко 3.2%", "Молоко Галичина 3,2 %", True),
        ("молоко 3.2%", "Молоко Lactel 2.5%", False),
    ],
)
def test_name_matches_percentages_in_any_spelling(fragment, name, expected):
    assert name_matches(fragment, name) is expected


@pytest.mark.parametrize(
    ("name", "quantity", "expected"),
    [
        ("Сир Комо 250 г", pieces("250", "g"), True),
        ("Сир Комо 250 г", pieces("0.25", "kg"), True),
        ("Сир Комо 0,25 кг", pieces("250", "g"), True),
        ("Молоко 2,5% 1л", pieces("1000", "ml"), True),
        ("Сир Комо 250 г", pieces("500", "g"), False),
        ("Сир Комо 250 г", pieces("250", "ml"), False),
        ("Молоко 2,5% 1л", pieces("2.5"), False),
        ("Батарейки AA 4 шт", pieces("4", "pcs"), False),
        ("Вода 6 x 1,5 л", pieces("6", "pcs"), False),
        ("Яйця 10 шт", pieces("10"), False),
    ],
)
def test_names_quantity_weights_in_any_unit(name, quantity, expected):
    assert names_quantity(name, quantity) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", True),
        ("-1", True),
        ("1001", True),
        ("2,5", True),
        ("½", True),
        ("1e999", True),
        ("0, будь ласка", True),
        ("2", False),
        ("другий", False),
        ("2 шт", False),
        ("ще 0", False),
        ("видали 0", False),
        ("молоко 0", False),
        ("0 таких", False),
        ("", False),
    ],
)
def test_number_only(text, expected):
    assert number_only(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("видали воду 1.5 л", (pieces("1.5", "l"),)),
        ("зміни воду 1,5 л на 2", (pieces("1.5", "l"),)),
        ("видали 2 шт сиру 250 г", (pieces("250", "g"),)),
        # The amount after the preposition of a quantity change is the new amount or the
        # change, not part of a name.
        ("зміни 2 кг на 500 г", (pieces("2", "kg"),)),
        ("зміни воду на 1,5 л", ()),
        ("set the water to 1.5 l", ()),
        ("зменш сир на 250 г", ()),
        ("decrease the cheese by 250 g", ()),
        ("зменш сир 250 г на 1", (pieces("250", "g"),)),
        # Without an amount after it, the preposition ends nothing.
        ("зміни воду 1,5 л на", (pieces("1.5", "l"),)),
        # Only a quantity change has a new amount: an add names its size.
        ("додай на 1,5 л води", (pieces("1.5", "l"),)),
        ("видали 2 шт молока", ()),
        ("видали молоко 2,5%", ()),
    ],
)
def test_measures(text, expected):
    assert measures(text) == expected


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        ("Lactel", "Молоко Lactel 2.5%", True),
        ("галичину", "Молоко Галичина 3.2%", True),
        ("2,5%", "Молоко Lactel 2.5%", True),
        ("2,5%", "Молоко Галичина 3.2%", False),
        ("1,5 л", "Вода Моршинська 1.5 л", True),
        ("1500 мл", "Вода Моршинська 1.5 л", True),
        ("воду 0,5 л", "Вода Моршинська 1.5 л", False),
        ("с паприкой", "Сыр с паприкой", True),
        # A number, a position, a count or a pronoun names no product.
        ("2", "Вода Моршинська 2 л", False),
        ("другий", "Вода Моршинська 1.5 л", False),
        ("2 шт", "Батарейки AA 2 шт", False),
        ("його", "Вода Моршинська 1.5 л", False),
        ("так", "Вода Моршинська 1.5 л", False),
        ("", "Вода Моршинська 1.5 л", False),
    ],
)
def test_names_product(text, name, expected):
    assert names_product(text, name) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("молоко 2,5% до 40 гривень", Intent(SEARCH, query="молоко 2,5%", max_price=Decimal(40))),
        ("I need milk under 40 hryvnias", Intent(SEARCH, query="milk", max_price=Decimal(40))),
        ("сир дешевше 100", Intent(SEARCH, query="сир", max_price=Decimal(100))),
        ("кефір до 35,50 грн", Intent(SEARCH, query="кефір", max_price=Decimal("35.50"))),
        ("а яке найдешевше масло?", Intent(SEARCH, query="масло", cheapest=True)),
        ("what is the cheapest butter?", Intent(SEARCH, query="butter", cheapest=True)),
        ("какое самое дешевое?", Intent(SEARCH, query="", cheapest=True)),
        # "до" without a currency word is no ceiling.
        ("молоко до 2", Intent(SEARCH, query="молоко 2")),
        ("under nan", Intent(SEARCH, query="under nan")),
        ("самое дешевое молоко", Intent(SEARCH, query="молоко", cheapest=True)),
        # "самый" before another adjective requests no price order.
        ("самый свежий хлеб", Intent(SEARCH, query="самый свежий хлеб")),
        ("дешевле чем 40", Intent(SEARCH, max_price=Decimal(40))),
    ],
)
def test_parse_price_filters(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("сир дорожче 100", Intent(SEARCH, query="сир", min_price=Decimal(100))),
        ("дорожче 100", Intent(SEARCH, min_price=Decimal(100))),
        ("сир дорожче за 100 грн", Intent(SEARCH, query="сир", min_price=Decimal(100))),
        ("сыр дороже 100", Intent(SEARCH, query="сыр", min_price=Decimal(100))),
        ("дороже чем 100 грн", Intent(SEARCH, min_price=Decimal(100))),
        ("від 100 грн", Intent(SEARCH, min_price=Decimal(100))),
        ("покажи сир від 100 гривень", Intent(SEARCH, query="сир", min_price=Decimal(100))),
        ("от 100", Intent(SEARCH, min_price=Decimal(100))),
        ("масло понад 80,50 грн", Intent(SEARCH, query="масло", min_price=Decimal("80.50"))),
        ("сыр свыше 200", Intent(SEARCH, query="сыр", min_price=Decimal(200))),
        ("кава більше 300", Intent(SEARCH, query="кава", min_price=Decimal(300))),
        ("more than 100", Intent(SEARCH, min_price=Decimal(100))),
        ("milk more than 100?", Intent(SEARCH, query="milk", min_price=Decimal(100))),
        ("over 100 UAH", Intent(SEARCH, min_price=Decimal(100))),
        ("find cheese above 150", Intent(SEARCH, query="cheese", min_price=Decimal(150))),
        ("cheese from 100 hryvnias", Intent(SEARCH, query="cheese", min_price=Decimal(100))),
        (
            "найдешевше молоко від 30 грн",
            Intent(SEARCH, query="молоко", min_price=Decimal(30), cheapest=True),
        ),
    ],
)
def test_parse_price_floors(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("від 50 до 100", Intent(SEARCH, min_price=Decimal(50), max_price=Decimal(100))),
        (
            "молоко від 40 до 50 грн",
            Intent(SEARCH, query="молоко", min_price=Decimal(40), max_price=Decimal(50)),
        ),
        (
            "сир від 50 грн до 100 грн",
            Intent(SEARCH, query="сир", min_price=Decimal(50), max_price=Decimal(100)),
        ),
        (
            "сыр от 50 до 100 гривен",
            Intent(SEARCH, query="сыр", min_price=Decimal(50), max_price=Decimal(100)),
        ),
        ("between 50 and 100", Intent(SEARCH, min_price=Decimal(50), max_price=Decimal(100))),
        (
            "cheese between 50 and 100 uah",
            Intent(SEARCH, query="cheese", min_price=Decimal(50), max_price=Decimal(100)),
        ),
        (
            "milk from 40 to 50",
            Intent(SEARCH, query="milk", min_price=Decimal(40), max_price=Decimal(50)),
        ),
        # A range written from the higher price, and one from 0, which is only a ceiling.
        ("від 100 до 50", Intent(SEARCH, min_price=Decimal(50), max_price=Decimal(100))),
        ("від 0 до 100", Intent(SEARCH, max_price=Decimal(100))),
    ],
)
def test_parse_price_ranges(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Quantities, weights and fat contents are no prices.
        ("дай 2 по 100 г", Intent(SEARCH, query="дай 2 100 г")),
        ("молоко 2.5%", Intent(SEARCH, query="молоко 2.5%")),
        ("100 г сиру", Intent(SEARCH, query="100 г сиру")),
        ("від 100 г", Intent(SEARCH, query="від 100 г")),
        ("від 1 до 2 кг", Intent(SEARCH, query="від 1 2 кг")),
        ("понад 2 кг", Intent(SEARCH, query="понад 2 кг")),
        ("over 1.5 l", Intent(SEARCH, query="over 1.5 l")),
        ("молоко від 1.5 л", Intent(SEARCH, query="молоко від 1.5 л")),
        # A word after the number of "від" or "from" counts something else.
        ("від 2 виробників", Intent(SEARCH, query="від 2 виробників")),
        ("over 0", Intent(SEARCH, query="over 0")),
        # A number too long to be a price stays in the search.
        ("milk under 1234567890123", Intent(SEARCH, query="milk under 1234567890123")),
        ("milk over 1234567890123", Intent(SEARCH, query="milk over 1234567890123")),
        ("від 1234567890123 до 5", Intent(SEARCH, query="від 1234567890123 5")),
    ],
)
def test_parse_no_price_limit(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("сир до 100грн", Intent(SEARCH, query="сир", max_price=Decimal(100))),
        ("сир до 40₴", Intent(SEARCH, query="сир", max_price=Decimal(40))),
        ("сир до ₴40", Intent(SEARCH, query="сир", max_price=Decimal(40))),
        ("кефір до 35,50грн.", Intent(SEARCH, query="кефір", max_price=Decimal("35.50"))),
        ("сир дорожче 100грн", Intent(SEARCH, query="сир", min_price=Decimal(100))),
        ("сир від 100₴", Intent(SEARCH, query="сир", min_price=Decimal(100))),
        ("milk under 40uah", Intent(SEARCH, query="milk", max_price=Decimal(40))),
        (
            "сир від 50грн до 100грн",
            Intent(SEARCH, query="сир", min_price=Decimal(50), max_price=Decimal(100)),
        ),
        # A unit glued to its number stays a weight.
        ("сир 100грамів", Intent(SEARCH, query="сир 100грамів")),
        ("понад 2кг", Intent(SEARCH, query="понад 2кг")),
    ],
)
def test_parse_price_glued_currency(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("сыр дороже 100 руб", Intent(SEARCH, query="сыр", min_price=Decimal(100))),
        ("сыр от 100 рублей", Intent(SEARCH, query="сыр", min_price=Decimal(100))),
        ("сыр до 100руб", Intent(SEARCH, query="сыр", max_price=Decimal(100))),
        (
            "сыр от 50 до 100 рублей",
            Intent(SEARCH, query="сыр", min_price=Decimal(50), max_price=Decimal(100)),
        ),
        ("cheese from 100 hrn", Intent(SEARCH, query="cheese", min_price=Decimal(100))),
    ],
)
def test_parse_price_other_currency_words(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("syr vid 100 hrn", Intent(SEARCH, query="syr", min_price=Decimal(100))),
        (
            "syr vid 50 do 100 hrn",
            Intent(SEARCH, query="syr", min_price=Decimal(50), max_price=Decimal(100)),
        ),
        ("syr bilshe 100", Intent(SEARCH, query="syr", min_price=Decimal(100))),
        ("syr dorozhche za 100", Intent(SEARCH, query="syr", min_price=Decimal(100))),
        ("moloko ponad 2 kg", Intent(SEARCH, query="moloko понад 2 кг")),
    ],
)
def test_parse_price_limits_in_latin_letters(text, expected):
    ukrainian = ukrainian_from_latin(text)

    assert ukrainian is not None
    assert parse_intent(ukrainian) == expected


def test_more_than_count_stays_add():
    assert parse_intent("more than 2 apples").kind == ADD
    assert parse_intent("more than 2 apples").min_price is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "додай молоко до 40 грн",
            Intent(ADD, reference=NameFragment("молоко"), max_price=Decimal(40)),
        ),
        (
            "add milk under 40 uah",
            Intent(ADD, reference=NameFragment("milk"), max_price=Decimal(40)),
        ),
        (
            "добавь молоко до 40 руб",
            Intent(ADD, reference=NameFragment("молоко"), max_price=Decimal(40)),
        ),
        (
            "додай молоко за 40грн",
            Intent(ADD, reference=NameFragment("молоко"), max_price=Decimal(40)),
        ),
        # "за" needs no currency word at the end of the message: it never comes before a count.
        (
            "додай молоко за 40",
            Intent(ADD, reference=NameFragment("молоко"), max_price=Decimal(40)),
        ),
        (
            "добавь молоко за 40.",
            Intent(ADD, reference=NameFragment("молоко"), max_price=Decimal(40)),
        ),
        (
            "додай 2 молока за 40",
            Intent(
                ADD,
                reference=NameFragment("молока"),
                quantity=Quantity(Decimal(2)),
                max_price=Decimal(40),
            ),
        ),
        ("add milk for 40 uah", Intent(ADD, reference=NameFragment("milk"), max_price=Decimal(40))),
        ("додай молоко 40 ₴", Intent(ADD, reference=NameFragment("молоко"), max_price=Decimal(40))),
        (
            "додай молоко дешевше 40",
            Intent(ADD, reference=NameFragment("молоко"), max_price=Decimal(40)),
        ),
        (
            "додай молоко від 50 грн",
            Intent(ADD, reference=NameFragment("молоко"), min_price=Decimal(50)),
        ),
        (
            "add milk between 20 and 40",
            Intent(
                ADD, reference=NameFragment("milk"), min_price=Decimal(20), max_price=Decimal(40)
            ),
        ),
        (
            "додай 2 молока до 40 грн",
            Intent(
                ADD,
                reference=NameFragment("молока"),
                quantity=Quantity(Decimal(2)),
                max_price=Decimal(40),
            ),
        ),
        ("додай найдешевше молоко", Intent(ADD, reference=NameFragment("молоко"), cheapest=True)),
        ("add the cheapest one", Intent(ADD, cheapest=True)),
    ],
)
def test_parse_add_price_limits(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("додай 2 молока", Intent(ADD, reference=NameFragment("молока"), quantity=Quantity(2))),
        ("add 3 milk", Intent(ADD, reference=NameFragment("milk"), quantity=Quantity(3))),
        (
            "додай молоко 2 шт",
            Intent(ADD, reference=NameFragment("молоко"), quantity=Quantity(2, "pcs")),
        ),
        (
            "додай 2 л молока",
            Intent(ADD, reference=NameFragment("молока"), quantity=Quantity(2, "l")),
        ),
        (
            "додай молоко до 40",
            Intent(ADD, reference=NameFragment("молоко"), quantity=Quantity(40)),
        ),
        (
            "додай 2 по 500 г",
            Intent(
                ADD,
                quantity=Quantity(1000, "g"),
                packs=(Quantity(2), Quantity(500, "g")),
            ),
        ),
    ],
)
def test_add_quantities_are_no_prices(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "молоко дешевше 20 грн і дорожче 50 грн",
            Intent(SEARCH, query="молоко", min_price=Decimal(50), max_price=Decimal(20)),
        ),
        (
            "milk under 20 over 50",
            Intent(SEARCH, query="milk", min_price=Decimal(50), max_price=Decimal(20)),
        ),
        (
            "milk under 50 and over 20",
            Intent(SEARCH, query="milk", min_price=Decimal(20), max_price=Decimal(50)),
        ),
        # Every limit applies: the lowest ceiling and the highest floor.
        ("сир дешевше 80 і дешевше 60", Intent(SEARCH, query="сир", max_price=Decimal(60))),
        (
            "від 30 до 50 дешевше 20",
            Intent(SEARCH, min_price=Decimal(30), max_price=Decimal(20)),
        ),
        (
            "від 50 до 20 грн",
            Intent(SEARCH, min_price=Decimal(20), max_price=Decimal(50)),
        ),
        ("молоко за 40 грн", Intent(SEARCH, query="молоко", max_price=Decimal(40))),
        ("молоко за 40", Intent(SEARCH, query="молоко", max_price=Decimal(40))),
        # Before another word "за 20" stays in the search.
        ("хліб за 20 і молоко", Intent(SEARCH, query="хліб за 20 молоко")),
        ("молоко 2,5% 40 грн", Intent(SEARCH, query="молоко 2,5%", max_price=Decimal(40))),
    ],
)
def test_parse_combined_price_limits(text, expected):
    assert parse_intent(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pryvit", "привіт"),
        ("dodaj druhe", "додай друге"),
        ("dodai pershyi", "додай перший"),
        ("Dodaj 2 sht tretoho", "додай 2 шт третього"),
        ("skilky koshtuye druhyi?", "скільки коштує другий?"),
        ("shcho v koshyku?", "shcho в кошику?"),
        ("vydaly khlib", "видали khlib"),
        ("ochysty koshyk", "очисти кошик"),
        ("zminy kilkist pershoho na 3", "зміни кількість першого на 3"),
        ("diakuyu", "дякую"),
        ("dyakuyu, do pobachennia", "дякую, до побачення"),
        ("zmensh do 1", "зменш до 1"),
        ("shche odyn", "ще один"),
        # Numbers, pronouns and "все" are read in Cyrillic once a command word is.
        ("dodaj sim", "додай сім"),
        ("vydaly vse", "видали все"),
        # Alone they are no Ukrainian: their Latin spellings are also English words.
        ("remove use", None),
        ("add sim card", None),
        ("try oat milk", None),
        ("add vin santo", None),
        # "від" alone is no Ukrainian either, and "rub" is no currency word of the lists.
        ("vid 50 do 100", None),
        ("add bbq rub", None),
        ("red wine for the den", None),
        # A quoted product name is kept as written and its letters do not count.
        ("dodaj «Молоко»", "додай «молоко»"),
        ('dodaj 2 "Молоко Галичина"', 'додай 2 "молоко галичина"'),
        ("dodaj «Vse dlya domu»", "додай «vse dlya domu»"),
        ("add «Молоко»", None),
        ("«Молоко»", None),
        # English, product words alone and Cyrillic text are left as they are.
        ("add the second one", None),
        ("so add milk", None),
        ("take it out", None),
        ("thanks", None),
        ("moloko", None),
        ("2 sht", None),
        ("додай другий", None),
        ("", None),
    ],
)
def test_ukrainian_from_latin(text, expected):
    assert ukrainian_from_latin(text) == expected


@pytest.mark.parametrize(
    ("fragment", "name", "expected"),
    [
        ("khlib", "Хліб Київхліб білий", True),
        ("moloka", "Молоко Lactel 2.5%", True),
        ("kefiru", "Кефір 1%", True),
        ("lactel", "Молоко Lactel 2.5%", True),
        ("khlib", "Молоко Lactel 2.5%", False),
    ],
)
def test_name_matches_latin_spelling(fragment, name, expected):
    assert name_matches(fragment, name) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("½", "0.5"),
        ("12½ кг", "12.5 кг"),
        ("2 ½ kg", "2.5 kg"),
        ("1 2½", "1 2.5"),
        ("x12¾", "x12.75"),
        ("12345", "12345"),
    ],
)
def test_normalize_fractions(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize("tail", ["", "½"])
def test_parse_long_digit_run_fast(tail):
    # A message at the size limit of 65,536 bytes. A fraction pattern that scans the digits
    # again from each digit takes minutes on it.
    text = "додай " + "9" * 65_000 + tail
    started = time.perf_counter()

    parse_intent(text)
    measures(text)
    search_query(text)

    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("ｍｏｌｏｋｏ", "moloko"),
        ("додай ２ шт", "додай 2 шт"),
        ("додай 1½ кг", "додай 1½ кг"),
        ("\u202eмолоко\u202c", "молоко"),
        ("мо\u00adло\u200dко\u2066", "молоко"),
    ],
)
def test_fold_message(text, folded):
    assert fold_message(text) == folded
