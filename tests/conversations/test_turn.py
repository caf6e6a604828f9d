"""The turn service: persistence, error handling and the one-time cart load."""

import logging
from collections.abc import Iterator

import pytest

from conversations import events
from conversations.assistants import Turn
from conversations.events import Event
from conversations.identity import ShopperIdentity
from conversations.models import Conversation, Message
from conversations.services import ConversationTurn, conversation_create

pytestmark = pytest.mark.django_db


class FailingAssistant:
    """An assistant that starts a reply and then raises, like a bug in an assistant would."""

    name = "failing"

    def respond(self, turn: Turn) -> Iterator[Event]:
        yield events.status(events.StatusCode.SEARCHING)
        raise RuntimeError("search index is broken")


class RecordingAssistant:
    """An assistant that records the turns it gets and replies with their text."""

    name = "recording"

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    def respond(self, turn: Turn) -> Iterator[Event]:
        self.turns.append(turn)
        turn.metadata["seen_history"] = len(turn.history)
        yield from events.text_events(f"echo: {turn.text}")


def test_conversation_create_uses_the_user_id_as_session(tenant):
    identity = ShopperIdentity(user_id="user-9", limit_key="user:user-9")

    conversation = conversation_create(tenant=tenant, store_id="store-1", identity=identity)

    assert conversation.session_id == "user-9"
    assert conversation.user_id == "user-9"
    assert conversation.limit_identity == "user:user-9"
    assert conversation.store_id == "store-1"
    assert conversation.cart == {"items": [], "total": 0.0}


def test_unexpected_error_becomes_an_internal_error_event(conversation, caplog):
    turn = ConversationTurn(conversation=conversation, text="молоко", assistant=FailingAssistant())

    with caplog.at_level(logging.ERROR, logger="conversations.services"):
        sent = list(turn.run())

    error_event = sent[1]
    assert sent == [
        {"type": "status", "code": "searching"},
        {"type": "error", "code": "internal_error", "error_id": error_event["error_id"]},
        {"type": "response_complete"},
    ]
    assert len(error_event["error_id"]) == 32
    [record] = [r for r in caplog.records if r.getMessage() == "conversations.turn.failed"]
    assert record.error_id == error_event["error_id"]
    assert record.conversation_id == conversation.public_id
    assert str(record.exc_info[1]) == "search index is broken"
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.events == sent
    assert reply.text == ""
    assert reply.metadata == {"assistant": "failing"}
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at is None


def test_disconnect_at_the_error_event_saves_the_reply(conversation):
    turn = ConversationTurn(conversation=conversation, text="молоко", assistant=FailingAssistant())
    turn.start()
    stream = turn.events()
    status_event = next(stream)
    error_event = next(stream)

    # A server whose write of the error event failed closes the stream there.
    stream.close()

    assert status_event == {"type": "status", "code": "searching"}
    assert error_event["code"] == "internal_error"
    shopper, reply = conversation.messages.order_by("created_at", "pk")
    assert shopper.text == "молоко"
    assert reply.role == Message.Role.ASSISTANT
    assert reply.events == [status_event, error_event]
    assert reply.metadata == {"assistant": "failing", "interrupted": "client_disconnected"}
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at is None


def test_turn_passes_language_and_history(conversation):
    assistant = RecordingAssistant()

    list(ConversationTurn(conversation=conversation, text="молоко", assistant=assistant).run())
    second = ConversationTurn(conversation=conversation, text="I need bread", assistant=assistant)
    sent = list(second.run())

    first_turn, second_turn = assistant.turns
    assert first_turn.language == "uk"
    assert first_turn.history == []
    assert second_turn.language == "en"
    assert [(entry.role, entry.text) for entry in second_turn.history] == [
        ("user", "молоко"),
        ("assistant", "echo: молоко"),
    ]
    assert sent[-1] == {"type": "response_complete"}
    assert second.reply_message().metadata == {"assistant": "recording", "seen_history": 2}


def test_language_without_letters_follows_the_previous_message(conversation):
    assistant = RecordingAssistant()

    list(
        ConversationTurn(conversation=conversation, text="show my cart", assistant=assistant).run()
    )
    list(ConversationTurn(conversation=conversation, text="2", assistant=assistant).run())

    assert assistant.turns[1].language == "en"


def test_default_language_comes_from_the_tenant(conversation, tenant):
    tenant.assistant_settings.default_language = "ru"
    tenant.assistant_settings.save()
    assistant = RecordingAssistant()

    list(ConversationTurn(conversation=conversation, text="молоко", assistant=assistant).run())

    assert assistant.turns[0].language == "ru"


def test_reply_message_is_unavailable_before_the_turn_ran(conversation):
    turn = ConversationTurn(conversation=conversation, text="молоко")

    with pytest.raises(RuntimeError, match="has not finished"):
        turn.reply_message()


def test_unanswered_message_gets_an_interrupted_reply(conversation):
    # A worker saved the shopper's message and stopped before it could reply.
    Message.objects.create(
        tenant=conversation.tenant, conversation=conversation, role="user", text="молоко"
    )
    assistant = RecordingAssistant()

    sent = list(
        ConversationTurn(conversation=conversation, text="ще раз", assistant=assistant).run()
    )

    roles = list(conversation.messages.order_by("created_at", "pk").values_list("role", flat=True))
    assert roles == ["user", "assistant", "user", "assistant"]
    marker = conversation.messages.order_by("created_at", "pk")[1]
    assert marker.text == ""
    assert marker.events == [
        {"type": "error", "code": "internal_error", "reason": "interrupted"},
        {"type": "response_complete"},
    ]
    assert marker.metadata == {"assistant": None, "interrupted": "interrupted"}
    assert [(entry.role, entry.text) for entry in assistant.turns[0].history] == [
        ("user", "молоко"),
        ("assistant", ""),
    ]
    assert sent[-1] == {"type": "response_complete"}


def test_answered_history_gets_no_interrupted_reply(conversation):
    list(
        ConversationTurn(conversation=conversation, text="a", assistant=RecordingAssistant()).run()
    )

    list(
        ConversationTurn(conversation=conversation, text="b", assistant=RecordingAssistant()).run()
    )

    roles = list(conversation.messages.order_by("created_at", "pk").values_list("role", flat=True))
    assert roles == ["user", "assistant", "user", "assistant"]
    assert not conversation.messages.filter(metadata__interrupted="interrupted").exists()
