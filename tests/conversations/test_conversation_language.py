"""The client's language as a new conversation's language, over the REST API."""

import pytest

from conversations.identity import ShopperIdentity
from conversations.models import Conversation, Message, UserDailyUsage
from conversations.services import conversation_create
from tests.conversations.chat import reply_text, send
from tests.conversations.shop_data import STORE_ID

pytestmark = pytest.mark.django_db

CREATE_URL = "/api/v1/conversations"

RUSSIAN_MILK = (
    "Вот что я нашёл по запросу «молоко»:\n"
    "1. Молоко Lactel 2.5% — 45,90\n"
    "2. Молоко Галичина 3.2% — 42,00 вместо 52,00 (акция -19%)\n"
    "Ещё 1 найденный товар сейчас отсутствует, поэтому я его не показываю.\n"
    "Чтобы добавить товар, напишите, например, «добавь первый» или «добавь 2 шт второго»."
)
UKRAINIAN_MILK = (
    "Ось що я знайшов за запитом «молоко»:\n"
    "1. Молоко Lactel 2.5% — 45,90\n"
    "2. Молоко Галичина 3.2% — 42,00 замість 52,00 (акція -19%)\n"
    "Ще 1 знайдений товар зараз відсутній, тому я його не показую.\n"
    "Щоб додати товар, напишіть, наприклад, «додай перший» або «додай 2 шт другого»."
)
ENGLISH_ADD_MILK = (
    "Added to your cart: Молоко Lactel 2.5%, 1 pc.\nItems in your cart: 1, total: 45.90."
)
# The offline assistant's reply to "2" before any product was shown.
NOTHING_SHOWN = {
    "uk": "Я ще не показував товарів. Напишіть, що шукаєте, наприклад «молоко».",
    "en": "I haven't shown any products yet. Tell me what you are looking for, for example “milk”.",
    "ru": "Я ещё не показывал товаров. Напишите, что ищете, например «молоко».",
}


def invalid_body(fields: dict) -> dict:
    return {"detail": "The request body is invalid.", "code": "invalid_json", "fields": fields}


def create(client, **fields) -> Conversation:
    response = client.post(CREATE_URL, {"store_id": STORE_ID, **fields}, format="json")
    assert response.status_code == 201, response.content
    return Conversation.objects.get(public_id=response.json()["conversation_id"])


def shopper_language(conversation: Conversation) -> str:
    return conversation.messages.get(role=Message.Role.USER).metadata["language"]


def test_language_stored_as_conversation_language(chat_client):
    response = chat_client.post(CREATE_URL, {"store_id": STORE_ID, "language": "ru"}, format="json")

    assert response.status_code == 201
    conversation = Conversation.objects.get()
    assert conversation.state == {"language": "ru"}
    # The response has the same fields as without a language.
    assert sorted(response.json()) == [
        "assistant",
        "conversation_id",
        "created_at",
        "session_id",
        "store_id",
    ]


def test_russian_client_ambiguous_message_in_russian(chat_client, catalog, merchant):
    conversation = create(chat_client, language="ru")

    sent = send(chat_client, conversation, "покажи молоко")

    assert reply_text(sent) == RUSSIAN_MILK
    assert shopper_language(conversation) == "ru"
    conversation.refresh_from_db()
    assert conversation.state["language"] == "ru"


def test_english_message_wins_over_client_language(chat_client, catalog, merchant):
    conversation = create(chat_client, language="ru")

    sent = send(chat_client, conversation, "add milk")

    assert reply_text(sent) == ENGLISH_ADD_MILK
    assert shopper_language(conversation) == "en"
    conversation.refresh_from_db()
    assert conversation.state["language"] == "en"


def test_without_language_tenant_default_applies(chat_client, catalog, merchant):
    conversation = create(chat_client)

    sent = send(chat_client, conversation, "покажи молоко")

    assert conversation.state == {}
    assert reply_text(sent) == UKRAINIAN_MILK
    assert shopper_language(conversation) == "uk"


def test_null_language_tenant_default_applies(chat_client, tenant):
    tenant.assistant_settings.default_language = "ru"
    tenant.assistant_settings.save()
    conversation = create(chat_client, language=None)

    sent = send(chat_client, conversation, "2")

    assert conversation.state == {}
    assert reply_text(sent) == NOTHING_SHOWN["ru"]


@pytest.mark.parametrize("language", ["uk", "en", "ru"])
def test_client_language_replaces_tenant_default(chat_client, tenant, language):
    tenant.assistant_settings.default_language = "ru" if language != "ru" else "uk"
    tenant.assistant_settings.save()
    conversation = create(chat_client, language=language)

    sent = send(chat_client, conversation, "2")

    assert reply_text(sent) == NOTHING_SHOWN[language]
    assert shopper_language(conversation) == language


def test_detected_language_replaces_client_language(chat_client):
    conversation = create(chat_client, language="ru")
    send(chat_client, conversation, "show my cart")

    sent = send(chat_client, conversation, "2")

    assert reply_text(sent) == NOTHING_SHOWN["en"]


@pytest.mark.parametrize(
    ("_case", "language", "message"),
    [
        ("unknown", "de", '"de" is not a valid choice.'),
        ("upper case", "RU", '"RU" is not a valid choice.'),
        ("region", "ru-RU", '"ru-RU" is not a valid choice.'),
        ("padded", " ru", '" ru" is not a valid choice.'),
        ("empty", "", '"" is not a valid choice.'),
        ("number", 1, "Expected a string, got a number."),
        ("boolean", True, "Expected a string, got a boolean."),
        ("array", ["ru"], "Expected a string, got an array."),
        ("object", {"ru": "ru"}, "Expected a string, got an object."),
    ],
)
def test_invalid_language_rejected(chat_client, _case, language, message):
    response = chat_client.post(
        CREATE_URL, {"store_id": STORE_ID, "language": language}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == invalid_body({"language": [message]})
    assert Conversation.objects.count() == 0
    assert UserDailyUsage.objects.count() == 0


def test_create_service_rejects_unknown_language(tenant):
    identity = ShopperIdentity(user_id="", limit_key="key:1")

    with pytest.raises(ValueError, match="Unknown language 'de'"):
        conversation_create(tenant=tenant, store_id=STORE_ID, identity=identity, language="de")

    assert Conversation.objects.count() == 0
    assert UserDailyUsage.objects.count() == 0


def test_other_tenant_language_conversation(other_chat_client, chat_client, other_tenant):
    theirs = create(other_chat_client, language="ru")

    response = chat_client.post(
        f"/api/v1/conversations/{theirs.public_id}/messages", {"text": "2"}, format="json"
    )

    assert theirs.tenant == other_tenant
    assert response.status_code == 404
    assert response.json() == {"detail": "Conversation not found.", "code": "not_found"}
    theirs.refresh_from_db()
    assert theirs.state == {"language": "ru"}
    assert theirs.messages.count() == 0


def test_language_is_per_conversation(chat_client, other_chat_client, tenant):
    create(other_chat_client, language="ru")
    conversation = create(chat_client)

    sent = send(chat_client, conversation, "2")

    assert reply_text(sent) == NOTHING_SHOWN["uk"]
