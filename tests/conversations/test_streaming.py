"""The Server-Sent Events body of a turn that fails after its status line was sent."""

import logging
from collections.abc import Iterator

import pytest
from django.db import connection
from django.utils import timezone

from conversations import events
from conversations.assistants import Turn
from conversations.events import Event
from conversations.models import Conversation, Message
from conversations.services import ConversationTurn
from conversations.streaming import STREAM_OPENING, EventStream
from tests.conversations.agent.chat import sse_events
from tests.database import connection_to_closed_port


class LeaseTakingAssistant:
    """An assistant whose turn outlives its lease: another worker takes the conversation."""

    name = "lease-taking"

    def respond(self, turn: Turn) -> Iterator[Event]:
        Conversation.objects.filter(pk=turn.conversation.pk).update(turn_started_at=timezone.now())
        yield from events.text_events("Ось молоко.")


class DatabaseLosingAssistant:
    """An assistant during whose reply the database becomes unreachable."""

    name = "database-losing"

    def respond(self, turn: Turn) -> Iterator[Event]:
        yield from events.text_events("Ось молоко.")
        connection_to_closed_port()


def _stream_body(turn: ConversationTurn) -> bytes:
    turn.start()
    stream = EventStream(turn)
    try:
        return b"".join(stream)
    finally:
        stream.close()


def _failures(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "conversations.stream.failed"]


@pytest.mark.django_db
def test_lease_lost_ends_stream_with_error(conversation, caplog):
    turn = ConversationTurn(
        conversation=conversation, text="молоко", assistant=LeaseTakingAssistant()
    )

    with caplog.at_level(logging.ERROR):
        body = _stream_body(turn)

    assert body.startswith(STREAM_OPENING)
    sent = sse_events(body.decode())
    error_id = sent[2]["error_id"]
    assert sent == [
        {"type": "text_delta", "delta": "Ось молоко."},
        {"type": "text_end"},
        {"type": "error", "code": "internal_error", "error_id": error_id},
        {"type": "response_complete"},
    ]
    [record] = _failures(caplog)
    assert record.error_id == error_id
    assert record.code == "internal_error"
    assert record.conversation_id == conversation.public_id
    assert type(record.exc_info[1]).__name__ == "LeaseLost"
    # The reply was not saved, and the lease of the worker that took over stays.
    assert list(Message.objects.values_list("role", flat=True)) == ["user"]
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at is not None


@pytest.mark.django_db(transaction=True)
def test_database_lost_ends_stream_with_error(conversation, caplog):
    saved = {key: connection.settings_dict[key] for key in ("HOST", "PORT")}
    turn = ConversationTurn(
        conversation=conversation, text="молоко", assistant=DatabaseLosingAssistant()
    )
    turn.start()
    stream = EventStream(turn)

    try:
        with caplog.at_level(logging.WARNING):
            body = b"".join(stream)
            # The database is still unreachable when the server closes the response.
            stream.close()
    finally:
        connection.close()
        connection.settings_dict.update(saved)
    released = turn.close()

    assert sse_events(body.decode()) == [
        {"type": "text_delta", "delta": "Ось молоко."},
        {"type": "text_end"},
        {"type": "error", "code": "database_unavailable", "retry_after": 5},
        {"type": "response_complete"},
    ]
    [record] = _failures(caplog)
    assert record.code == "database_unavailable"
    assert record.error_type == "OperationalError"
    assert record.exc_info is None
    release_failures = [
        r.levelname
        for r in caplog.records
        if r.getMessage() == "conversations.turn.lease_release_failed"
    ]
    # Once as the turn ended and once as the response was closed, neither raised.
    assert release_failures == ["ERROR", "WARNING"]
    # The lease that the lost connection kept is released once the database is back.
    assert released is True
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at is None
    assert list(Message.objects.values_list("role", flat=True)) == ["user"]


@pytest.mark.django_db
def test_stream_after_failure_is_finished(conversation):
    turn = ConversationTurn(
        conversation=conversation, text="молоко", assistant=LeaseTakingAssistant()
    )
    turn.start()
    stream = EventStream(turn)
    chunks = list(stream)

    assert next(stream, None) is None
    assert chunks[0] == STREAM_OPENING
    assert chunks[-1].endswith(b'event: response_complete\ndata: {"type":"response_complete"}\n\n')
