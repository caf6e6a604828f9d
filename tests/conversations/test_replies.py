from decimal import Decimal

import pytest

from conversations.assistants.replies import Replies, plural_form
from conversations.cart import cart_snapshot
from conversations.tools import ShownProduct

MILK = ShownProduct(
    sku="milk-002", name="Молоко Галичина", price=52.0, promo_price=42.0, promo_label="-19%"
)
BREAD = ShownProduct(sku="bread-01", name="Хліб білий", price=32.0)
APPLES = ShownProduct(
    sku="apple-kg", name="Яблуко Гала", price=14.95, unit="kg", min_quantity=0.3, quantity_step=0.1
)


@pytest.mark.parametrize(
    ("reason", "language", "expected"),
    [
        ("max_3_per_customer", "en", "There is a limit of 3 per customer for “Молоко Галичина”."),
        (
            "max_3_per_customer",
            "uk",
            "На «Молоко Галичина» діє обмеження: не більше 3 на одного покупця.",
        ),
        ("max_2_per_order", "en", "There is a limit of 2 per order for “Молоко Галичина”."),
        ("min_2", "en", "There is a minimum of 2 per customer for “Молоко Галичина”."),
        ("store_closed_today", "en", "The store declined the change: store closed today."),
        ("store_closed_today", "uk", "Магазин не прийняв зміну: store closed today."),
        (None, "en", "The store declined the change."),
        # The dispatcher's reason for {"ok": false} without a reason.
        ("unknown", "en", "The store declined the change."),
        ("unknown", "uk", "Магазин не прийняв зміну."),
        ("out_of_stock", "en", "Sorry, “Молоко Галичина” is out of stock."),
        ("not_in_cart", "uk", "«Молоко Галичина» немає у вашому кошику."),
        (
            "quantity_exceeded",
            "en",
            "The store does not have 4 pcs of “Молоко Галичина”. Try a smaller quantity.",
        ),
        (
            "webhook_timeout",
            "en",
            "The store did not respond in time, so your cart was not changed. Please try again.",
        ),
        (
            "circuit_open",
            "en",
            "The store's cart is temporarily unavailable, so your cart was not changed. "
            "Please try again in a minute.",
        ),
        (
            "webhook_error",
            "uk",
            "Не вдалося змінити кошик: магазин повернув помилку. Спробуйте, будь ласка, ще раз.",
        ),
        (
            "missing_sku",
            "en",
            "The cart could not be changed because of an error in the request to the store. "
            "Please try again later.",
        ),
        (
            "product_not_found",
            "en",
            "The store could not find “Молоко Галичина”. I can search again: tell me what you "
            "are looking for.",
        ),
    ],
)
def test_rejection_explains_the_reason(reason, language, expected):
    replies = Replies(language)

    assert replies.rejection(reason, product=MILK, quantity=replies.quantity(4, "pcs")) == expected


def test_rejection_explains_quantity_rules():
    replies = Replies("uk")

    assert (
        replies.rejection("below_min_quantity", product=APPLES, quantity="")
        == "Мінімальна кількість для «Яблуко Гала» — 0,3 кг."
    )
    assert (
        replies.rejection("quantity_step_mismatch", product=APPLES, quantity="")
        == "«Яблуко Гала» продається кратно 0,1 кг."
    )


def test_product_line_mentions_the_promotion():
    assert (
        Replies("uk").product_line(2, MILK)
        == "2. Молоко Галичина — 42,00 замість 52,00 (акція -19%)"
    )
    assert (
        Replies("en").product_line(2, MILK)
        == "2. Молоко Галичина — 42.00 instead of 52.00 (promotion -19%)"
    )


@pytest.mark.parametrize(
    ("language", "product", "expected"),
    [
        ("uk", BREAD, "«Хліб білий» коштує 32,00."),
        ("en", BREAD, "“Хліб білий” costs 32.00."),
        ("ru", APPLES, "«Яблуко Гала» стоит 14,95 за кг."),
        ("en", APPLES, "“Яблуко Гала” costs 14.95 per kg."),
        ("uk", MILK, "«Молоко Галичина» коштує 42,00 замість 52,00 (акція -19%)."),
        (
            "en",
            MILK,
            "“Молоко Галичина” costs 42.00 instead of 52.00 (promotion -19%).",
        ),
        ("ru", MILK, "«Молоко Галичина» стоит 42,00 вместо 52,00 (акция -19%)."),
    ],
)
def test_price_line(language, product, expected):
    assert Replies(language).price_line(product) == expected


def test_cart_lines_list_each_item_and_the_total():
    cart = cart_snapshot([MILK.cart_item(2), APPLES.cart_item(0.5)])

    assert Replies("uk").cart_lines(cart) == [
        "У вашому кошику:",
        "1. Молоко Галичина — 2 шт × 42,00 = 84,00",
        "2. Яблуко Гала — 0,5 кг × 14,95 = 7,48",
        "Разом: 91,48.",
    ]


@pytest.mark.parametrize(
    ("language", "value", "unit", "expected"),
    [
        ("en", 1, "pcs", "1 pc"),
        ("en", Decimal("1.000"), "pcs", "1 pc"),
        ("en", 2, "pcs", "2 pcs"),
        ("en", Decimal("1.5"), "pcs", "1.5 pcs"),
        ("en", Decimal("0.5"), "pcs", "0.5 pcs"),
        ("en", 1, "pack", "1 pack"),
        ("en", 3, "pack", "3 packs"),
        ("en", 1, "kg", "1 kg"),
        ("en", Decimal("0.5"), "kg", "0.5 kg"),
        ("en", 1, "l", "1 l"),
        ("uk", 1, "pcs", "1 шт"),
        ("uk", 2, "pcs", "2 шт"),
        ("uk", Decimal("0.5"), "kg", "0,5 кг"),
        ("ru", 1, "pcs", "1 шт"),
    ],
)
def test_quantity_unit_names(language, value, unit, expected):
    assert Replies(language).quantity(value, unit) == expected


def test_english_cart_lines_write_one_piece_as_pc():
    cart = cart_snapshot([BREAD.cart_item(1), MILK.cart_item(2)])

    assert Replies("en").cart_lines(cart) == [
        "In your cart:",
        "1. Хліб білий — 1 pc × 32.00 = 32.00",
        "2. Молоко Галичина — 2 pcs × 42.00 = 84.00",
        "Total: 116.00.",
    ]
    # The cart itself keeps the contract's unit value.
    assert [item["unit"] for item in cart["items"]] == ["pcs", "pcs"]


def test_cart_total_adds_up_the_lines_shown():
    tomatoes = ShownProduct(sku="tomato-kg", name="Томати", price=29.89, unit="kg")
    cart = cart_snapshot([APPLES.cart_item(0.5), tomatoes.cart_item(0.5)])

    # 7.475 and 14.945 round to 7.48 and 14.95, so the total is 22.43, not 22.42.
    assert Replies("uk").cart_lines(cart) == [
        "У вашому кошику:",
        "1. Яблуко Гала — 0,5 кг × 14,95 = 7,48",
        "2. Томати — 0,5 кг × 29,89 = 14,95",
        "Разом: 22,43.",
    ]


@pytest.mark.parametrize(
    ("count", "language", "form"),
    [
        (1, "uk", "one"),
        (2, "uk", "few"),
        (4, "ru", "few"),
        (5, "uk", "many"),
        (11, "uk", "many"),
        (12, "ru", "many"),
        (21, "uk", "one"),
        (22, "uk", "few"),
        (1, "en", "one"),
        (2, "en", "many"),
    ],
)
def test_plural_form(count, language, form):
    assert plural_form(count, language) == form


CART_CHANGE_TOOLS = ("add_to_cart", "update_quantity", "remove_from_cart", "clear_cart")


@pytest.mark.parametrize(
    ("language", "disabled", "expected"),
    [
        (
            "en",
            (),
            "I can find products and fill your cart. Try for example: “milk”, “add the second "
            "one”, “set the first to 2”, “remove milk”, “what's in my cart?” or “clear the cart”.",
        ),
        (
            "en",
            CART_CHANGE_TOOLS,
            "I can find products and show your cart. Try for example: “milk” or “what's in my "
            "cart?”.",
        ),
        (
            "en",
            (*CART_CHANGE_TOOLS, "view_cart"),
            "I can find products for you. Try for example: “milk”.",
        ),
        (
            "uk",
            (*CART_CHANGE_TOOLS, "view_cart"),
            "Я допоможу знайти товари. Напишіть, наприклад: «молоко».",
        ),
        (
            "ru",
            CART_CHANGE_TOOLS,
            "Я помогу найти товары и покажу вашу корзину. Напишите, например: «молоко» или "
            "«что в корзине?».",
        ),
        (
            "uk",
            ("search_products",),
            "Я допоможу змінити ваш кошик. Напишіть, наприклад: «додай другий», «зміни кількість "
            "першого на 2», «прибери молоко», «що в кошику?» або «очисти кошик».",
        ),
        (
            "en",
            ("search_products", "add_to_cart", "update_quantity", "view_cart", "clear_cart"),
            "I can change the products in your cart. Try for example: “remove milk”.",
        ),
        (
            "uk",
            ("search_products", *CART_CHANGE_TOOLS),
            "Я можу показати ваш кошик. Напишіть, наприклад: «що в кошику?».",
        ),
        (
            "en",
            ("search_products", *CART_CHANGE_TOOLS, "view_cart"),
            "Sorry, this shop does not let me search for products or change your cart in this chat.",
        ),
        (
            "ru",
            ("search_products", *CART_CHANGE_TOOLS, "view_cart"),
            "Извините, в этом магазине я не могу искать товары или менять корзину в чате.",
        ),
    ],
)
def test_help_summary_per_enabled_tools(language, disabled, expected):
    assert Replies(language).help(disabled_tools=disabled) == expected
