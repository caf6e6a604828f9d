"""Amounts in shopper messages: signs, exponents, halves, and weights of packaged goods.

Each case shows products as a search would, sends one message through the API and checks
the reply and what the merchant's cart webhook received.
"""

import pytest

from conversations.tools import ShownProduct
from merchant.server import start_merchant
from tests.conversations.chat import cart_posts, reply_text, send
from tests.conversations.shop_data import SESSION_ID, STORE_ID, show
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db

# A packaged cheese of 250 g, a milk pack of 840 g without a volume, a bottle of oil of
# 900 ml, and a cheese sold by weight.
CHEESE_PACK = ShownProduct(sku="cheese-pack", name="Сир Комо 250 г", price=120.0, weight=250)
MILK_PACK = ShownProduct(sku="milk-pack", name="Молоко Ферма 2.5%", price=40.0, weight=840)
OIL = ShownProduct(sku="oil-bottle", name="Олія Щедрий лан", price=80.0, volume=900)
CHEESE_KG = ShownProduct(
    sku="cheese-kg", name="Сир Гауда ваговий", price=400.0, unit="kg", quantity_step=0.01
)
PRODUCTS = [CHEESE_PACK, MILK_PACK, OIL, CHEESE_KG]


@pytest.fixture
def merchant(tenant, local_webhooks):
    catalog = [
        {"sku": product.sku, "name": product.name, "unit": product.unit} for product in PRODUCTS
    ]
    stock = {
        product.sku: {"price": product.price, "in_stock": True, "stock": 1000}
        for product in PRODUCTS
    }
    server = start_merchant(secret=tenant.webhook_settings.secret, stock=stock, catalog=catalog)
    tenant.webhook_settings.cart_url = server.cart_url
    tenant.webhook_settings.products_url = server.products_url
    tenant.webhook_settings.save()
    yield server
    server.shutdown()


@pytest.fixture
def shown(tenant, merchant):
    """A conversation that listed the four products, in the order of ``PRODUCTS``."""
    conversation = ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)
    show(conversation, *PRODUCTS)
    conversation.state["offline"] = {
        "listed": [product.sku for product in PRODUCTS],
        "listed_kind": "search",
        "focus": None,
    }
    conversation.save()
    return conversation


def posted(merchant) -> list[tuple[str, str | None, object]]:
    return [
        (post["action"], post.get("sku"), post.get("quantity")) for post in cart_posts(merchant)
    ]


# Rejected amounts: a clear reply and no webhook call.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("додай -1 першого", "Кількість має бути більшою за нуль."),
        ("додай −1 першого", "Кількість має бути більшою за нуль."),
        ("додай 0 першого", "Кількість має бути більшою за нуль."),
        ("додай 0 по 250 г першого", "Кількість має бути більшою за нуль."),
        ("додай -2 по -250 г першого", "Кількість має бути більшою за нуль."),
        ("додай 1e999 по 0 г першого", "Кількість має бути більшою за нуль."),
        ("додай 0 по 1/0 г першого", "Кількість має бути більшою за нуль."),
        (
            "додай 999999999999 по 999999999999 кг першого",
            "За один раз я можу замовити щонайбільше 100 шт «Сир Комо 250 г».",
        ),
        ("add -3 of the first", "The quantity must be greater than zero."),
        ("добавь -2 первого", "Количество должно быть больше нуля."),
        ("зміни кількість першого на -2", "Кількість має бути більшою за нуль."),
        ("set the first to -2", "The quantity must be greater than zero."),
        ("додай 1e9 першого", "За один раз я можу замовити щонайбільше 100 шт «Сир Комо 250 г»."),
        ("додай 1e999 першого", "За один раз я можу замовити щонайбільше 100 шт «Сир Комо 250 г»."),
        ("add 101 of the first", "I can order at most 100 pcs of “Сир Комо 250 г” at a time."),
        ("додай півтора першого", "«Сир Комо 250 г» продається кратно 1 шт."),
        ("add one and a half of the first", "“Сир Комо 250 г” is sold in steps of 1 pc."),
        ("добавь полтора первого", "«Сир Комо 250 г» продаётся кратно 1 шт."),
        ("додай пів першого", "«Сир Комо 250 г» продається кратно 1 шт."),
        ("додай ½ першого", "«Сир Комо 250 г» продається кратно 1 шт."),
        ("add 1e-1 of the first", "“Сир Комо 250 г” is sold in steps of 1 pc."),
    ],
)
def test_invalid_amounts_are_rejected_without_a_webhook(
    chat_client, merchant, shown, text, expected
):
    sent = send(chat_client, shown, text)

    assert reply_text(sent) == expected
    assert posted(merchant) == []
    shown.refresh_from_db()
    assert shown.cart == {"items": [], "total": 0.0}


# Questions instead of guesses: no webhook call either.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "додай 600 г першого",
            "«Сир Комо 250 г» продається упаковками по 250 г, а 600 г — це 2,4 упаковки. "
            "Скільки упаковок додати? Напишіть, наприклад, «додай 2 шт».",
        ),
        (
            "add 100 g of the first",
            "“Сир Комо 250 г” comes in packs of 250 g, and 100 g is 0.4 packs. How many packs "
            "should I add? Say for example “add 1 pc”.",
        ),
        (
            "додай 3 л другого",
            "«Молоко Ферма 2.5%» продається поштучно, і я не знаю, скільки штук становлять "
            "3 л. Скільки штук додати? Напишіть, наприклад, «додай 2 шт».",
        ),
        (
            "додай одну пачку четвертого",
            "«Сир Гауда ваговий» продається на вагу (кг), а не упаковками чи штуками. Скільки "
            "кг додати? Напишіть, наприклад, «додай 0,5 кг».",
        ),
        (
            "add 2 pcs of the fourth",
            "“Сир Гауда ваговий” is sold by kg, not in packs or pieces. How many kg should I "
            "add? Say for example “add 0.5 kg”.",
        ),
        (
            "добавь одну пачку четвёртого",
            "«Сир Гауда ваговий» продаётся на вес (кг), а не упаковками или штуками. Сколько "
            "кг добавить? Напишите, например, «добавь 0,5 кг».",
        ),
        (
            "додай 1 л четвертого",
            "«Сир Гауда ваговий» продається в кг, тож 1 л я не можу перерахувати. Скільки кг "
            "додати?",
        ),
        (
            "додай літр другого",
            "«Молоко Ферма 2.5%» продається поштучно, і я не знаю, скільки штук становлять "
            "1 л. Скільки штук додати? Напишіть, наприклад, «додай 2 шт».",
        ),
    ],
)
def test_unclear_amounts_get_a_question(chat_client, merchant, shown, text, expected):
    sent = send(chat_client, shown, text)

    assert reply_text(sent) == expected
    assert posted(merchant) == []


def test_answer_to_the_question_adds_the_packs(chat_client, merchant, shown):
    send(chat_client, shown, "додай 600 г першого")

    sent = send(chat_client, shown, "додай 2 шт")

    assert reply_text(sent).startswith("Додав у кошик: Сир Комо 250 г, 2 шт.")
    assert posted(merchant) == [("add", "cheese-pack", 2)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "видали 600 г першого",
            "«Сир Комо 250 г» продається упаковками по 250 г, а 600 г — це 2,4 упаковки. "
            "Скільки упаковок прибрати? Напишіть, наприклад, «видали 2 шт».",
        ),
        (
            "remove 100 g of the first",
            "“Сир Комо 250 г” comes in packs of 250 g, and 100 g is 0.4 packs. How many packs "
            "should I remove? Say for example “remove 1 pc”.",
        ),
        (
            "измени количество первого на 600 г",
            "«Сир Комо 250 г» продаётся упаковками по 250 г, а 600 г — это 2,4 упаковки. "
            "Сколько упаковок поставить? Напишите, например, «сделай 2 шт».",
        ),
        (
            "set the first to 600 g",
            "“Сир Комо 250 г” comes in packs of 250 g, and 600 g is 2.4 packs. How many packs "
            "should I set it to? Say for example “make it 2 pcs”.",
        ),
    ],
)
def test_amount_question_names_the_change(chat_client, merchant, shown, text, expected):
    send(chat_client, shown, "додай 4 першого")

    sent = send(chat_client, shown, text)

    assert reply_text(sent) == expected
    assert posted(merchant) == [("add", "cheese-pack", 4)]


def test_removal_question_suggests_a_removal(chat_client, merchant, shown):
    send(chat_client, shown, "додай 2 кг четвертого")

    question = send(chat_client, shown, "видали 1 шт")
    sent = send(chat_client, shown, "видали 0,5 кг")

    assert reply_text(question) == (
        "«Сир Гауда ваговий» продається на вагу (кг), а не упаковками чи штуками. Скільки кг "
        "прибрати? Напишіть, наприклад, «видали 0,5 кг»."
    )
    assert reply_text(sent).split("\n")[0] == "Змінив кількість: Сир Гауда ваговий — тепер 1,5 кг."
    assert posted(merchant) == [("add", "cheese-kg", 2), ("update_quantity", "cheese-kg", 1.5)]


def test_old_amount_before_weight_ignored(chat_client, merchant, shown):
    send(chat_client, shown, "додай 2 кг четвертого")

    sent = send(chat_client, shown, "зміни 2 на 500 г")

    assert reply_text(sent).split("\n")[0] == "Змінив кількість: Сир Гауда ваговий — тепер 0,5 кг."
    assert posted(merchant) == [("add", "cheese-kg", 2), ("update_quantity", "cheese-kg", 0.5)]


def test_old_weight_before_new_amount_ignored(chat_client, merchant, shown):
    send(chat_client, shown, "додай 2 кг четвертого")

    sent = send(chat_client, shown, "зміни 2 кг на 3")

    assert reply_text(sent).split("\n")[0] == "Змінив кількість: Сир Гауда ваговий — тепер 3 кг."
    assert posted(merchant) == [("add", "cheese-kg", 2), ("update_quantity", "cheese-kg", 3)]


# Conversions that are exact.


@pytest.mark.parametrize(
    ("text", "expected_post", "expected_lines"),
    [
        (
            "додай 500 г першого",
            ("add", "cheese-pack", 2),
            ["Додав у кошик: Сир Комо 250 г, 2 шт.", "500 г — це 2 шт по 250 г."],
        ),
        (
            "add 1 kg of the first",
            ("add", "cheese-pack", 4),
            ["Added to your cart: Сир Комо 250 г, 4 pcs.", "1 kg is 4 pcs of 250 g."],
        ),
        (
            "додай 1,8 л третього",
            ("add", "oil-bottle", 2),
            ["Додав у кошик: Олія Щедрий лан, 2 шт.", "1,8 л — це 2 шт по 900 мл."],
        ),
        (
            "додай 500 г четвертого",
            ("add", "cheese-kg", 0.5),
            ["Додав у кошик: Сир Гауда ваговий, 0,5 кг."],
        ),
        (
            "add 1e-1 kg of the fourth",
            ("add", "cheese-kg", 0.1),
            ["Added to your cart: Сир Гауда ваговий, 0.1 kg."],
        ),
        (
            "add one and a half kg of the fourth",
            ("add", "cheese-kg", 1.5),
            ["Added to your cart: Сир Гауда ваговий, 1.5 kg."],
        ),
        (
            "додай півтора кг четвертого",
            ("add", "cheese-kg", 1.5),
            ["Додав у кошик: Сир Гауда ваговий, 1,5 кг."],
        ),
        (
            "додай два з половиною кг четвертого",
            ("add", "cheese-kg", 2.5),
            ["Додав у кошик: Сир Гауда ваговий, 2,5 кг."],
        ),
        (
            "додай ½ кг четвертого",
            ("add", "cheese-kg", 0.5),
            ["Додав у кошик: Сир Гауда ваговий, 0,5 кг."],
        ),
        (
            "add 1½ kg of the fourth",
            ("add", "cheese-kg", 1.5),
            ["Added to your cart: Сир Гауда ваговий, 1.5 kg."],
        ),
        (
            "додай ¾кг четвертого",
            ("add", "cheese-kg", 0.75),
            ["Додав у кошик: Сир Гауда ваговий, 0,75 кг."],
        ),
        (
            "add 2 ½ kg of the fourth",
            ("add", "cheese-kg", 2.5),
            ["Added to your cart: Сир Гауда ваговий, 2.5 kg."],
        ),
        (
            "додай 1\u00a0¼ кг четвертого",
            ("add", "cheese-kg", 1.25),
            ["Додав у кошик: Сир Гауда ваговий, 1,25 кг."],
        ),
        (
            "додай півкіло четвертого",
            ("add", "cheese-kg", 0.5),
            ["Додав у кошик: Сир Гауда ваговий, 0,5 кг."],
        ),
        (
            "додай дві пачки першого",
            ("add", "cheese-pack", 2),
            ["Додав у кошик: Сир Комо 250 г, 2 шт."],
        ),
        (
            "додай .5 кг четвертого",
            ("add", "cheese-kg", 0.5),
            ["Додав у кошик: Сир Гауда ваговий, 0,5 кг."],
        ),
        (
            "додай 1/2 кг четвертого",
            ("add", "cheese-kg", 0.5),
            ["Додав у кошик: Сир Гауда ваговий, 0,5 кг."],
        ),
        (
            "add 1 3/4 kg of the fourth",
            ("add", "cheese-kg", 1.75),
            ["Added to your cart: Сир Гауда ваговий, 1.75 kg."],
        ),
        (
            "add a kilo of the first",
            ("add", "cheese-pack", 4),
            ["Added to your cart: Сир Комо 250 г, 4 pcs.", "1 kg is 4 pcs of 250 g."],
        ),
        (
            "добавь пол кило четвёртого",
            ("add", "cheese-kg", 0.5),
            ["Добавил в корзину: Сир Гауда ваговий, 0,5 кг."],
        ),
        (
            "додай кіло четвертого",
            ("add", "cheese-kg", 1),
            ["Додав у кошик: Сир Гауда ваговий, 1 кг."],
        ),
        (
            "додай 2 по 250 г першого",
            ("add", "cheese-pack", 2),
            ["Додав у кошик: Сир Комо 250 г, 2 шт.", "500 г — це 2 шт по 250 г."],
        ),
        (
            "додай 2 шт по 500 г першого",
            ("add", "cheese-pack", 4),
            ["Додав у кошик: Сир Комо 250 г, 4 шт.", "1000 г — це 4 шт по 250 г."],
        ),
        (
            "add 2 x 500 g of the first",
            ("add", "cheese-pack", 4),
            ["Added to your cart: Сир Комо 250 г, 4 pcs.", "1000 g is 4 pcs of 250 g."],
        ),
        (
            "додай 2 пачки по 500 г четвертого",
            ("add", "cheese-kg", 1),
            ["Додав у кошик: Сир Гауда ваговий, 1 кг."],
        ),
        (
            "додай молоко 2,5%",
            ("add", "milk-pack", 1),
            ["Додав у кошик: Молоко Ферма 2.5%, 1 шт."],
        ),
    ],
)
def test_amounts_convert_to_the_product_unit(
    chat_client, merchant, shown, text, expected_post, expected_lines
):
    sent = send(chat_client, shown, text)

    assert posted(merchant) == [expected_post]
    assert reply_text(sent).split("\n")[: len(expected_lines)] == expected_lines


def test_set_quantity_by_weight_converts_to_packs(chat_client, merchant, shown):
    send(chat_client, shown, "додай перший")

    sent = send(chat_client, shown, "зміни кількість першого на 750 г")

    assert posted(merchant)[-1] == ("update_quantity", "cheese-pack", 3)
    assert reply_text(sent).split("\n")[:2] == [
        "Змінив кількість: Сир Комо 250 г — тепер 3 шт.",
        "750 г — це 3 шт по 250 г.",
    ]


def test_percentage_in_a_name_is_no_amount(chat_client, merchant, shown):
    # No listed product is a 45% Gouda, so the assistant searches the (empty) catalog for
    # one instead of adding 45 kg of the listed Gouda.
    sent = send(chat_client, shown, "додай гауду 45%")

    assert posted(merchant) == []
    assert reply_text(sent) == "Каталог магазину поки порожній, тож шукати в ньому ще нічого."
    shown.refresh_from_db()
    assert shown.cart == {"items": [], "total": 0.0}


def test_removal_counts_packs_of_a_weight(chat_client, merchant, shown):
    send(chat_client, shown, "додай 2 кг четвертого")

    sent = send(chat_client, shown, "видали 2 по 500 г")

    assert posted(merchant) == [("add", "cheese-kg", 2), ("update_quantity", "cheese-kg", 1)]
    assert reply_text(sent).split("\n")[0] == "Змінив кількість: Сир Гауда ваговий — тепер 1 кг."


@pytest.mark.parametrize(
    "text", ["видали сир комо 250 г", "remove Сир Комо 250г", "видали сир комо 0,25 кг"]
)
def test_removal_by_name_with_its_weight(chat_client, merchant, shown, text):
    send(chat_client, shown, "додай 3 шт першого")

    sent = send(chat_client, shown, text)

    assert posted(merchant) == [("add", "cheese-pack", 3), ("remove", "cheese-pack", None)]
    assert reply_text(sent).split("\n")[0] in (
        "Прибрав з кошика: Сир Комо 250 г.",
        "Removed from your cart: Сир Комо 250 г.",
    )


def test_removal_by_name_with_another_weight(chat_client, merchant, shown):
    send(chat_client, shown, "додай 3 шт першого")

    sent = send(chat_client, shown, "видали сир комо 500 г")

    # 500 g is an amount, not the name's 250 g. The cart line that the name resolves to
    # carries no pack size, so the assistant requests the count instead of guessing.
    assert reply_text(sent) == (
        "«Сир Комо 250 г» продається поштучно, і я не знаю, скільки штук становлять 500 г. "
        "Скільки штук прибрати? Напишіть, наприклад, «видали 2 шт»."
    )
    assert posted(merchant) == [("add", "cheese-pack", 3)]


@pytest.mark.parametrize(
    ("text", "left"),
    [
        ("видали 1 шт сир комо 250 г", 2),
        ("видали 1 сир комо 250 г", 2),
        ("видали одну пачку сиру комо 250 г", 2),
        ("remove 1 pack of Сир Комо 250г", 2),
        ("зменш сир комо 250 г на 1", 2),
        ("видали 2 шт сир комо 250 г", 1),
    ],
)
def test_removal_counts_named_weight_packs(chat_client, merchant, shown, text, left):
    # The name's 250 g is part of the name, so the count is packs of it. Read as 250 g,
    # "видали 1 шт сир комо 250 г" removed the whole line.
    send(chat_client, shown, "додай 3 шт першого")

    sent = send(chat_client, shown, text)

    assert posted(merchant) == [("add", "cheese-pack", 3), ("update_quantity", "cheese-pack", left)]
    assert reply_text(sent).split("\n")[0] == (
        f"Змінив кількість: Сир Комо 250 г — тепер {left} шт."
    )


def _add_both_cheeses(chat_client, conversation) -> None:
    """Put 3 packs of "Сир Комо 250 г" and 1 kg of "Сир Гауда ваговий" in the cart."""
    send(chat_client, conversation, "додай 3 шт першого")
    send(chat_client, conversation, "додай 1 кг четвертого")


@pytest.mark.parametrize(
    ("text", "expected_post", "expected_reply"),
    [
        ("видали сир 250 г", ("remove", "cheese-pack", None), "Прибрав з кошика: Сир Комо 250 г."),
        (
            "видали сир 0,25 кг",
            ("remove", "cheese-pack", None),
            "Прибрав з кошика: Сир Комо 250 г.",
        ),
        (
            "видали 1 шт сиру 250 г",
            ("update_quantity", "cheese-pack", 2),
            "Змінив кількість: Сир Комо 250 г — тепер 2 шт.",
        ),
        (
            "зміни сир 250 г на 5",
            ("update_quantity", "cheese-pack", 5),
            "Змінив кількість: Сир Комо 250 г — тепер 5 шт.",
        ),
    ],
)
def test_name_weight_picks_among_matches(
    chat_client, merchant, shown, text, expected_post, expected_reply
):
    # "сир" matches both cheeses in the cart; only "Сир Комо 250 г" states 250 g.
    _add_both_cheeses(chat_client, shown)

    sent = send(chat_client, shown, text)

    assert posted(merchant) == [
        ("add", "cheese-pack", 3),
        ("add", "cheese-kg", 1),
        expected_post,
    ]
    assert reply_text(sent).split("\n")[0] == expected_reply


def test_unnamed_weight_still_asks(chat_client, merchant, shown):
    _add_both_cheeses(chat_client, shown)

    sent = send(chat_client, shown, "видали сир 500 г")

    assert reply_text(sent) == (
        "Під «сир» підходить кілька товарів:\n"
        "1. Сир Комо 250 г — 120,00\n"
        "2. Сир Гауда ваговий — 400,00\n"
        "Який саме? Напишіть номер або точнішу назву."
    )
    assert posted(merchant) == [("add", "cheese-pack", 3), ("add", "cheese-kg", 1)]


@pytest.mark.parametrize(
    ("text", "expected_post", "expected_reply"),
    [
        (
            "зміни сир на 250 г",
            ("update_quantity", "cheese-kg", 0.25),
            "Змінив кількість: Сир Гауда ваговий — тепер 0,25 кг.",
        ),
        (
            "set the cheese to 250 g",
            ("update_quantity", "cheese-kg", 0.25),
            "Changed the quantity: Сир Гауда ваговий is now 0.25 kg.",
        ),
        (
            "зменш сир на 250 г",
            ("update_quantity", "cheese-kg", 0.75),
            "Змінив кількість: Сир Гауда ваговий — тепер 0,75 кг.",
        ),
        (
            "збільш сир на 250 г",
            ("add", "cheese-kg", 0.25),
            "Додав у кошик: Сир Гауда ваговий, 0,25 кг.",
        ),
    ],
)
def test_new_amount_names_no_product(
    chat_client, merchant, shown, text, expected_post, expected_reply
):
    # 250 g here is the amount to set or to change by, so it does not pick "Сир Комо 250 г":
    # the shopper may mean 250 g of the Gouda sold by weight.
    _add_both_cheeses(chat_client, shown)

    question = send(chat_client, shown, text)
    posts_after_question = posted(merchant)
    chosen = send(chat_client, shown, "2")

    assert len(reply_text(question).split("\n")) == 4
    assert reply_text(question).split("\n")[1].startswith("1. Сир Комо 250 г — 120")
    assert reply_text(question).split("\n")[2].startswith("2. Сир Гауда ваговий — 400")
    assert posts_after_question == [("add", "cheese-pack", 3), ("add", "cheese-kg", 1)]
    assert posted(merchant) == [("add", "cheese-pack", 3), ("add", "cheese-kg", 1), expected_post]
    assert reply_text(chosen).split("\n")[0] == expected_reply


def test_decrease_by_named_weight_keeps_line(chat_client, merchant, shown):
    # "на 250 г" is the change. Read as the name's 250 g, it removed all 3 packs.
    send(chat_client, shown, "додай 3 шт першого")

    sent = send(chat_client, shown, "зменш сир комо на 250 г")

    assert reply_text(sent) == (
        "«Сир Комо 250 г» продається поштучно, і я не знаю, скільки штук становлять 250 г. "
        "Скільки штук прибрати? Напишіть, наприклад, «видали 2 шт»."
    )
    assert posted(merchant) == [("add", "cheese-pack", 3)]


def test_removal_rounding_to_zero_is_rejected(chat_client, merchant, shown):
    send(chat_client, shown, "додай 2 кг четвертого")

    sent = send(chat_client, shown, "видали 0,0004 кг")

    assert reply_text(sent) == "Кількість має бути більшою за нуль."
    assert posted(merchant) == [("add", "cheese-kg", 2)]


def test_removal_rest_rounding_to_zero(chat_client, merchant, shown):
    send(chat_client, shown, "додай 1 кг четвертого")

    sent = send(chat_client, shown, "видали 999,6 г")

    assert reply_text(sent).split("\n")[0] == "Прибрав з кошика: Сир Гауда ваговий."
    assert posted(merchant) == [("add", "cheese-kg", 1), ("remove", "cheese-kg", None)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 таких", "Додав у кошик: Сир Комо 250 г, 2 шт."),
        ("дві такі", "Додав у кошик: Сир Комо 250 г, 2 шт."),
        ("2 of them", "Added to your cart: Сир Комо 250 г, 2 pcs."),
        ("two of them", "Added to your cart: Сир Комо 250 г, 2 pcs."),
    ],
)
def test_number_beside_pronoun_is_amount(chat_client, merchant, shown, text, expected):
    # Not the second product listed: "2 таких" is two more of the product added last.
    send(chat_client, shown, "додай перший")

    sent = send(chat_client, shown, text)

    assert posted(merchant) == [("add", "cheese-pack", 1), ("add", "cheese-pack", 2)]
    assert reply_text(sent).split("\n")[0] == expected
