"""A whole shopping conversation through the API: real catalog search, real webhook
dispatch and the reference merchant on 127.0.0.1."""

import json
from collections.abc import Iterator

import pytest

from catalog.schemas import ProductInput
from catalog.services import product_upsert_many, products_embed_pending
from conversations.models import Conversation, Message
from merchant.server import MerchantServer, start_merchant
from tests.conversations.chat import cart_posts, reply_text, send
from tests.conversations.shop_data import SESSION_ID, STORE_ID
from tests.factories import ConversationFactory
from webhooks.models import WebhookDelivery, WebhookKind

pytestmark = pytest.mark.django_db


@pytest.fixture
def shopper_conversation(tenant, catalog, merchant) -> Conversation:
    tenant.webhook_settings.cart_get_url = merchant.cart_get_url
    tenant.webhook_settings.save()
    return ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)


def cards_of(sent: list[dict]) -> list[dict]:
    [event] = [event for event in sent if event["type"] == "product_cards"]
    return event["items"]


def products_requests(merchant) -> list[dict]:
    return [
        json.loads(request.body)
        for request in merchant.requests
        if request.path == "/vizochok/products"
    ]


def test_search_shows_available_products(chat_client, merchant, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "молоко")

    cards = cards_of(sent)
    by_sku = {card["sku"]: card for card in cards}
    assert sent[0] == {"type": "status", "code": "searching"}
    assert [event["type"] for event in sent] == [
        "status",
        "text_delta",
        "text_end",
        "product_cards",
        "response_complete",
    ]
    assert "milk-003" not in by_sku
    assert {"milk-001", "milk-002"} <= set(by_sku)
    assert by_sku["milk-001"]["price"] == 45.9
    assert by_sku["milk-001"]["promo_price"] is None
    assert by_sku["milk-002"] == {
        "sku": "milk-002",
        "name": "Молоко Галичина 3.2%",
        "brand": "Галичина",
        "price": 52.0,
        "promo_price": 42.0,
        "promo_label": "-19%",
        "unit": "pcs",
        "image_url": None,
        "category_path": "Молочні продукти > Молоко",
    }
    [request] = products_requests(merchant)
    assert request["store_id"] == STORE_ID
    assert "milk-003" in request["skus"]
    text = reply_text(sent)
    assert text.startswith("Ось що я знайшов за запитом «молоко»:\n")
    assert "Молоко Галичина 3.2% — 42,00 замість 52,00 (акція -19%)" in text
    assert "Яготинське" not in text
    assert len(request["skus"]) - len(cards) == 1
    assert "Ще 1 знайдений товар зараз відсутній, тому я його не показую." in text
    shopper_conversation.refresh_from_db()
    assert [product["sku"] for product in shopper_conversation.state["shown"]] == [
        card["sku"] for card in cards
    ]


def test_conversation_changes_merchant_cart(chat_client, merchant, shopper_conversation):
    found = send(chat_client, shopper_conversation, "молоко")
    second = cards_of(found)[1]

    added = send(chat_client, shopper_conversation, "додай другий")
    changed = send(chat_client, shopper_conversation, "зміни кількість на 2")
    removed = send(chat_client, shopper_conversation, "видали другий")

    assert cart_posts(merchant) == [
        {
            "action": "add",
            "store_id": STORE_ID,
            "session_id": SESSION_ID,
            "sku": second["sku"],
            "name": second["name"],
            "quantity": 1,
            "price": second["price"],
        },
        {
            "action": "update_quantity",
            "store_id": STORE_ID,
            "session_id": SESSION_ID,
            "sku": second["sku"],
            "quantity": 2,
        },
        {"action": "remove", "store_id": STORE_ID, "session_id": SESSION_ID, "sku": second["sku"]},
    ]
    added_event = added[-2]
    assert added_event["type"] == "cart_changed"
    assert added_event["action"] == "item_selected"
    assert added_event["sku"] == second["sku"]
    assert added_event["quantity"] == 1
    assert added_event["price"] == second["price"]
    assert [item["sku"] for item in added_event["items"]] == [second["sku"]]
    assert reply_text(added).startswith(f"Додав у кошик: {second['name']}, 1 шт.")
    assert changed[-2]["action"] == "quantity_updated"
    assert changed[-2]["items"][0]["quantity"] == 2
    assert removed[-2] == {
        "type": "cart_changed",
        "action": "item_removed",
        "sku": second["sku"],
        "name": second["name"],
        "items": [],
        "total": 0.0,
    }
    assert merchant.store.cart_items(STORE_ID, SESSION_ID) == []
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [], "total": 0.0}
    cart_loads = [request for request in merchant.requests if request.method == "GET"]
    assert len(cart_loads) == 1


def test_rejected_add_explains_and_leaves_the_cart(chat_client, merchant, shopper_conversation):
    send(chat_client, shopper_conversation, "покажи молоко галичина")
    send(chat_client, shopper_conversation, "додай молоко галичина")
    cart_before = Conversation.objects.get(pk=shopper_conversation.pk).cart

    sent = send(chat_client, shopper_conversation, "додай ще 3 галичини")

    assert reply_text(sent) == (
        "На «Молоко Галичина 3.2%» діє обмеження: не більше 3 на одного покупця."
    )
    assert [event["type"] for event in sent] == [
        "status",
        "text_delta",
        "text_end",
        "response_complete",
    ]
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == cart_before
    assert cart_before["items"][0]["quantity"] == 1
    assert merchant.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 1


def test_out_of_stock_add_suggests_alternatives(chat_client, merchant, shopper_conversation):
    send(chat_client, shopper_conversation, "молоко")
    merchant.store.stock_update("milk-001", in_stock=False)

    sent = send(chat_client, shopper_conversation, "додай lactel")

    text = reply_text(sent)
    assert text.startswith(
        "На жаль, «Молоко Lactel 2.5%» закінчився.\nОсь схожі товари в наявності:\n"
    )
    alternatives = cards_of(sent)
    assert "milk-001" not in {card["sku"] for card in alternatives}
    assert "milk-002" in {card["sku"] for card in alternatives}
    assert [event["type"] for event in sent] == [
        "status",
        "status",
        "text_delta",
        "text_end",
        "product_cards",
        "response_complete",
    ]
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [], "total": 0.0}


def test_add_by_name_searches_and_adds_the_match(chat_client, merchant, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "додай молоко галичина")

    assert cart_posts(merchant) == [
        {
            "action": "add",
            "store_id": STORE_ID,
            "session_id": SESSION_ID,
            "sku": "milk-002",
            "name": "Молоко Галичина 3.2%",
            "quantity": 1,
            "price": 52.0,
        }
    ]
    assert reply_text(sent) == (
        "Додав у кошик: Молоко Галичина 3.2%, 1 шт.\n"
        "Ціна за акцією: 42,00 замість 52,00 (-19%).\n"
        "Позицій у кошику: 1, сума: 42,00."
    )
    assert [event["type"] for event in sent] == [
        "status",
        "status",
        "text_delta",
        "text_end",
        "product_cards",
        "cart_changed",
        "response_complete",
    ]


def test_add_by_name_asks_when_no_name_matches(chat_client, merchant, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "add Lactel drink")

    text = reply_text(sent)
    assert text.startswith("Here is what I found for “lactel drink”:\n")
    assert text.endswith("Which one should I add? Say for example “add the first one”.")
    assert cart_posts(merchant) == []
    assert "cart_changed" not in [event["type"] for event in sent]


def test_add_by_english_name(chat_client, merchant, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "add Lactel milk")

    assert cart_posts(merchant) == [
        {
            "action": "add",
            "store_id": STORE_ID,
            "session_id": SESSION_ID,
            "sku": "milk-001",
            "name": "Молоко Lactel 2.5%",
            "quantity": 1,
            "price": 45.9,
        }
    ]
    assert reply_text(sent) == (
        "Added to your cart: Молоко Lactel 2.5%, 1 pc.\nItems in your cart: 1, total: 45.90."
    )


def test_add_by_inflected_adjective_and_noun(chat_client, merchant, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "додай 2 білого хліба")

    assert cart_posts(merchant) == [
        {
            "action": "add",
            "store_id": STORE_ID,
            "session_id": SESSION_ID,
            "sku": "bread-01",
            "name": "Хліб Київхліб білий",
            "quantity": 2,
            "price": 32.0,
        }
    ]
    assert reply_text(sent) == (
        "Додав у кошик: Хліб Київхліб білий, 2 шт.\nПозицій у кошику: 1, сума: 64,00."
    )


def test_failed_products_webhook_shows_no_products(
    chat_client, tenant, merchant, shopper_conversation, closed_port_url
):
    tenant.webhook_settings.products_url = closed_port_url
    tenant.webhook_settings.save()

    sent = send(chat_client, shopper_conversation, "молоко")

    assert reply_text(sent) == (
        "На жаль, зараз не вдалося завантажити товари. Спробуйте, будь ласка, ще раз за хвилину."
    )
    assert [event["type"] for event in sent] == [
        "status",
        "text_delta",
        "text_end",
        "response_complete",
    ]
    assert WebhookDelivery.objects.filter(kind=WebhookKind.PRODUCTS).count() == 1
    assert Message.objects.get(role=Message.Role.ASSISTANT).events == sent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "молоко",
            "Магазин ще не підключив ціни та наявність товарів, тому я поки не можу їх показати.",
        ),
        (
            "I need milk",
            "The store has not connected product prices and stock yet, so I cannot show "
            "products for now.",
        ),
    ],
)
def test_search_without_a_products_url(
    chat_client, tenant, merchant, shopper_conversation, text, expected
):
    tenant.webhook_settings.products_url = ""
    tenant.webhook_settings.save()

    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected
    assert "product_cards" not in [event["type"] for event in sent]
    assert products_requests(merchant) == []


def test_search_with_nothing_in_stock(chat_client, merchant, shopper_conversation):
    for sku in ("milk-001", "milk-002", "bread-01", "apple-kg"):
        merchant.store.stock_update(sku, in_stock=False)

    sent = send(chat_client, shopper_conversation, "молоко")

    assert reply_text(sent) == (
        "За запитом «молоко» є товари в каталозі, але зараз жодного з них немає в наявності."
    )
    assert "product_cards" not in [event["type"] for event in sent]


def test_search_in_an_empty_catalog(chat_client, tenant, merchant):
    conversation = ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)

    sent = send(chat_client, conversation, "молоко")

    assert sent == [
        {"type": "status", "code": "searching"},
        {
            "type": "text_delta",
            "delta": "Каталог магазину поки порожній, тож шукати в ньому ще нічого.",
        },
        {"type": "text_end"},
        {"type": "error", "code": "no_catalog_data"},
        {"type": "response_complete"},
    ]
    assert products_requests(merchant) == []


def test_empty_cart_keeps_search_positions(chat_client, merchant, shopper_conversation):
    found = send(chat_client, shopper_conversation, "молоко")
    first = cards_of(found)[0]

    shown_cart = send(chat_client, shopper_conversation, "що в кошику?")
    added = send(chat_client, shopper_conversation, "додай перший")

    # The empty cart listed nothing, so "the first one" is still the first search result.
    assert reply_text(shown_cart) == "Ваш кошик порожній."
    assert [post["sku"] for post in cart_posts(merchant)] == [first["sku"]]
    assert reply_text(added).startswith(f"Додав у кошик: {first['name']}")


# Two milks of the same fat content in packs of different sizes. The shorter name ranks
# first in a search for "молоко 2,5%".
SIZED_MILKS = [
    {"sku": "milk-840", "name": "Молоко 2,5% 840 г", "weight": 840},
    {"sku": "milk-900", "name": "Молоко Молокія пастеризоване 2,5% 900 г", "weight": 900},
]


@pytest.fixture
def sized_milk_merchant(tenant, local_webhooks) -> Iterator[MerchantServer]:
    """A merchant and a catalog that contain only SIZED_MILKS, both in stock."""
    product_upsert_many(tenant=tenant, products=[ProductInput(**row) for row in SIZED_MILKS])
    products_embed_pending(tenant=tenant)
    stock = {
        "milk-840": {"price": 41.9, "in_stock": True, "stock": 10},
        "milk-900": {"price": 36.6, "in_stock": True, "stock": 10},
    }
    server = start_merchant(secret=tenant.webhook_settings.secret, stock=stock, catalog=SIZED_MILKS)
    tenant.webhook_settings.products_url = server.products_url
    tenant.webhook_settings.cart_url = server.cart_url
    tenant.webhook_settings.save()
    yield server
    server.shutdown()


@pytest.mark.parametrize("text", ["додай молоко 2,5% 900 г", "додай молоко 2,5% 0,9 кг"])
def test_add_by_name_picks_the_stated_size(chat_client, sized_milk_merchant, tenant, text):
    conversation = ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)

    sent = send(chat_client, conversation, text)

    assert [card["sku"] for card in cards_of(sent)] == ["milk-840", "milk-900"]
    assert cart_posts(sized_milk_merchant) == [
        {
            "action": "add",
            "store_id": STORE_ID,
            "session_id": SESSION_ID,
            "sku": "milk-900",
            "name": "Молоко Молокія пастеризоване 2,5% 900 г",
            "quantity": 1,
            "price": 36.6,
        }
    ]
    assert reply_text(sent).startswith(
        "Додав у кошик: Молоко Молокія пастеризоване 2,5% 900 г, 1 шт."
    )


def price_answer(card: dict) -> str:
    """Return the Ukrainian answer to a price question about the product of ``card``."""
    price = f"{card['price']:.2f}".replace(".", ",")
    if card["promo_price"] is None:
        return f"«{card['name']}» коштує {price}."
    promo_price = f"{card['promo_price']:.2f}".replace(".", ",")
    return f"«{card['name']}» коштує {promo_price} замість {price} (акція {card['promo_label']})."


def test_price_questions_leave_the_cart(chat_client, merchant, shopper_conversation):
    found = send(chat_client, shopper_conversation, "молоко")
    first, second = cards_of(found)[:2]

    priced = send(chat_client, shopper_conversation, "скільки коштує перший?")
    followed = send(chat_client, shopper_conversation, "а другий?")

    assert reply_text(priced) == price_answer(first)
    assert reply_text(followed) == price_answer(second)
    assert cart_posts(merchant) == []
    assert shopper_conversation.messages.filter(role="assistant").last().metadata == {
        "assistant": "offline",
        "intent": "price",
    }


@pytest.mark.parametrize(
    ("messages", "expected_text", "expected_skus"),
    [
        (
            ["молоко до 44 грн"],
            "Ось що я знайшов за запитом «молоко» за ціною до 44,00:\n"
            "1. Молоко Галичина 3.2% — 42,00 замість 52,00 (акція -19%)\n"
            "Щоб додати товар, напишіть, наприклад, «додай перший» або «додай 2 шт другого».",
            ["milk-002"],
        ),
        (
            ["what is the cheapest milk?"],
            "Here are the cheapest products for “milk”:\n"
            "1. Молоко Галичина 3.2% — 42.00 instead of 52.00 (promotion -19%)\n"
            "2. Молоко Lactel 2.5% — 45.90\n"
            "To add a product, say for example “add the first one” or “add 2 of the second”.",
            ["milk-002", "milk-001"],
        ),
        (
            ["найди молоко", "какое самое дешевое?"],
            "Вот товары из последнего списка, от самого дешёвого:\n"
            "1. Молоко Галичина 3.2% — 42,00 вместо 52,00 (акция -19%)\n"
            "2. Молоко Lactel 2.5% — 45,90\n"
            "Чтобы добавить товар, напишите, например, «добавь первый» или «добавь 2 шт второго».",
            ["milk-002", "milk-001"],
        ),
    ],
)
def test_search_by_price(
    chat_client, merchant, shopper_conversation, messages, expected_text, expected_skus
):
    for text in messages:
        sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected_text
    assert [card["sku"] for card in cards_of(sent)] == expected_skus
    assert cart_posts(merchant) == []


def test_search_above_price_ceiling(chat_client, merchant, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "milk under 30 hryvnias")
    added = send(chat_client, shopper_conversation, "add the first one")

    assert reply_text(sent) == (
        "I found no such products at up to 30.00. The cheapest is “Молоко Галичина 3.2%” at 42.00."
    )
    assert [event for event in sent if event["type"] == "product_cards"] == []
    assert reply_text(added) == (
        "I haven't shown any products yet. Tell me what you are looking for, for example “milk”."
    )
    assert cart_posts(merchant) == []


@pytest.mark.parametrize(
    ("text", "expected_text", "expected_skus"),
    [
        (
            "молоко дорожче 44 грн",
            "Ось що я знайшов за запитом «молоко» за ціною від 44,00:\n"
            "1. Молоко Lactel 2.5% — 45,90\n"
            "Щоб додати товар, напишіть, наприклад, «додай перший» або «додай 2 шт другого».",
            ["milk-001"],
        ),
        (
            "milk between 40 and 44",
            "Here is what I found for “milk” at 40.00 to 44.00:\n"
            "1. Молоко Галичина 3.2% — 42.00 instead of 52.00 (promotion -19%)\n"
            "To add a product, say for example “add the first one” or “add 2 of the second”.",
            ["milk-002"],
        ),
        (
            "найди молоко от 40 до 50 гривен",
            "Вот что я нашёл по запросу «молоко» по цене от 40,00 до 50,00:\n"
            "1. Молоко Lactel 2.5% — 45,90\n"
            "2. Молоко Галичина 3.2% — 42,00 вместо 52,00 (акция -19%)\n"
            "Чтобы добавить товар, напишите, например, «добавь первый» или «добавь 2 шт второго».",
            ["milk-001", "milk-002"],
        ),
    ],
)
def test_search_by_price_floor_and_range(
    chat_client, merchant, shopper_conversation, text, expected_text, expected_skus
):
    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected_text
    assert [card["sku"] for card in cards_of(sent)] == expected_skus
    assert cart_posts(merchant) == []


@pytest.mark.parametrize(
    ("text", "expected_text"),
    [
        (
            "milk more than 100",
            "I found no such products at 100.00 or more. "
            "The most expensive is “Молоко Lactel 2.5%” at 45.90.",
        ),
        (
            "молоко від 43 до 45 грн",
            "Не знайшов таких товарів за ціною від 43,00 до 45,00. "
            "Знайдені коштують від 42,00 до 45,90.",
        ),
    ],
)
def test_search_outside_price_limits(
    chat_client, merchant, shopper_conversation, text, expected_text
):
    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected_text
    assert [event for event in sent if event["type"] == "product_cards"] == []
    assert cart_posts(merchant) == []


def test_search_with_huge_price_limit(chat_client, merchant, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "milk under 1234567890123")

    assert reply_text(sent).startswith("Here is what I found for “milk under 1234567890123”:\n")
    assert [card["sku"] for card in cards_of(sent)] == ["milk-001", "milk-002"]
    assert [event for event in sent if event["type"] == "error"] == []
    assert cart_posts(merchant) == []


@pytest.mark.parametrize(
    ("text", "expected_text", "expected_skus"),
    [
        (
            "under 44",
            "Here are the products of the last list at up to 44.00:\n"
            "1. Молоко Галичина 3.2% — 42.00 instead of 52.00 (promotion -19%)\n"
            "To add a product, say for example “add the first one” or “add 2 of the second”.",
            ["milk-002"],
        ),
        (
            "від 44 грн",
            "Ось товари з останнього списку за ціною від 44,00:\n"
            "1. Молоко Lactel 2.5% — 45,90\n"
            "Щоб додати товар, напишіть, наприклад, «додай перший» або «додай 2 шт другого».",
            ["milk-001"],
        ),
        (
            "найди от 40 до 50 гривен",
            "Вот товары из последнего списка по цене от 40,00 до 50,00:\n"
            "1. Молоко Lactel 2.5% — 45,90\n"
            "2. Молоко Галичина 3.2% — 42,00 вместо 52,00 (акция -19%)\n"
            "Чтобы добавить товар, напишите, например, «добавь первый» или «добавь 2 шт второго».",
            ["milk-001", "milk-002"],
        ),
    ],
)
def test_price_limits_filter_last_list(
    chat_client, merchant, shopper_conversation, text, expected_text, expected_skus
):
    send(chat_client, shopper_conversation, "milk")
    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected_text
    assert [card["sku"] for card in cards_of(sent)] == expected_skus
    assert cart_posts(merchant) == []


def milk_added(quantity: int) -> dict:
    return {
        "action": "add",
        "store_id": STORE_ID,
        "session_id": SESSION_ID,
        "sku": "milk-002",
        "name": "Молоко Галичина 3.2%",
        "quantity": quantity,
        "price": 52.0,
    }


@pytest.mark.parametrize(
    ("text", "expected_text"),
    [
        (
            "додай молоко до 44 грн",
            "Додав у кошик: Молоко Галичина 3.2%, 1 шт.\n"
            "Ціна за акцією: 42,00 замість 52,00 (-19%).\n"
            "Позицій у кошику: 1, сума: 42,00.",
        ),
        (
            "add milk under 44 uah",
            "Added to your cart: Молоко Галичина 3.2%, 1 pc.\n"
            "Promotional price: 42.00 instead of 52.00 (-19%).\n"
            "Items in your cart: 1, total: 42.00.",
        ),
        (
            "добавь молоко до 44 руб",
            "Добавил в корзину: Молоко Галичина 3.2%, 1 шт.\n"
            "Цена по акции: 42,00 вместо 52,00 (-19%).\n"
            "Позиций в корзине: 1, сумма: 42,00.",
        ),
        (
            "додай молоко за 44",
            "Додав у кошик: Молоко Галичина 3.2%, 1 шт.\n"
            "Ціна за акцією: 42,00 замість 52,00 (-19%).\n"
            "Позицій у кошику: 1, сума: 42,00.",
        ),
        (
            "додай найдешевше молоко",
            "Додав у кошик: Молоко Галичина 3.2%, 1 шт.\n"
            "Ціна за акцією: 42,00 замість 52,00 (-19%).\n"
            "Позицій у кошику: 1, сума: 42,00.",
        ),
    ],
)
def test_add_within_price_limit(chat_client, merchant, shopper_conversation, text, expected_text):
    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected_text
    assert cart_posts(merchant) == [milk_added(1)]
    assert [card["sku"] for card in cards_of(sent)][0] == "milk-002"
    assert len(products_requests(merchant)) == 1


def test_add_under_price_asks_which(chat_client, merchant, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "додай 2 молока до 50 грн")
    picked = send(chat_client, shopper_conversation, "2")

    assert reply_text(sent) == (
        "Ось що я знайшов за запитом «молока» за ціною до 50,00:\n"
        "1. Молоко Lactel 2.5% — 45,90\n"
        "2. Молоко Галичина 3.2% — 42,00 замість 52,00 (акція -19%)\n"
        "Який із них додати? Напишіть його номер."
    )
    assert [card["sku"] for card in cards_of(sent)] == ["milk-001", "milk-002"]
    assert reply_text(picked).startswith("Додав у кошик: Молоко Галичина 3.2%, 2 шт.\n")
    assert cart_posts(merchant) == [milk_added(2)]
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.state["offline"]["pending"] is None


def test_out_of_stock_pick_none_within_limit(chat_client, merchant, shopper_conversation):
    send(chat_client, shopper_conversation, "додай молоко до 50 грн")
    merchant.store.stock_update("milk-002", in_stock=False)
    merchant.store.stock_update("milk-001", price=60.0)

    picked = send(chat_client, shopper_conversation, "2")

    assert reply_text(picked) == (
        "На жаль, «Молоко Галичина 3.2%» закінчився.\n"
        "Не знайшов таких товарів за ціною до 50,00. "
        "Найдешевший — «Молоко Lactel 2.5%» за 60,00."
    )
    assert [event for event in picked if event["type"] == "product_cards"] == []
    assert cart_posts(merchant) == [milk_added(1)]
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [], "total": 0.0}


def test_out_of_stock_pick_keeps_price_limit(chat_client, merchant, shopper_conversation):
    send(chat_client, shopper_conversation, "додай молоко до 50 грн")
    merchant.store.stock_update("milk-002", in_stock=False)

    picked = send(chat_client, shopper_conversation, "2")

    assert reply_text(picked) == (
        "На жаль, «Молоко Галичина 3.2%» закінчився.\n"
        "Ось схожі товари в наявності:\n"
        "1. Молоко Lactel 2.5% — 45,90"
    )
    assert [card["sku"] for card in cards_of(picked)] == ["milk-001"]


def test_add_over_price_limit_adds_nothing(chat_client, merchant, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "добавь молоко до 40 руб")

    assert reply_text(sent) == (
        "Не нашёл таких товаров по цене до 40,00. Самый дешёвый — «Молоко Галичина 3.2%» за 42,00."
    )
    assert [event for event in sent if event["type"] == "product_cards"] == []
    assert cart_posts(merchant) == []


def test_add_position_over_price_limit(chat_client, merchant, shopper_conversation):
    send(chat_client, shopper_conversation, "молоко")
    sent = send(chat_client, shopper_conversation, "додай перший до 44 грн")

    assert reply_text(sent) == (
        "«Молоко Lactel 2.5%» коштує 45,90.\n"
        "Ця ціна поза межею, яку ви назвали, тому я нічого не додав."
    )
    assert [event["type"] for event in sent] == ["text_delta", "text_end", "response_complete"]
    assert cart_posts(merchant) == []
    assert len(products_requests(merchant)) == 1


def test_add_position_over_price_promo(chat_client, merchant, shopper_conversation):
    send(chat_client, shopper_conversation, "milk")
    sent = send(chat_client, shopper_conversation, "add the second one under 40 uah")

    assert reply_text(sent) == (
        "“Молоко Галичина 3.2%” costs 42.00 instead of 52.00 (promotion -19%).\n"
        "That price is outside the limit you gave, so I added nothing."
    )
    assert cart_posts(merchant) == []


def test_add_position_within_price_limit(chat_client, merchant, shopper_conversation):
    send(chat_client, shopper_conversation, "молоко")
    sent = send(chat_client, shopper_conversation, "додай 2 шт другого до 44 грн")

    assert reply_text(sent).startswith("Додав у кошик: Молоко Галичина 3.2%, 2 шт.\n")
    assert cart_posts(merchant) == [milk_added(2)]


def test_add_position_with_contradictory_prices(chat_client, merchant, shopper_conversation):
    send(chat_client, shopper_conversation, "молоко")
    sent = send(chat_client, shopper_conversation, "add the second one under 20 over 50")

    assert reply_text(sent) == (
        "A product cannot cost both up to 20.00 and 50.00 or more. Give one price limit "
        "or a range, such as “from 20.00 to 50.00”."
    )
    assert cart_posts(merchant) == []


def test_add_cheapest_of_last_list(chat_client, merchant, shopper_conversation):
    send(chat_client, shopper_conversation, "milk")
    sent = send(chat_client, shopper_conversation, "add the cheapest one")

    assert reply_text(sent).startswith("Added to your cart: Молоко Галичина 3.2%, 1 pc.\n")
    assert cart_posts(merchant) == [milk_added(1)]
    assert len(products_requests(merchant)) == 1


@pytest.mark.parametrize(
    ("text", "expected_text"),
    [
        (
            "молоко дешевше 20 грн і дорожче 50 грн",
            "Товар не може коштувати водночас до 20,00 і від 50,00. Напишіть одну межу ціни "
            "або діапазон, наприклад «від 20,00 до 50,00».",
        ),
        (
            "milk under 20 over 50",
            "A product cannot cost both up to 20.00 and 50.00 or more. Give one price limit "
            "or a range, such as “from 20.00 to 50.00”.",
        ),
        (
            "молоко дешевле 20 и дороже 50",
            "Товар не может стоить одновременно до 20,00 и от 50,00. Напишите одну границу "
            "цены или диапазон, например «от 20,00 до 50,00».",
        ),
        (
            "додай молоко дешевше 20 і дорожче 50",
            "Товар не може коштувати водночас до 20,00 і від 50,00. Напишіть одну межу ціни "
            "або діапазон, наприклад «від 20,00 до 50,00».",
        ),
        (
            "від 30 до 50 дешевше 20",
            "Товар не може коштувати водночас до 20,00 і від 30,00. Напишіть одну межу ціни "
            "або діапазон, наприклад «від 20,00 до 30,00».",
        ),
    ],
)
def test_contradictory_price_limits(
    chat_client, merchant, shopper_conversation, text, expected_text
):
    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected_text
    assert [event["type"] for event in sent] == ["text_delta", "text_end", "response_complete"]
    assert products_requests(merchant) == []
    assert cart_posts(merchant) == []


def test_reversed_price_range_is_swapped(chat_client, merchant, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "молоко від 50 до 40 грн")

    assert reply_text(sent).startswith(
        "Ось що я знайшов за запитом «молоко» за ціною від 40,00 до 50,00:\n"
    )
    assert [card["sku"] for card in cards_of(sent)] == ["milk-001", "milk-002"]


def test_full_width_query_is_searched(chat_client, shopper_conversation):
    # Full-width Latin letters, which search folds to "moloko" and transliterates.
    sent = send(chat_client, shopper_conversation, "ｍｏｌｏｋｏ")

    assert reply_text(sent).startswith("Ось що я знайшов за запитом «moloko»:\n")
    assert {"milk-001", "milk-002"} <= {card["sku"] for card in cards_of(sent)}
    stored = Message.objects.filter(conversation=shopper_conversation, role=Message.Role.USER)
    assert [message.text for message in stored] == ["ｍｏｌｏｋｏ"]


def test_full_width_cart_command(chat_client, merchant, shopper_conversation):
    second = cards_of(send(chat_client, shopper_conversation, "молоко"))[1]

    # "dodaj druhyi", Ukrainian in full-width Latin letters: "додай другий".
    sent = send(chat_client, shopper_conversation, "ｄｏｄａｊ ｄｒｕｈｙｉ")

    assert [(post["action"], post["sku"]) for post in cart_posts(merchant)] == [
        ("add", second["sku"])
    ]
    assert reply_text(sent).startswith(f"Додав у кошик: {second['name']}, 1 шт.")


def test_reply_drops_bidi_controls_from_query(chat_client, shopper_conversation):
    text = "\u202eмолоко\u202c \u2066\u200f"

    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent).startswith("Ось що я знайшов за запитом «молоко»:\n")
    stored = Message.objects.filter(conversation=shopper_conversation, role=Message.Role.USER)
    assert [message.text for message in stored] == [text]


def test_not_found_reply_drops_format_characters(chat_client, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "ананас\u202e\u2067 кокос\u2069\u00ad")

    assert reply_text(sent) == (
        "За запитом «ананас кокос» нічого не знайшлося. Спробуйте інші слова, наприклад "
        "назву товару або бренд."
    )


def test_non_discount_promotions_show_regular_price(
    tenant, catalog, merchant_without_discounts, chat_client
):
    conversation = ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)

    sent = send(chat_client, conversation, "молоко")

    assert reply_text(sent) == (
        "Ось що я знайшов за запитом «молоко»:\n"
        "1. Молоко Lactel 2.5% — 45,90\n"
        "2. Молоко Галичина 3.2% — 52,00\n"
        "Ще 1 знайдений товар зараз відсутній, тому я його не показую.\n"
        "Щоб додати товар, напишіть, наприклад, «додай перший» або «додай 2 шт другого»."
    )
    prices = [
        (card["sku"], card["price"], card["promo_price"], card["promo_label"])
        for card in cards_of(sent)
    ]
    assert prices == [("milk-001", 45.9, None, None), ("milk-002", 52.0, None, None)]

    added = send(chat_client, conversation, "додай Галичину")

    assert reply_text(added) == (
        "Додав у кошик: Молоко Галичина 3.2%, 1 шт.\nПозицій у кошику: 1, сума: 52,00."
    )
    assert [post["price"] for post in cart_posts(merchant_without_discounts)] == [52.0]
