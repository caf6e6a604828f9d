"""The ``language`` of a WebSocket ``auth`` frame, over real sockets."""

import pytest

from conversations.models import Conversation, Message, OpenSocket, UserDailyUsage
from tests.conversations.chat import reply_text
from tests.conversations.shop_data import STORE_ID
from tests.conversations.test_conversation_language import (
    ENGLISH_ADD_MILK,
    NOTHING_SHOWN,
    RUSSIAN_MILK,
    UKRAINIAN_MILK,
)
from tests.conversations.websocket_client import (
    authenticate,
    close_code,
    open_socket,
    receive,
    reply_events,
    send_frame,
)
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)

AUTH_OK = {"type": "auth_ok", "assistant": "offline"}


def first_reply(ws_url: str, raw_key: str, text: str, **auth_fields) -> tuple[Conversation, str]:
    """Start a conversation with ``text`` on a new socket; return it and its reply text."""
    with open_socket(ws_url) as ws:
        assert authenticate(ws, raw_key, store_id=STORE_ID, **auth_fields) == AUTH_OK
        send_frame(ws, {"type": "message", "text": text})
        started = receive(ws)
        sent = reply_events(ws)
    assert started["type"] == "conversation_started"
    return Conversation.objects.get(public_id=started["conversation_id"]), reply_text(sent)


def shopper_language(conversation: Conversation) -> str:
    return conversation.messages.get(role=Message.Role.USER).metadata["language"]


def test_socket_russian_ambiguous_message_in_russian(ws_url, public_key, catalog, merchant):
    conversation, text = first_reply(ws_url, public_key.raw_key, "покажи молоко", language="ru")

    assert text == RUSSIAN_MILK
    assert shopper_language(conversation) == "ru"
    assert conversation.state["language"] == "ru"


def test_socket_english_message_wins(ws_url, public_key, catalog, merchant):
    conversation, text = first_reply(ws_url, public_key.raw_key, "add milk", language="ru")

    assert text == ENGLISH_ADD_MILK
    assert shopper_language(conversation) == "en"


@pytest.mark.parametrize("auth_fields", [{}, {"language": None}], ids=["absent", "null"])
def test_socket_without_language_tenant_default(ws_url, public_key, catalog, merchant, auth_fields):
    conversation, text = first_reply(ws_url, public_key.raw_key, "покажи молоко", **auth_fields)

    assert text == UKRAINIAN_MILK
    assert shopper_language(conversation) == "uk"


def test_socket_language_for_new_conversations(ws_url, public_key):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID, language="en")
        texts = []
        for _ in range(2):
            send_frame(ws, {"type": "message", "text": "2"})
            assert receive(ws)["type"] == "conversation_started"
            texts.append(reply_text(reply_events(ws)))

    assert texts == [NOTHING_SHOWN["en"], NOTHING_SHOWN["en"]]
    languages = [conversation.state["language"] for conversation in Conversation.objects.all()]
    assert languages == ["en", "en"]


def test_socket_language_leaves_existing_conversation(ws_url, tenant, public_key):
    conversation = ConversationFactory(tenant=tenant)

    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, language="ru")
        send_frame(ws, {"type": "message", "text": "2", "conversation_id": conversation.public_id})
        sent = reply_events(ws)

    assert reply_text(sent) == NOTHING_SHOWN["uk"]
    conversation.refresh_from_db()
    assert conversation.state["language"] == "uk"


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("de", '"de" is not a valid choice.'),
        ("RU", '"RU" is not a valid choice.'),
        ("", '"" is not a valid choice.'),
        (1, "Expected a string, got a number."),
        (["ru"], "Expected a string, got an array."),
    ],
)
def test_socket_invalid_language_closes_4001(ws_url, public_key, language, message):
    with open_socket(ws_url) as ws:
        rejection = authenticate(ws, public_key.raw_key, store_id=STORE_ID, language=language)
        assert close_code(ws) == 4001

    assert rejection == {
        "type": "error",
        "code": "invalid_json",
        "detail": "The message is invalid.",
        "fields": {"language": [message]},
    }
    assert OpenSocket.objects.count() == 0
    assert Conversation.objects.count() == 0
    assert UserDailyUsage.objects.count() == 0


def test_socket_language_of_other_tenant(ws_url, public_key, other_public_key, other_tenant):
    theirs, text = first_reply(ws_url, other_public_key.raw_key, "2", language="ru")
    assert theirs.tenant == other_tenant
    assert text == NOTHING_SHOWN["ru"]

    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, language="en")
        send_frame(ws, {"type": "message", "text": "2", "conversation_id": theirs.public_id})
        rejection = receive(ws)
        send_frame(ws, {"type": "message", "text": "2"})
        missing_store = receive(ws)

    assert rejection == {"type": "error", "code": "not_found", "detail": "Conversation not found."}
    assert missing_store["code"] == "invalid_json"
    theirs.refresh_from_db()
    assert theirs.state["language"] == "ru"
    assert theirs.messages.count() == 2
    assert Conversation.objects.count() == 1
