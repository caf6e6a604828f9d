"""The offline assistant with tools disabled in the tenant's AI settings.

Each conversation goes through the chat API to the reference merchant on 127.0.0.1. A
command whose tool is disabled gets a short reply and sends no webhook request.
"""

import json
from collections.abc import Iterator

import pytest

from catalog.schemas import ProductInput
from catalog.services import product_upsert_many, products_embed_pending
from conversations.models import Conversation
from merchant.server import MerchantServer, start_merchant
from tests.conversations.agent.chat import send_stream, types_of
from tests.conversations.chat import cart_posts, reply_text, send
from tests.conversations.shop_data import CATALOG, SESSION_ID, STOCK, STORE_ID
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db

BREAD = {
    "sku": "bread-01",
    "name": "Хліб Київхліб білий",
    "price": 32.0,
    "promo_price": None,
    "brand": None,
    "quantity": 2,
    "unit": "pcs",
}
MILK = {
    "sku": "milk-001",
    "name": "Молоко Lactel 2.5%",
    "price": 45.9,
    "promo_price": None,
    "brand": None,
    "quantity": 1,
    "unit": "pcs",
}
SEEDED_CART = {"items": [BREAD, MILK], "total": 109.9}
# Event types of a reply to a disabled command, which has no status, cards or cart change.
DISABLED_REPLY_TYPES = ["text_delta", "text_end", "response_complete"]


def disable(tenant, *tools: str) -> None:
    tenant.assistant_settings.disabled_tools = list(tools)
    tenant.assistant_settings.save()


def requests_to(merchant: MerchantServer, path: str, method: str = "POST") -> list:
    return [
        request
        for request in merchant.requests
        if request.path == path and request.method == method
    ]


@pytest.fixture
def shopper_conversation(tenant, catalog, merchant) -> Conversation:
    """Tenant A's conversation, whose cart at the merchant has 2 loaves and 1 milk."""
    tenant.webhook_settings.cart_get_url = merchant.cart_get_url
    tenant.webhook_settings.save()
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 2), ("milk-001", 1)])
    return ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)


@pytest.fixture
def other_merchant(other_tenant, local_webhooks) -> Iterator[MerchantServer]:
    """A second reference merchant, wired to tenant B's webhooks, with the same stock."""
    webhook_settings = other_tenant.webhook_settings
    server = start_merchant(secret=webhook_settings.secret, stock=STOCK, catalog=CATALOG)
    webhook_settings.products_url = server.products_url
    webhook_settings.cart_url = server.cart_url
    webhook_settings.cart_get_url = server.cart_get_url
    webhook_settings.save()
    yield server
    server.shutdown()


@pytest.fixture
def other_conversation(other_tenant, other_merchant) -> Conversation:
    """Tenant B's conversation, with the same catalog and cart as tenant A's."""
    product_upsert_many(tenant=other_tenant, products=[ProductInput(**row) for row in CATALOG])
    products_embed_pending(tenant=other_tenant)
    other_merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 2), ("milk-001", 1)])
    return ConversationFactory(tenant=other_tenant, store_id=STORE_ID, session_id=SESSION_ID)


@pytest.mark.parametrize(
    ("tool", "text", "expected"),
    [
        ("clear_cart", "очисти кошик", "Вибачте, у цьому магазині я не можу очищати кошик у чаті."),
        (
            "clear_cart",
            "clear the cart",
            "Sorry, this shop does not let me clear your cart in this chat.",
        ),
        (
            "clear_cart",
            "очисти корзину",
            "Извините, в этом магазине я не могу очищать корзину в чате.",
        ),
        (
            "remove_from_cart",
            "прибери хліб",
            "Вибачте, у цьому магазині я не можу прибирати товари з кошика в чаті.",
        ),
        (
            "remove_from_cart",
            "remove the bread",
            "Sorry, this shop does not let me remove products from your cart in this chat.",
        ),
        (
            "remove_from_cart",
            "видали все молоко",
            "Вибачте, у цьому магазині я не можу прибирати товари з кошика в чаті.",
        ),
        (
            "update_quantity",
            "зміни кількість хліба на 3",
            "Вибачте, у цьому магазині я не можу змінювати кількість товарів у кошику в чаті.",
        ),
        (
            "update_quantity",
            "set the bread to 3",
            "Sorry, this shop does not let me change quantities in your cart in this chat.",
        ),
        (
            # Without a quantity the assistant would ask for one: it does not ask.
            "update_quantity",
            "зміни кількість хліба",
            "Вибачте, у цьому магазині я не можу змінювати кількість товарів у кошику в чаті.",
        ),
        (
            "add_to_cart",
            "додай ще хліба",
            "Вибачте, у цьому магазині я не можу додавати товари в кошик у чаті.",
        ),
        (
            "add_to_cart",
            "add 2 more bread",
            "Sorry, this shop does not let me add products to your cart in this chat.",
        ),
        (
            "add_to_cart",
            "добавь ещё хлеба",
            "Извините, в этом магазине я не могу добавлять товары в корзину в чате.",
        ),
    ],
)
def test_disabled_cart_command_is_not_run(
    chat_client, tenant, merchant, shopper_conversation, tool, text, expected
):
    disable(tenant, tool)

    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected
    assert [event["type"] for event in sent] == DISABLED_REPLY_TYPES
    assert cart_posts(merchant) == []
    assert requests_to(merchant, "/vizochok/products") == []
    assert [item["quantity"] for item in merchant.store.cart_items(STORE_ID, SESSION_ID)] == [2, 1]
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == SEEDED_CART
    assert shopper_conversation.messages.filter(role="assistant").get().text == expected


def test_disabled_command_over_sse(chat_client, tenant, merchant, shopper_conversation):
    disable(tenant, "clear_cart")

    response, sent = send_stream(chat_client, shopper_conversation, "очисти кошик")

    assert response["Content-Type"].startswith("text/event-stream")
    assert reply_text(sent) == "Вибачте, у цьому магазині я не можу очищати кошик у чаті."
    assert types_of(sent) == DISABLED_REPLY_TYPES
    assert cart_posts(merchant) == []
    assert len(merchant.store.cart_items(STORE_ID, SESSION_ID)) == 2
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == SEEDED_CART


def test_disabled_add_over_sse(chat_client, tenant, merchant, shopper_conversation):
    disable(tenant, "add_to_cart")
    send(chat_client, shopper_conversation, "молоко")

    response, sent = send_stream(chat_client, shopper_conversation, "додай другий")

    assert reply_text(sent) == "Вибачте, у цьому магазині я не можу додавати товари в кошик у чаті."
    assert types_of(sent) == DISABLED_REPLY_TYPES
    assert cart_posts(merchant) == []
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == SEEDED_CART


def test_disabled_search_finds_nothing(chat_client, tenant, merchant, shopper_conversation):
    disable(tenant, "search_products")

    sent = send(chat_client, shopper_conversation, "молоко")
    english = send(chat_client, shopper_conversation, "milk")

    assert reply_text(sent) == "Вибачте, у цьому магазині я не можу шукати товари в чаті."
    assert [event["type"] for event in sent] == DISABLED_REPLY_TYPES
    assert (
        reply_text(english) == "Sorry, this shop does not let me search for products in this chat."
    )
    assert requests_to(merchant, "/vizochok/products") == []
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.state["offline"]["listed"] == []


def test_add_by_new_name_needs_search(chat_client, tenant, merchant, shopper_conversation):
    # "Яблуко" is neither shown nor in the cart, so adding it would search the catalog.
    disable(tenant, "search_products")

    sent = send(chat_client, shopper_conversation, "додай яблуко")

    assert reply_text(sent) == "Вибачте, у цьому магазині я не можу шукати товари в чаті."
    assert [event["type"] for event in sent] == DISABLED_REPLY_TYPES
    assert requests_to(merchant, "/vizochok/products") == []
    assert cart_posts(merchant) == []


def test_add_by_price_needs_search(chat_client, tenant, merchant, shopper_conversation):
    disable(tenant, "search_products")

    sent = send(chat_client, shopper_conversation, "додай молоко до 40 грн")

    assert reply_text(sent) == "Вибачте, у цьому магазині я не можу шукати товари в чаті."
    assert [event["type"] for event in sent] == DISABLED_REPLY_TYPES
    assert requests_to(merchant, "/vizochok/products") == []
    assert cart_posts(merchant) == []


def test_disabled_search_keeps_cart_commands(chat_client, tenant, merchant, shopper_conversation):
    disable(tenant, "search_products")

    sent = send(chat_client, shopper_conversation, "додай ще хліба")

    assert reply_text(sent) == (
        "Додав у кошик: Хліб Київхліб білий, 1 шт.\nПозицій у кошику: 2, сума: 141,90."
    )
    assert [post["action"] for post in cart_posts(merchant)] == ["add"]
    assert requests_to(merchant, "/vizochok/products") == []


def test_disabled_view_cart_shows_no_cart(chat_client, tenant, merchant, shopper_conversation):
    disable(tenant, "view_cart")
    # The first message loads the merchant's cart, as it does for every tenant.
    send(chat_client, shopper_conversation, "дякую")

    sent = send(chat_client, shopper_conversation, "що в кошику?")

    assert reply_text(sent) == "Вибачте, у цьому магазині я не можу показувати кошик у чаті."
    assert [event["type"] for event in sent] == DISABLED_REPLY_TYPES
    # Without the setting, "що в кошику?" would reload the cart with a second cart GET.
    assert len(requests_to(merchant, "/vizochok/cart", method="GET")) == 1
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.state["offline"]["listed"] == []


def test_disabled_view_cart_keeps_change_summary(
    chat_client, tenant, merchant, shopper_conversation
):
    disable(tenant, "view_cart")

    sent = send(chat_client, shopper_conversation, "прибери хліб")

    assert (
        reply_text(sent)
        == "Прибрав з кошика: Хліб Київхліб білий.\nПозицій у кошику: 1, сума: 45,90."
    )
    assert [post["action"] for post in cart_posts(merchant)] == ["remove"]
    assert "cart_changed" in [event["type"] for event in sent]


def test_other_commands_still_run(chat_client, tenant, merchant, shopper_conversation):
    disable(tenant, "clear_cart")

    removed = send(chat_client, shopper_conversation, "прибери хліб")
    cleared = send(chat_client, shopper_conversation, "очисти кошик")

    assert reply_text(removed) == (
        "Прибрав з кошика: Хліб Київхліб білий.\nПозицій у кошику: 1, сума: 45,90."
    )
    [changed] = [event for event in removed if event["type"] == "cart_changed"]
    assert changed["action"] == "item_removed"
    assert reply_text(cleared) == "Вибачте, у цьому магазині я не можу очищати кошик у чаті."
    assert [post["action"] for post in cart_posts(merchant)] == ["remove"]
    assert [item["sku"] for item in merchant.store.cart_items(STORE_ID, SESSION_ID)] == ["milk-001"]


def test_partial_removal_uses_update_quantity(chat_client, tenant, merchant, shopper_conversation):
    # Taking 1 of 2 loaves off sets the line to 1, which is update_quantity's job.
    disable(tenant, "remove_from_cart")

    sent = send(chat_client, shopper_conversation, "видали 1 шт хліба")
    whole = send(chat_client, shopper_conversation, "видали 1 шт хліба")

    assert reply_text(sent) == (
        "Змінив кількість: Хліб Київхліб білий — тепер 1 шт.\nПозицій у кошику: 2, сума: 77,90."
    )
    # The second removal would leave nothing, so it needs remove_from_cart.
    assert reply_text(whole) == (
        "Вибачте, у цьому магазині я не можу прибирати товари з кошика в чаті."
    )
    posts = cart_posts(merchant)
    assert [(post["action"], post["quantity"]) for post in posts] == [("update_quantity", 1)]


def test_quantity_zero_needs_remove(chat_client, tenant, merchant, shopper_conversation):
    disable(tenant, "update_quantity")

    sent = send(chat_client, shopper_conversation, "зміни кількість хліба на 0")
    changed = send(chat_client, shopper_conversation, "зміни кількість молока на 2")

    assert reply_text(sent) == (
        "Прибрав з кошика: Хліб Київхліб білий.\nПозицій у кошику: 1, сума: 45,90."
    )
    assert reply_text(changed) == (
        "Вибачте, у цьому магазині я не можу змінювати кількість товарів у кошику в чаті."
    )
    assert [post["action"] for post in cart_posts(merchant)] == ["remove"]


def test_help_lists_enabled_commands(chat_client, tenant, merchant, shopper_conversation):
    disable(tenant, "clear_cart", "search_products")

    sent = send(chat_client, shopper_conversation, "допомога")

    assert reply_text(sent) == (
        "Я допоможу змінити ваш кошик. Напишіть, наприклад: «додай другий», "
        "«зміни кількість першого на 2», «прибери молоко» або «що в кошику?»."
    )
    assert cart_posts(merchant) == []
    assert requests_to(merchant, "/vizochok/products") == []


def test_one_tenant_setting_leaves_another(
    chat_client,
    other_chat_client,
    tenant,
    merchant,
    other_merchant,
    shopper_conversation,
    other_conversation,
):
    disable(tenant, "clear_cart", "search_products")

    rejected = send(chat_client, shopper_conversation, "очисти кошик")
    cleared = send(other_chat_client, other_conversation, "очисти кошик")
    found = send(other_chat_client, other_conversation, "молоко")

    assert reply_text(rejected) == "Вибачте, у цьому магазині я не можу очищати кошик у чаті."
    assert reply_text(cleared) == "Кошик очищено."
    [changed] = [event for event in cleared if event["type"] == "cart_changed"]
    assert changed["action"] == "cart_cleared"
    assert reply_text(found).startswith("Ось що я знайшов за запитом «молоко»:")
    assert cart_posts(merchant) == []
    assert [post["action"] for post in cart_posts(other_merchant)] == ["clear"]
    assert len(requests_to(other_merchant, "/vizochok/products")) == 1
    assert merchant.store.cart_items(STORE_ID, SESSION_ID) != []
    assert other_merchant.store.cart_items(STORE_ID, SESSION_ID) == []
    other_tenant = other_conversation.tenant
    other_tenant.assistant_settings.refresh_from_db()
    assert other_tenant.assistant_settings.disabled_tools == []


def test_cart_setting_keeps_search(chat_client, tenant, merchant, shopper_conversation):
    # A tenant that disables only cart tools still searches with the products webhook.
    disable(tenant, "clear_cart")

    send(chat_client, shopper_conversation, "молоко")

    [request] = requests_to(merchant, "/vizochok/products")
    assert json.loads(request.body)["store_id"] == STORE_ID


def test_undo_without_view_cart(chat_client, tenant, merchant, shopper_conversation):
    disable(tenant, "view_cart")

    sent = send(chat_client, shopper_conversation, "скасуй")

    assert reply_text(sent) == (
        "Я не можу скасувати зміну, але ви можете виправити кошик: напишіть, наприклад, "
        "«прибери молоко» або «зміни кількість першого на 2»."
    )
    assert cart_posts(merchant) == []
    assert [event["type"] for event in sent] == ["text_delta", "text_end", "response_complete"]
