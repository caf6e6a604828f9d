"""Conversations about an existing cart, through the API and the reference merchant.

These flows need no catalog search: the cart comes from the merchant's cart GET webhook and
the shopper refers to its lines by position or name.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Conversation, Message
from tests.conversations.chat import cart_posts, reply_text, send
from tests.conversations.shop_data import SESSION_ID, STORE_ID
from tests.factories import ConversationFactory
from webhooks.models import CircuitBreaker, WebhookDelivery, WebhookKind

pytestmark = pytest.mark.django_db

BREAD = {
    "sku": "bread-01",
    "name": "Хліб Київхліб білий",
    "price": 32.0,
    "promo_price": None,
    "brand": None,
    "quantity": 1,
    "unit": "pcs",
}
MILK = {
    "sku": "milk-001",
    "name": "Молоко Lactel 2.5%",
    "price": 45.9,
    "promo_price": None,
    "brand": None,
    "quantity": 2,
    "unit": "pcs",
}


@pytest.fixture
def cart_get(tenant, merchant) -> None:
    tenant.webhook_settings.cart_get_url = merchant.cart_get_url
    tenant.webhook_settings.save()


@pytest.fixture
def shopper_conversation(tenant) -> Conversation:
    return ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)


def cart_get_requests(merchant) -> list:
    return [request for request in merchant.requests if request.method == "GET"]


def test_cart_is_loaded_on_the_first_message(chat_client, merchant, cart_get, shopper_conversation):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1)])

    first = send(chat_client, shopper_conversation, "що в кошику?")
    send(chat_client, shopper_conversation, "привіт")

    assert reply_text(first) == (
        "У вашому кошику:\n1. Хліб Київхліб білий — 1 шт × 32,00 = 32,00\nРазом: 32,00."
    )
    [request] = cart_get_requests(merchant)
    assert request.query == {"store_id": STORE_ID, "session_id": SESSION_ID}
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [BREAD], "total": 32.0}
    assert shopper_conversation.cart_loaded_at is not None


def test_show_cart_sends_no_second_cart_get(chat_client, merchant, cart_get, shopper_conversation):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1)])
    send(chat_client, shopper_conversation, "привіт")
    # The shopper changes the cart on the store's website meanwhile.
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("milk-001", 2)])

    shown = send(chat_client, shopper_conversation, "покажи кошик")

    # Cart GET is sent once per conversation, so the reply lists the cart loaded with the
    # first message.
    assert reply_text(shown) == (
        "У вашому кошику:\n1. Хліб Київхліб білий — 1 шт × 32,00 = 32,00\nРазом: 32,00."
    )
    assert len(cart_get_requests(merchant)) == 1
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [BREAD], "total": 32.0}


def test_cart_load_failure_is_not_retried(
    chat_client, tenant, local_webhooks, shopper_conversation, closed_port_url
):
    tenant.webhook_settings.cart_get_url = closed_port_url
    tenant.webhook_settings.save()

    first = send(chat_client, shopper_conversation, "що в кошику?")
    second = send(chat_client, shopper_conversation, "що в кошику?")

    expected = (
        "Не вдалося завантажити ваш кошик із магазину, тому тут лише зміни з цієї розмови, "
        "а сума може бути неповною.\n"
        "Ваш кошик порожній."
    )
    assert reply_text(first) == expected
    assert reply_text(second) == expected
    # One call of the first message: a connection error is not retried, and no later
    # message sends another.
    assert WebhookDelivery.objects.filter(kind=WebhookKind.CART_GET).count() == 1
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [], "total": 0.0}
    assert shopper_conversation.cart_loaded_at is None


def test_cart_get_is_sent_once_per_conversation(
    chat_client, tenant, merchant, cart_get, shopper_conversation, closed_port_url
):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1)])
    tenant.webhook_settings.cart_get_url = closed_port_url
    tenant.webhook_settings.save()
    send(chat_client, shopper_conversation, "дякую")
    tenant.webhook_settings.cart_get_url = merchant.cart_get_url
    tenant.webhook_settings.save()

    second = send(chat_client, shopper_conversation, "дякую")
    send(chat_client, shopper_conversation, "що в кошику?")

    assert reply_text(second) == "Будь ласка! Чим ще можу допомогти?"
    assert cart_get_requests(merchant) == []
    assert WebhookDelivery.objects.filter(kind=WebhookKind.CART_GET).count() == 1
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [], "total": 0.0}
    assert shopper_conversation.cart_loaded_at is None


def test_held_cart_get_is_sent_later(chat_client, tenant, merchant, cart_get, shopper_conversation):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1)])
    breaker = CircuitBreaker.objects.create(
        tenant=tenant,
        kind=WebhookKind.CART_GET,
        state=CircuitBreaker.State.OPEN,
        retry_at=timezone.now() + timedelta(hours=1),
    )

    first = send(chat_client, shopper_conversation, "що в кошику?")

    # The open breaker held the call, so no request reached the merchant.
    assert cart_get_requests(merchant) == []
    assert reply_text(first) == (
        "Не вдалося завантажити ваш кошик із магазину, тому тут лише зміни з цієї розмови, "
        "а сума може бути неповною.\n"
        "Ваш кошик порожній."
    )
    shopper_conversation.refresh_from_db()
    assert "cart_get_sent" not in shopper_conversation.state
    assert shopper_conversation.cart_loaded_at is None

    breaker.delete()
    second = send(chat_client, shopper_conversation, "що в кошику?")
    send(chat_client, shopper_conversation, "що в кошику?")

    assert reply_text(second) == (
        "У вашому кошику:\n1. Хліб Київхліб білий — 1 шт × 32,00 = 32,00\nРазом: 32,00."
    )
    assert len(cart_get_requests(merchant)) == 1
    assert list(
        WebhookDelivery.objects.filter(kind=WebhookKind.CART_GET)
        .order_by("pk")
        .values_list("outcome", flat=True)
    ) == [WebhookDelivery.Outcome.CIRCUIT_OPEN, WebhookDelivery.Outcome.SUCCESS]
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [BREAD], "total": 32.0}
    assert shopper_conversation.state["cart_get_sent"] is True


def test_cart_get_url_saved_later(chat_client, tenant, merchant, shopper_conversation):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1)])
    send(chat_client, shopper_conversation, "дякую")
    tenant.webhook_settings.cart_get_url = merchant.cart_get_url
    tenant.webhook_settings.save()

    shown = send(chat_client, shopper_conversation, "що в кошику?")
    send(chat_client, shopper_conversation, "дякую")

    assert reply_text(shown) == (
        "У вашому кошику:\n1. Хліб Київхліб білий — 1 шт × 32,00 = 32,00\nРазом: 32,00."
    )
    assert len(cart_get_requests(merchant)) == 1
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [BREAD], "total": 32.0}


def test_no_cart_load_without_a_cart_get_url(chat_client, merchant, shopper_conversation):
    send(chat_client, shopper_conversation, "що в кошику?")

    assert cart_get_requests(merchant) == []
    assert WebhookDelivery.objects.count() == 0


def test_cart_positions_drive_quantity_and_removal(
    chat_client, merchant, cart_get, shopper_conversation
):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1), ("milk-001", 2)])

    listing = send(chat_client, shopper_conversation, "що в кошику?")
    updated = send(chat_client, shopper_conversation, "зміни кількість першого на 3")
    removed = send(chat_client, shopper_conversation, "видали другий")

    assert reply_text(listing) == (
        "У вашому кошику:\n"
        "1. Хліб Київхліб білий — 1 шт × 32,00 = 32,00\n"
        "2. Молоко Lactel 2.5% — 2 шт × 45,90 = 91,80\n"
        "Разом: 123,80."
    )
    assert updated == [
        {"type": "status", "code": "updating_cart"},
        {
            "type": "text_delta",
            "delta": "Змінив кількість: Хліб Київхліб білий — тепер 3 шт.\n"
            "Позицій у кошику: 2, сума: 187,80.",
        },
        {"type": "text_end"},
        {
            "type": "cart_changed",
            "action": "quantity_updated",
            "sku": "bread-01",
            "name": "Хліб Київхліб білий",
            "quantity": 3,
            "items": [{**BREAD, "quantity": 3}, MILK],
            "total": 187.8,
        },
        {"type": "response_complete"},
    ]
    assert removed[-2] == {
        "type": "cart_changed",
        "action": "item_removed",
        "sku": "milk-001",
        "name": "Молоко Lactel 2.5%",
        "items": [{**BREAD, "quantity": 3}],
        "total": 96.0,
    }
    assert cart_posts(merchant) == [
        {
            "action": "update_quantity",
            "store_id": STORE_ID,
            "session_id": SESSION_ID,
            "sku": "bread-01",
            "quantity": 3,
        },
        {"action": "remove", "store_id": STORE_ID, "session_id": SESSION_ID, "sku": "milk-001"},
    ]
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [{**BREAD, "quantity": 3}], "total": 96.0}


def test_rejected_quantity_leaves_the_cart_unchanged(
    chat_client, merchant, cart_get, shopper_conversation
):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1)])
    send(chat_client, shopper_conversation, "що в кошику?")

    sent = send(chat_client, shopper_conversation, "зроби 9 хліба")

    assert reply_text(sent) == (
        "У магазині немає стільки «Хліб Київхліб білий» (9 шт). Спробуйте меншу кількість."
    )
    assert [event["type"] for event in sent] == [
        "status",
        "text_delta",
        "text_end",
        "response_complete",
    ]
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.cart == {"items": [BREAD], "total": 32.0}
    assert merchant.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 1


def test_remove_by_name_and_clear_in_english(chat_client, merchant, cart_get, shopper_conversation):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1), ("milk-001", 2)])

    removed = send(chat_client, shopper_conversation, "remove the Lactel")
    cleared = send(chat_client, shopper_conversation, "clear the cart")

    assert reply_text(removed) == (
        "Removed from your cart: Молоко Lactel 2.5%.\nItems in your cart: 1, total: 32.00."
    )
    assert reply_text(cleared) == "Your cart is now empty."
    assert cleared[-2] == {
        "type": "cart_changed",
        "action": "cart_cleared",
        "items": [],
        "total": 0.0,
    }
    assert merchant.store.cart_items(STORE_ID, SESSION_ID) == []
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 2


@pytest.fixture
def stale_conversation(tenant) -> Conversation:
    """A conversation whose snapshot still lists milk that the shopper removed elsewhere."""
    return ConversationFactory(
        tenant=tenant,
        store_id=STORE_ID,
        session_id=SESSION_ID,
        cart={"items": [BREAD, MILK], "total": 123.8},
        cart_loaded_at=timezone.now(),
    )


def test_not_in_cart_drops_stale_line(chat_client, merchant, cart_get, stale_conversation):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1)])

    sent = send(chat_client, stale_conversation, "видали молоко")
    after = send(chat_client, stale_conversation, "видали хліб")

    assert reply_text(sent) == "«Молоко Lactel 2.5%» немає у вашому кошику."
    assert [event["type"] for event in sent] == [
        "status",
        "text_delta",
        "text_end",
        "response_complete",
    ]
    assert cart_posts(merchant)[0] == {
        "action": "remove",
        "store_id": STORE_ID,
        "session_id": SESSION_ID,
        "sku": "milk-001",
    }
    # The conversation loaded its cart before, so cart GET is not sent again.
    assert cart_get_requests(merchant) == []
    assert reply_text(after).startswith("Прибрав з кошика: Хліб Київхліб білий.")
    stale_conversation.refresh_from_db()
    assert stale_conversation.cart == {"items": [], "total": 0.0}


def test_not_in_cart_without_cart_get_drops_the_line(chat_client, merchant, stale_conversation):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1)])

    sent = send(chat_client, stale_conversation, "зміни кількість молока на 3")

    assert reply_text(sent) == "«Молоко Lactel 2.5%» немає у вашому кошику."
    assert cart_get_requests(merchant) == []
    stale_conversation.refresh_from_db()
    assert stale_conversation.cart == {"items": [BREAD], "total": 32.0}


def test_cart_summary_is_partial_while_the_cart_is_unknown(
    chat_client, tenant, merchant, closed_port_url, shopper_conversation
):
    tenant.webhook_settings.cart_get_url = closed_port_url
    tenant.webhook_settings.save()
    shopper_conversation.state = {
        "seen": {"bread-01": {"sku": "bread-01", "name": "Хліб Київхліб білий", "price": 32.0}},
        "offline": {"listed": ["bread-01"], "listed_kind": "search", "focus": None},
    }
    shopper_conversation.save()

    sent = send(chat_client, shopper_conversation, "додай перший")

    assert reply_text(sent) == (
        "Додав у кошик: Хліб Київхліб білий, 1 шт.\n"
        "Позицій, доданих у цій розмові: 1, їхня сума: 32,00. Кошик із магазину не вдалося "
        "завантажити, тож загальна сума може бути більшою."
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "скільки разом?",
            "У вашому кошику:\n1. Хліб Київхліб білий — 1 шт × 32,00 = 32,00\nРазом: 32,00.",
        ),
        (
            "what's the total?",
            "In your cart:\n1. Хліб Київхліб білий — 1 pc × 32.00 = 32.00\nTotal: 32.00.",
        ),
        (
            "скасуй",
            "Я не можу скасувати зміну, але ви можете виправити кошик: напишіть, наприклад, "
            "«прибери молоко» або «зміни кількість першого на 2».\n"
            "У вашому кошику:\n1. Хліб Київхліб білий — 1 шт × 32,00 = 32,00\nРазом: 32,00.",
        ),
        (
            "undo",
            "I cannot undo a change, but you can correct your cart: say for example “remove "
            "milk” or “set the first to 2”.\n"
            "In your cart:\n1. Хліб Київхліб білий — 1 pc × 32.00 = 32.00\nTotal: 32.00.",
        ),
        ("дякую, до побачення", "Дякую, що завітали! Гарного дня."),
        ("спасибо, пока", "Спасибо, что зашли! Хорошего дня."),
        ("bye", "Thanks for stopping by! Have a nice day."),
    ],
)
def test_total_undo_and_goodbye_replies(
    chat_client, merchant, cart_get, shopper_conversation, text, expected
):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1)])

    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected
    assert cart_posts(merchant) == []
    assert [event for event in sent if event["type"] == "cart_changed"] == []
    assert merchant.store.cart_items(STORE_ID, SESSION_ID) != []


def test_ukrainian_in_latin_letters(chat_client, merchant, cart_get, shopper_conversation):
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("bread-01", 1), ("milk-001", 2)])

    shown = send(chat_client, shopper_conversation, "shcho v koshyku?")
    removed = send(chat_client, shopper_conversation, "vydaly khlib")
    changed = send(chat_client, shopper_conversation, "zminy kilkist pershoho na 3")

    assert reply_text(shown) == (
        "У вашому кошику:\n"
        "1. Хліб Київхліб білий — 1 шт × 32,00 = 32,00\n"
        "2. Молоко Lactel 2.5% — 2 шт × 45,90 = 91,80\n"
        "Разом: 123,80."
    )
    assert reply_text(removed) == (
        "Прибрав з кошика: Хліб Київхліб білий.\nПозицій у кошику: 1, сума: 91,80."
    )
    assert reply_text(changed) == (
        "Змінив кількість: Молоко Lactel 2.5% — тепер 3 шт.\nПозицій у кошику: 1, сума: 137,70."
    )
    assert [post["action"] for post in cart_posts(merchant)] == ["remove", "update_quantity"]
    [line] = merchant.store.cart_items(STORE_ID, SESSION_ID)
    assert (line["sku"], line["quantity"]) == ("milk-001", 3)
    texts = list(shopper_conversation.messages.filter(role="user").values_list("text", flat=True))
    assert texts == ["shcho v koshyku?", "vydaly khlib", "zminy kilkist pershoho na 3"]
