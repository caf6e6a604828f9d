"""Reference handling and clarifying questions of the offline assistant, through the API."""

import pytest

from conversations.assistants import OfflineAssistant, get_assistant
from conversations.tools import ShownProduct
from merchant.server import start_merchant
from tests.conversations.chat import cart_posts, reply_text, send
from tests.conversations.shop_data import (
    BREAD,
    MILK_GALYCHYNA,
    MILK_LACTEL,
    SESSION_ID,
    STORE_ID,
    show,
)
from tests.factories import ConversationFactory
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

# A third milk whose brand is that of MILK_GALYCHYNA, under the merchant's sold-out SKU.
MILK_GALYCHYNA_LOW_FAT = ShownProduct(sku="milk-003", name="Молоко Галичина 2.6%", price=38.5)


def cart_post(action: str, **fields) -> dict:
    """Return the body of a cart webhook request of the shopper conversation's session."""
    return {"action": action, "store_id": STORE_ID, "session_id": SESSION_ID, **fields}


@pytest.fixture
def shopper_conversation(tenant):
    return ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)


@pytest.fixture
def seeded_cart(tenant, merchant):
    """Two milks and bread in the merchant's cart, loaded on the first message."""
    merchant.store.cart_seed(
        STORE_ID, SESSION_ID, [("milk-001", 1), ("milk-002", 1), ("bread-01", 1)]
    )
    tenant.webhook_settings.cart_get_url = merchant.cart_get_url
    tenant.webhook_settings.save()


def test_get_assistant_is_offline_without_llm_settings(tenant, settings):
    settings.OPENAI_BASE_URL = ""
    settings.OPENAI_API_KEY = ""

    assistant = get_assistant(tenant)

    assert isinstance(assistant, OfflineAssistant)
    assert assistant.name == "offline"


def test_position_before_any_list_asks_for_a_search(chat_client, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "додай другий")

    assert reply_text(sent) == (
        "Я ще не показував товарів. Напишіть, що шукаєте, наприклад «молоко»."
    )
    assert WebhookDelivery.objects.count() == 0


def test_add_without_a_product_asks_which(chat_client, seeded_cart, shopper_conversation):
    send(chat_client, shopper_conversation, "що в кошику?")

    sent = send(chat_client, shopper_conversation, "add")

    assert reply_text(sent) == "Which product do you mean? Name it or give its number in the list."


def test_position_beyond_the_list(chat_client, merchant, seeded_cart, shopper_conversation):
    send(chat_client, shopper_conversation, "що в кошику?")

    sent = send(chat_client, shopper_conversation, "видали п'ятий")

    assert reply_text(sent) == "В останньому списку немає позиції №5, у ньому позицій: 3."
    assert cart_posts(merchant) == []


def test_ambiguous_name_lists_the_matches(chat_client, merchant, seeded_cart, shopper_conversation):
    asked = send(chat_client, shopper_conversation, "прибери молоко")
    removed = send(chat_client, shopper_conversation, "видали другий")

    assert reply_text(asked) == (
        "Під «молоко» підходить кілька товарів:\n"
        "1. Молоко Lactel 2.5% — 45,90\n"
        "2. Молоко Галичина 3.2% — 42,00\n"
        "Який саме? Напишіть номер або точнішу назву."
    )
    assert cart_posts(merchant) == [cart_post("remove", sku="milk-002")]
    assert reply_text(removed).startswith("Прибрав з кошика: Молоко Галичина 3.2%.")


def test_position_reply_removes_ambiguous_match(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    send(chat_client, shopper_conversation, "прибери молоко")

    removed = send(chat_client, shopper_conversation, "2")

    assert cart_posts(merchant) == [cart_post("remove", sku="milk-002")]
    assert reply_text(removed).startswith("Прибрав з кошика: Молоко Галичина 3.2%.")
    assert [event["action"] for event in removed if event["type"] == "cart_changed"] == [
        "item_removed"
    ]
    assert shopper_conversation.messages.filter(role="assistant").last().metadata == {
        "assistant": "offline",
        "intent": "remove",
    }


def test_position_reply_keeps_requested_quantity(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    send(chat_client, shopper_conversation, "зміни кількість молока на 3")

    changed = send(chat_client, shopper_conversation, "перший")

    assert cart_posts(merchant) == [cart_post("update_quantity", sku="milk-001", quantity=3)]
    assert reply_text(changed).startswith("Змінив кількість: Молоко Lactel 2.5% — тепер 3 шт.")


def test_position_beyond_list_keeps_question(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    send(chat_client, shopper_conversation, "прибери молоко")

    missing = send(chat_client, shopper_conversation, "5")
    posts_after_missing = cart_posts(merchant)
    removed = send(chat_client, shopper_conversation, "1")

    assert reply_text(missing) == "В останньому списку немає позиції №5, у ньому позицій: 2."
    assert posts_after_missing == []
    assert cart_posts(merchant) == [cart_post("remove", sku="milk-001")]
    assert reply_text(removed).startswith("Прибрав з кошика: Молоко Lactel 2.5%.")


@pytest.mark.parametrize("answer", ["0", "-1", "1001", "2,5", "½", "0, будь ласка"])
def test_non_position_number_keeps_question(
    chat_client, merchant, seeded_cart, shopper_conversation, answer
):
    send(chat_client, shopper_conversation, "прибери молоко")

    wrong = send(chat_client, shopper_conversation, answer)
    posts_after_wrong = cart_posts(merchant)
    removed = send(chat_client, shopper_conversation, "2")

    # The number is not searched for, and the question stays open for the next answer.
    assert reply_text(wrong) == "Напишіть номер від 1 до 2."
    assert [event["type"] for event in wrong] == ["text_delta", "text_end", "response_complete"]
    assert posts_after_wrong == []
    assert shopper_conversation.messages.filter(role="assistant")[1].metadata == {
        "assistant": "offline",
        "intent": "remove",
    }
    assert cart_posts(merchant) == [cart_post("remove", sku="milk-002")]
    assert reply_text(removed).startswith("Прибрав з кошика: Молоко Галичина 3.2%.")


def test_non_position_number_in_english(chat_client, merchant, seeded_cart, shopper_conversation):
    send(chat_client, shopper_conversation, "delete milk")

    wrong = send(chat_client, shopper_conversation, "0")

    assert reply_text(wrong) == "Give a number from 1 to 2."
    assert cart_posts(merchant) == []


def test_russian_old_amount_after_s(chat_client, merchant, seeded_cart, shopper_conversation):
    changed = send(chat_client, shopper_conversation, "измени количество молока Lactel с 1 на 3")

    assert cart_posts(merchant) == [cart_post("update_quantity", sku="milk-001", quantity=3)]
    assert reply_text(changed).startswith("Изменил количество: Молоко Lactel 2.5% — теперь 3 шт.")


@pytest.mark.parametrize(
    ("reply", "sku", "expected"),
    [
        ("галичина", "milk-002", "Прибрав з кошика: Молоко Галичина 3.2%."),
        ("2,5%", "milk-001", "Прибрав з кошика: Молоко Lactel 2.5%."),
        ("молоко галичину, будь ласка", "milk-002", "Прибрав з кошика: Молоко Галичина 3.2%."),
    ],
)
def test_name_reply_runs_pending_command(
    chat_client, merchant, seeded_cart, shopper_conversation, reply, sku, expected
):
    # The question requests "a number or a more exact name": a name of one listed product
    # removes it, instead of searching for the name and offering to add it.
    send(chat_client, shopper_conversation, "прибери молоко")

    removed = send(chat_client, shopper_conversation, reply)

    assert cart_posts(merchant) == [cart_post("remove", sku=sku)]
    assert reply_text(removed).startswith(expected)
    assert shopper_conversation.messages.filter(role="assistant")[1].metadata == {
        "assistant": "offline",
        "intent": "remove",
    }
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.state["offline"]["pending"] is None


def test_name_reply_matching_several_asks_again(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    # Three milks match "молоко"; "галичина" narrows the choice to two of them.
    show(shopper_conversation, MILK_LACTEL, MILK_GALYCHYNA, MILK_GALYCHYNA_LOW_FAT)
    send(chat_client, shopper_conversation, "додай молоко")

    again = send(chat_client, shopper_conversation, "галичина")
    posts_after_again = cart_posts(merchant)
    added = send(chat_client, shopper_conversation, "1")

    assert reply_text(again) == (
        "Під «галичина» підходить кілька товарів:\n"
        "1. Молоко Галичина 3.2% — 42,00 замість 52,00 (акція -19%)\n"
        "2. Молоко Галичина 2.6% — 38,50\n"
        "Який саме? Напишіть номер або точнішу назву."
    )
    assert posts_after_again == []
    assert cart_posts(merchant) == [
        cart_post("add", sku="milk-002", name="Молоко Галичина 3.2%", quantity=1, price=52.0)
    ]
    assert reply_text(added).startswith("Додав у кошик: Молоко Галичина 3.2%, 1 шт.")


@pytest.mark.parametrize("answer", ["молоко", "milk", "молоко, будь ласка"])
def test_reply_naming_whole_list_searches(
    chat_client, merchant, seeded_cart, shopper_conversation, answer
):
    # A name that fits the whole list narrows nothing: asking the same question again
    # would never close it, so the reply is a search, as it is without a question.
    send(chat_client, shopper_conversation, "прибери молоко")

    searched = send(chat_client, shopper_conversation, answer)

    assert searched[0] == {"type": "status", "code": "searching"}
    assert "Який саме?" not in reply_text(searched)
    assert cart_posts(merchant) == []
    assert shopper_conversation.messages.filter(role="assistant")[1].metadata == {
        "assistant": "offline",
        "intent": "search",
    }
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.state["offline"]["pending"] is None


@pytest.mark.parametrize("answer", ["хліб", "кефір", "2 шт"])
def test_reply_naming_no_listed_product_searches(
    chat_client, merchant, seeded_cart, shopper_conversation, answer
):
    send(chat_client, shopper_conversation, "прибери молоко")

    searched = send(chat_client, shopper_conversation, answer)

    assert searched[0] == {"type": "status", "code": "searching"}
    assert cart_posts(merchant) == []
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.state["offline"]["pending"] is None


def test_position_after_another_message_adds(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    send(chat_client, shopper_conversation, "прибери молоко")
    send(chat_client, shopper_conversation, "дякую")

    added = send(chat_client, shopper_conversation, "2")

    assert cart_posts(merchant) == [
        cart_post("add", sku="milk-002", name="Молоко Галичина 3.2%", quantity=1, price=42.0)
    ]
    assert reply_text(added).startswith("Додав у кошик: Молоко Галичина 3.2%, 1 шт.")


def test_english_names_match_ukrainian_cart_lines(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    asked = send(chat_client, shopper_conversation, "delete milk")
    changed = send(chat_client, shopper_conversation, "change quantity of bread to 2")

    assert reply_text(asked) == (
        "Several products match “milk”:\n"
        "1. Молоко Lactel 2.5% — 45.90\n"
        "2. Молоко Галичина 3.2% — 42.00\n"
        "Which one? Give its number or a more exact name."
    )
    assert cart_posts(merchant) == [cart_post("update_quantity", sku="bread-01", quantity=2)]
    assert reply_text(changed).startswith("Changed the quantity: Хліб Київхліб білий is now 2 pcs.")


def test_quantity_question_then_short_command(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    send(chat_client, shopper_conversation, "що в кошику?")

    asked = send(chat_client, shopper_conversation, "зміни кількість третього")
    changed = send(chat_client, shopper_conversation, "зроби 2")

    assert reply_text(asked) == (
        "Скільки поставити для «Хліб Київхліб білий»? Напишіть, наприклад, «зроби 2»."
    )
    assert cart_posts(merchant) == [cart_post("update_quantity", sku="bread-01", quantity=2)]
    assert reply_text(changed).startswith("Змінив кількість: Хліб Київхліб білий — тепер 2 шт.")


def test_quantity_zero_removes_the_product(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    send(chat_client, shopper_conversation, "що в кошику?")

    sent = send(chat_client, shopper_conversation, "set the third to 0")

    assert cart_posts(merchant) == [cart_post("remove", sku="bread-01")]
    assert sent[-2]["action"] == "item_removed"


def test_pronoun_removes_the_last_changed(chat_client, merchant, seeded_cart, shopper_conversation):
    send(chat_client, shopper_conversation, "що в кошику?")
    send(chat_client, shopper_conversation, "зміни кількість третього на 2")

    sent = send(chat_client, shopper_conversation, "прибери його")

    assert reply_text(sent).startswith("Прибрав з кошика: Хліб Київхліб білий.")
    assert cart_posts(merchant)[-1] == cart_post("remove", sku="bread-01")


def _send_after_three_loaves(chat_client, conversation, text: str) -> list[dict]:
    """Show the cart, set its third line (a loaf) to 3, then send ``text``."""
    send(chat_client, conversation, "що в кошику?")
    send(chat_client, conversation, "зміни кількість третього на 3")
    return send(chat_client, conversation, text)


@pytest.mark.parametrize(
    ("text", "expected_post", "expected_reply"),
    [
        # An amount taken off the line keeps the rest.
        (
            "видали 2 шт третього",
            {"action": "update_quantity", "sku": "bread-01", "quantity": 1},
            "Змінив кількість: Хліб Київхліб білий — тепер 1 шт.",
        ),
        (
            "видали 3 шт третього",
            {"action": "remove", "sku": "bread-01"},
            "Прибрав з кошика: Хліб Київхліб білий.",
        ),
        # A number beside a pronoun or "ще" is an amount of the product changed last.
        (
            "remove 2 of them",
            {"action": "update_quantity", "sku": "bread-01", "quantity": 1},
            "Changed the quantity: Хліб Київхліб білий is now 1 pc.",
        ),
        (
            "видали дві з них",
            {"action": "update_quantity", "sku": "bread-01", "quantity": 1},
            "Змінив кількість: Хліб Київхліб білий — тепер 1 шт.",
        ),
        (
            "прибери 2 його",
            {"action": "update_quantity", "sku": "bread-01", "quantity": 1},
            "Змінив кількість: Хліб Київхліб білий — тепер 1 шт.",
        ),
        (
            "take 2 of them out",
            {"action": "update_quantity", "sku": "bread-01", "quantity": 1},
            "Changed the quantity: Хліб Київхліб білий is now 1 pc.",
        ),
        (
            "видали ще 2",
            {"action": "update_quantity", "sku": "bread-01", "quantity": 1},
            "Змінив кількість: Хліб Київхліб білий — тепер 1 шт.",
        ),
        # "зменш" and "збільш" change by the amount, and with "до" set it.
        (
            "зменш на 1",
            {"action": "update_quantity", "sku": "bread-01", "quantity": 2},
            "Змінив кількість: Хліб Київхліб білий — тепер 2 шт.",
        ),
        (
            "збільш його на 2",
            {
                "action": "add",
                "sku": "bread-01",
                "quantity": 2,
                "name": "Хліб Київхліб білий",
                "price": 32.0,
            },
            "Додав у кошик: Хліб Київхліб білий, 2 шт.",
        ),
        (
            "зменш до 1",
            {"action": "update_quantity", "sku": "bread-01", "quantity": 1},
            "Змінив кількість: Хліб Київхліб білий — тепер 1 шт.",
        ),
    ],
)
def test_amount_changes_of_three_loaves(
    chat_client, merchant, seeded_cart, shopper_conversation, text, expected_post, expected_reply
):
    sent = _send_after_three_loaves(chat_client, shopper_conversation, text)

    assert reply_text(sent).startswith(expected_reply)
    assert cart_posts(merchant)[-1] == {
        "store_id": STORE_ID,
        "session_id": SESSION_ID,
        **expected_post,
    }
    assert len(cart_posts(merchant)) == 2


def test_removal_of_an_amount_after_a_question(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    sent = _send_after_three_loaves(chat_client, shopper_conversation, "видали 1 шт")

    assert reply_text(sent).startswith("Змінив кількість: Хліб Київхліб білий — тепер 2 шт.")
    assert cart_posts(merchant)[-1] == cart_post("update_quantity", sku="bread-01", quantity=2)


def test_take_it_out_removes(chat_client, merchant, seeded_cart, shopper_conversation):
    send(chat_client, shopper_conversation, "що в кошику?")
    send(chat_client, shopper_conversation, "зміни кількість третього на 2")

    sent = send(chat_client, shopper_conversation, "take it out")

    assert reply_text(sent).startswith("Removed from your cart: Хліб Київхліб білий.")
    assert cart_posts(merchant)[-1] == cart_post("remove", sku="bread-01")
    assert len(cart_posts(merchant)) == 2


@pytest.mark.parametrize(
    ("text", "expected_reply"),
    [
        ("видали -1", "Кількість має бути більшою за нуль."),
        ("видали 0", "Кількість має бути більшою за нуль."),
        ("remove -2 of them", "The quantity must be greater than zero."),
    ],
)
def test_remove_number_below_one_rejected(
    chat_client, merchant, seeded_cart, shopper_conversation, text, expected_reply
):
    sent = _send_after_three_loaves(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected_reply
    assert len(cart_posts(merchant)) == 1


def test_removal_of_an_invalid_amount_calls_no_webhook(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    send(chat_client, shopper_conversation, "що в кошику?")

    sent = send(chat_client, shopper_conversation, "видали -2 шт третього")

    assert reply_text(sent) == "Кількість має бути більшою за нуль."
    assert cart_posts(merchant) == []


def test_name_not_in_cart(chat_client, merchant, seeded_cart, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "прибери кефір")

    assert reply_text(sent) == "У кошику немає товару «кефір»."
    assert cart_posts(merchant) == []


def test_thanks_gets_a_polite_reply(chat_client, shopper_conversation):
    sent = send(chat_client, shopper_conversation, "Дякую!")

    assert reply_text(sent) == "Будь ласка! Чим ще можу допомогти?"


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("не додавай другий", "Добре, кошик лишаю без змін."),
        ("don't add the second one", "OK, I left your cart as it is."),
        ("не видаляй все", "Добре, кошик лишаю без змін."),
        ("не добавляй второй", "Хорошо, корзину оставляю без изменений."),
    ],
)
def test_negated_command_leaves_the_cart(
    chat_client, merchant, seeded_cart, shopper_conversation, text, reply
):
    show(shopper_conversation, MILK_LACTEL, MILK_GALYCHYNA)
    send(chat_client, shopper_conversation, "що в кошику?")

    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == reply
    assert [event["type"] for event in sent] == ["text_delta", "text_end", "response_complete"]
    assert cart_posts(merchant) == []
    assert shopper_conversation.messages.filter(role="assistant").last().metadata == {
        "assistant": "offline",
        "intent": "negated",
    }


def test_interjection_before_a_command(chat_client, merchant, seeded_cart, shopper_conversation):
    send(chat_client, shopper_conversation, "що в кошику?")
    send(chat_client, shopper_conversation, "додай перший")

    changed = send(chat_client, shopper_conversation, "ой, зроби 3")

    assert cart_posts(merchant)[1:] == [cart_post("update_quantity", sku="milk-001", quantity=3)]
    assert reply_text(changed).startswith("Змінив кількість: Молоко Lactel 2.5% — тепер 3 шт.")


def test_yes_to_which_one_drops_the_question(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    send(chat_client, shopper_conversation, "прибери молоко")

    answered = send(chat_client, shopper_conversation, "так")

    assert reply_text(answered).startswith("Я допоможу знайти товари і зібрати кошик.")
    assert cart_posts(merchant) == []
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.state["offline"]["pending"] is None


@pytest.fixture
def milk_only_cart(tenant, merchant):
    """One milk in the merchant's cart, loaded on the first message."""
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("milk-001", 1)])
    tenant.webhook_settings.cart_get_url = merchant.cart_get_url
    tenant.webhook_settings.save()


@pytest.mark.parametrize(
    ("text", "action", "reply"),
    [
        ("прибери хліб", "remove", "«Хліб Київхліб білий» немає у вашому кошику."),
        (
            "зміни кількість хліба на 3",
            "update_quantity",
            "«Хліб Київхліб білий» немає у вашому кошику.",
        ),
        ("remove the bread", "remove", "“Хліб Київхліб білий” is not in your cart."),
    ],
)
def test_name_of_shown_product_not_in_cart(
    chat_client, merchant, milk_only_cart, shopper_conversation, text, action, reply
):
    show(shopper_conversation, BREAD)
    send(chat_client, shopper_conversation, "що в кошику?")

    sent = send(chat_client, shopper_conversation, text)

    # The cart was loaded once, with the first message, and may miss lines added on the
    # merchant's site since, so the merchant decides.
    assert reply_text(sent) == reply
    assert [post["action"] for post in cart_posts(merchant)] == [action]
    assert [post["sku"] for post in cart_posts(merchant)] == ["bread-01"]
    assert len([request for request in merchant.requests if request.method == "GET"]) == 1
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.state["offline"]["pending"] is None


def test_name_not_in_snapshot_reaches_the_merchant(
    chat_client, merchant, milk_only_cart, shopper_conversation
):
    show(shopper_conversation, BREAD)
    send(chat_client, shopper_conversation, "що в кошику?")
    # The shopper puts bread in the cart on the merchant's site between two messages.
    merchant.store.cart_seed(STORE_ID, SESSION_ID, [("milk-001", 1), ("bread-01", 1)])

    sent = send(chat_client, shopper_conversation, "прибери хліб")

    assert reply_text(sent).startswith("Прибрав з кошика: Хліб Київхліб білий.")
    assert cart_posts(merchant) == [cart_post("remove", sku="bread-01")]


def test_name_of_shown_product_without_cart_get(chat_client, merchant, shopper_conversation):
    # Without cart GET the snapshot may miss lines added on the merchant's site, so a shown
    # product is still removed, and the merchant decides.
    show(shopper_conversation, BREAD)

    sent = send(chat_client, shopper_conversation, "прибери хліб")

    assert cart_posts(merchant) == [cart_post("remove", sku="bread-01")]
    assert reply_text(sent) == "«Хліб Київхліб білий» немає у вашому кошику."


@pytest.mark.parametrize("text", ["видали все молоко", "remove all the milk"])
def test_removal_of_every_matching_line(
    chat_client, merchant, seeded_cart, shopper_conversation, text
):
    sent = send(chat_client, shopper_conversation, text)

    assert cart_posts(merchant) == [
        cart_post("remove", sku="milk-001"),
        cart_post("remove", sku="milk-002"),
    ]
    changes = [event for event in sent if event["type"] == "cart_changed"]
    assert [change["sku"] for change in changes] == ["milk-001", "milk-002"]
    assert [item["sku"] for item in changes[-1]["items"]] == ["bread-01"]
    assert merchant.store.cart_items(STORE_ID, SESSION_ID) == [
        {
            "sku": "bread-01",
            "name": "Хліб Київхліб білий",
            "price": 32.0,
            "quantity": 1,
            "unit": "pcs",
        }
    ]
    assert "Молоко Lactel 2.5%" in reply_text(sent)
    assert "Молоко Галичина 3.2%" in reply_text(sent)


def test_both_removes_every_listed_match(chat_client, merchant, seeded_cart, shopper_conversation):
    send(chat_client, shopper_conversation, "прибери молоко")

    sent = send(chat_client, shopper_conversation, "обидва")

    assert reply_text(sent) == (
        "Прибрав з кошика: Молоко Lactel 2.5%.\n"
        "Прибрав з кошика: Молоко Галичина 3.2%.\n"
        "Позицій у кошику: 1, сума: 32,00."
    )
    assert cart_posts(merchant) == [
        cart_post("remove", sku="milk-001"),
        cart_post("remove", sku="milk-002"),
    ]
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.state["offline"]["pending"] is None
    assert shopper_conversation.messages.filter(role="assistant").last().metadata == {
        "assistant": "offline",
        "intent": "remove",
    }


@pytest.mark.parametrize("reply", ["видали всі", "прибери обидва", "видали все", "прибери всі"])
def test_removal_of_every_listed_keeps_other_lines(
    chat_client, merchant, seeded_cart, shopper_conversation, reply
):
    send(chat_client, shopper_conversation, "прибери молоко")

    sent = send(chat_client, shopper_conversation, reply)

    assert cart_posts(merchant) == [
        cart_post("remove", sku="milk-001"),
        cart_post("remove", sku="milk-002"),
    ]
    assert [item["sku"] for item in merchant.store.cart_items(STORE_ID, SESSION_ID)] == ["bread-01"]
    assert reply_text(sent).splitlines()[-1] == "Позицій у кошику: 1, сума: 32,00."
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.state["offline"]["pending"] is None


def test_both_after_an_add_question_searches(
    chat_client, merchant, seeded_cart, shopper_conversation
):
    show(shopper_conversation, MILK_LACTEL, MILK_GALYCHYNA)
    send(chat_client, shopper_conversation, "додай молоко")

    send(chat_client, shopper_conversation, "обидва")

    assert cart_posts(merchant) == []


# A book whose title has a bare number, which the offline assistant must not read as an amount.
BOOK_451 = ShownProduct(sku="book-451", name="Fahrenheit 451 by Ray Bradbury", price=9.99)


@pytest.fixture
def book_merchant(tenant, local_webhooks):
    """The reference merchant with only BOOK_451, as tenant A's products and cart webhooks."""
    webhook_settings = tenant.webhook_settings
    server = start_merchant(
        secret=webhook_settings.secret,
        stock={BOOK_451.sku: {"price": BOOK_451.price, "in_stock": True, "stock": 500}},
        catalog=[{"sku": BOOK_451.sku, "name": BOOK_451.name, "unit": "pcs"}],
    )
    webhook_settings.products_url = server.products_url
    webhook_settings.cart_url = server.cart_url
    webhook_settings.save()
    yield server
    server.shutdown()


def test_widget_add_of_name_with_number(chat_client, book_merchant, shopper_conversation):
    show(shopper_conversation, BOOK_451)

    sent = send(chat_client, shopper_conversation, "Add «Fahrenheit 451 by Ray Bradbury»")

    assert cart_posts(book_merchant) == [
        cart_post("add", sku="book-451", name=BOOK_451.name, quantity=1, price=9.99)
    ]
    assert book_merchant.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 1
    assert reply_text(sent).startswith("Added to your cart: Fahrenheit 451 by Ray Bradbury, 1 pc.")


def test_latin_add_of_quoted_cyrillic_name(chat_client, merchant, shopper_conversation):
    show(shopper_conversation, MILK_LACTEL, MILK_GALYCHYNA)

    sent = send(chat_client, shopper_conversation, "dodaj 2 «Молоко Галичина 3.2%»")

    assert [(post["sku"], post["quantity"]) for post in cart_posts(merchant)] == [("milk-002", 2)]
    assert reply_text(sent).startswith("Додав у кошик: Молоко Галичина 3.2%, 2 шт.")


def test_quoted_name_removes_whole_line(chat_client, book_merchant, shopper_conversation):
    book_merchant.store.cart_seed(STORE_ID, SESSION_ID, [(BOOK_451.sku, 500)])
    show(shopper_conversation, BOOK_451)

    sent = send(chat_client, shopper_conversation, "remove «Fahrenheit 451 by Ray Bradbury»")

    assert cart_posts(book_merchant) == [cart_post("remove", sku="book-451")]
    assert book_merchant.store.cart_items(STORE_ID, SESSION_ID) == []
    assert reply_text(sent).startswith("Removed from your cart: Fahrenheit 451 by Ray Bradbury.")


@pytest.mark.parametrize(
    ("text", "expected_reply"),
    [
        # "усе", "сім", "три" and "він" in Latin letters are English words here.
        ("remove use", "There is no “use” in your cart."),
        (
            "add sim card",
            "The store's catalog is empty for now, so there is nothing to search yet.",
        ),
        (
            "try oat milk",
            "The store's catalog is empty for now, so there is nothing to search yet.",
        ),
        (
            "add vin santo",
            "The store's catalog is empty for now, so there is nothing to search yet.",
        ),
    ],
)
def test_english_words_stay_english(
    chat_client, merchant, seeded_cart, shopper_conversation, text, expected_reply
):
    send(chat_client, shopper_conversation, "що в кошику?")

    sent = send(chat_client, shopper_conversation, text)

    assert reply_text(sent) == expected_reply
    assert cart_posts(merchant) == []
