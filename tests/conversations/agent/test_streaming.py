"""Server-Sent Events on the message endpoint, through the test client and a live server."""

import contextlib
import http.client
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from django import db
from django.db import OperationalError
from django.utils import timezone

from conversations.leases import turn_lease_acquire
from conversations.limits import conversation_limit_identity
from conversations.models import Conversation, Message, TokenUsage, UserDailyUsage
from conversations.services import ConversationTurn
from conversations.streaming import EventStream
from tests.conversations.agent.chat import MESSAGES_URL, send_stream, sse_events, types_of
from tests.conversations.agent.llm_server import call, reply, tool_calls
from tests.conversations.chat import cart_posts
from tests.conversations.shop_data import MILK_LACTEL, SESSION_ID, STORE_ID, show

SSE = "text/event-stream"


def post(client, conversation, text, **headers):
    return client.post(
        MESSAGES_URL.format(conversation.public_id), {"text": text}, format="json", **headers
    )


@pytest.mark.django_db
def test_stream_headers_and_format(chat_client, shop, conversation, llm):
    llm.add(
        tool_calls(call("search_products", {"query": "молоко"})), reply("Ось молоко зі знижкою.")
    )

    response, sent = send_stream(chat_client, conversation, "молоко")

    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert not response.has_header("Content-Encoding")
    assert not response.has_header("Content-Length")
    assert types_of(sent) == [
        "status",
        "text_delta",
        "text_end",
        "product_cards",
        "response_complete",
    ]
    deltas = [event["delta"] for event in sent if event["type"] == "text_delta"]
    assert deltas == ["Ось мо", "локо з", "і зниж", "кою."]
    assert Message.objects.get(role="assistant").events == sent


@pytest.mark.django_db
def test_stream_body_is_one_message_per_event(chat_client, shop, conversation, llm):
    llm.add(reply("Привіт!\nЧим допомогти?"))

    response = post(chat_client, conversation, "привіт", HTTP_ACCEPT=SSE)
    body = b"".join(response.streaming_content).decode()

    assert body == (
        ": stream opened\n\n"
        'event: text_delta\ndata: {"type":"text_delta","delta":"Привіт"}\n\n'
        'event: text_delta\ndata: {"type":"text_delta","delta":"!\\nЧим "}\n\n'
        'event: text_delta\ndata: {"type":"text_delta","delta":"допомо"}\n\n'
        'event: text_delta\ndata: {"type":"text_delta","delta":"гти?"}\n\n'
        'event: text_end\ndata: {"type":"text_end"}\n\n'
        'event: response_complete\ndata: {"type":"response_complete"}\n\n'
    )


@pytest.mark.django_db
def test_offline_assistant_streams_one_delta(chat_client, shop, conversation, settings):
    settings.OPENAI_BASE_URL = ""
    settings.OPENAI_API_KEY = ""

    _, sent = send_stream(chat_client, conversation, "молоко")

    assert types_of(sent) == [
        "status",
        "text_delta",
        "text_end",
        "product_cards",
        "response_complete",
    ]
    assert len([event for event in sent if event["type"] == "text_delta"]) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("_case", "accept"),
    [
        ("json", "application/json"),
        ("no header", None),
        ("stream refused", "text/event-stream;q=0, application/json"),
        # Parameter names are case-insensitive (RFC 9110, section 5.6.6).
        ("stream refused with Q", "text/event-stream; Q=0.0, application/json"),
    ],
)
def test_json_reply_unless_a_stream_is_accepted(
    chat_client, shop, conversation, llm, _case, accept
):
    llm.add(reply("Привіт!"))
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = post(chat_client, conversation, "привіт", **headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert types_of(response.json()["events"]) == ["text_delta", "text_end", "response_complete"]


@pytest.mark.django_db
def test_busy_conversation_gets_a_json_409(chat_client, shop, conversation, llm):
    turn_lease_acquire(conversation=conversation)

    response = post(chat_client, conversation, "привіт", HTTP_ACCEPT=SSE)

    assert response.status_code == 409
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "agent_busy"
    assert llm.requests == []
    assert Message.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("_case", "body", "status", "code"),
    [
        ("blank text", {"text": " "}, 400, "invalid_json"),
        ("too large", {"text": "я" * 40_000}, 413, "message_too_large"),
    ],
)
def test_invalid_message_gets_a_json_error(
    chat_client, conversation, llm, _case, body, status, code
):
    response = chat_client.post(
        MESSAGES_URL.format(conversation.public_id), body, format="json", HTTP_ACCEPT=SSE
    )

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_unread_stream_releases_the_lease(shop, conversation, llm):
    turn = ConversationTurn(conversation=conversation, text="привіт")
    turn.start()
    stream = EventStream(turn)
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at is not None

    stream.close()

    assert Conversation.objects.get(pk=conversation.pk).turn_started_at is None
    assert llm.requests == []
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_disconnect_still_counts_the_tokens(shop, conversation, llm, tenant):
    # Without usage in the stream, the estimate is 1 token per 4 characters.
    llm.add(reply("Привіт! Чим можу допомогти сьогодні?", usage=None, chunk_delay=0.05))
    turn = ConversationTurn(conversation=conversation, text="привіт")
    turn.start()
    stream = EventStream(turn)
    while b"event: text_delta" not in next(stream):
        pass

    stream.close()

    answer = Message.objects.get(role="assistant")
    assert answer.metadata["interrupted"] == "client_disconnected"
    assert answer.metadata["usage_estimated"] is True
    request = llm.requests[0].body
    prompt_chars = len(json.dumps(request["messages"], ensure_ascii=False))
    prompt_chars += len(json.dumps(request["tools"], ensure_ascii=False))
    assert answer.metadata["prompt_tokens"] == -(-prompt_chars // 4)
    # The role chunk and the first text chunk arrived: "Привіт".
    assert answer.metadata["completion_tokens"] == 2
    total = answer.metadata["prompt_tokens"] + answer.metadata["completion_tokens"]
    conversation.refresh_from_db()
    assert conversation.tokens_used == total
    usage = TokenUsage.objects.get(tenant=tenant)
    assert usage.prompt_tokens == answer.metadata["prompt_tokens"]
    assert usage.completion_tokens == 2
    assert usage.requests == 1


def daily_messages(conversation) -> int:
    usage = UserDailyUsage.objects.filter(
        tenant=conversation.tenant, identity=conversation_limit_identity(conversation)
    ).first()
    return usage.messages if usage else 0


@pytest.mark.django_db
def test_stream_closed_at_opening_counts_nothing(shop, conversation, llm):
    turn = ConversationTurn(conversation=conversation, text="привіт")
    turn.start()
    counted_after_start = daily_messages(conversation)
    stream = EventStream(turn)
    # A WSGI server reads the opening, fails to write it to a client that went away, and
    # closes the response.
    assert next(stream) == b": stream opened\n\n"

    stream.close()

    assert counted_after_start == 1
    assert daily_messages(conversation) == 0
    assert Message.objects.count() == 0
    assert llm.requests == []
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at is None


@pytest.mark.django_db
def test_stream_closed_after_first_event_counts(shop, conversation, llm):
    llm.add(reply("Привіт! Чим можу допомогти сьогодні?", chunk_delay=0.05))
    turn = ConversationTurn(conversation=conversation, text="привіт")
    turn.start()
    stream = EventStream(turn)
    while b"event: text_delta" not in next(stream):
        pass

    stream.close()

    assert daily_messages(conversation) == 1
    assert list(Message.objects.order_by("created_at").values_list("role", flat=True)) == [
        "user",
        "assistant",
    ]


@pytest.mark.django_db
def test_failure_before_saving_counts_nothing(chat_client, shop, conversation, llm, monkeypatch):
    def database_down(self, lease, *, first_message):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(ConversationTurn, "_build_turn", database_down)

    response = post(chat_client, conversation, "привіт")

    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert daily_messages(conversation) == 0
    assert Message.objects.count() == 0
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at is None


# Live server: real sockets, concurrent requests and a client that goes away.


def _connection(live_server) -> http.client.HTTPConnection:
    url = urlsplit(live_server.url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=30)


def _post_live(connection, conversation, raw_key, text, accept="application/json"):
    connection.request(
        "POST",
        MESSAGES_URL.format(conversation.public_id),
        body=json.dumps({"text": text}),
        headers={
            "Authorization": f"Bearer {raw_key}",
            "Content-Type": "application/json",
            "Accept": accept,
        },
    )
    return connection.getresponse()


def _wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.django_db(transaction=True)
def test_second_message_is_busy_while_a_stream_runs(
    live_server, public_key, shop, conversation, llm
):
    # The first reply holds the conversation for 3 s, long enough for the second request.
    llm.add(reply("Привіт! Чим можу допомогти?", delay=3.0))
    streamed = {}

    def stream_first_message():
        response = _post_live(
            _connection(live_server), conversation, public_key.raw_key, "привіт", SSE
        )
        streamed["status"] = response.status
        streamed["content_type"] = response.getheader("Content-Type")
        streamed["events"] = sse_events(response.read().decode())

    first = threading.Thread(target=stream_first_message)
    first.start()
    assert _wait_for(lambda: len(llm.requests) == 1)
    busy = _post_live(_connection(live_server), conversation, public_key.raw_key, "молоко")
    busy_body = json.loads(busy.read())
    first.join(timeout=30)

    assert busy.status == 409
    assert busy.getheader("Content-Type") == "application/json"
    assert busy_body["code"] == "agent_busy"
    assert streamed["status"] == 200
    assert streamed["content_type"] == "text/event-stream; charset=utf-8"
    assert types_of(streamed["events"]) == ["text_delta", "text_end", "response_complete"]
    assert list(Message.objects.order_by("created_at").values_list("role", "text")) == [
        ("user", "привіт"),
        ("assistant", "Привіт! Чим можу допомогти?"),
    ]


@pytest.mark.django_db(transaction=True)
def test_client_disconnect_stops_the_turn(live_server, public_key, shop, conversation, llm):
    show(conversation, MILK_LACTEL)
    llm.add(
        tool_calls(call("add_to_cart", {"sku": "milk-001"})),
        reply("Додав молоко Lactel у ваш кошик, він тепер готовий до оформлення.", chunk_delay=0.1),
    )
    connection = _connection(live_server)
    connection.connect()
    client_socket = connection.sock
    response = _post_live(connection, conversation, public_key.raw_key, "Додай Lactel", SSE)

    received = b""
    while b"event: text_delta" not in received:
        received += response.fp.readline()
    client_socket.shutdown(socket.SHUT_RDWR)
    client_socket.close()

    assert _wait_for(lambda: Message.objects.filter(role="assistant").exists())
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["interrupted"] == "client_disconnected"
    assert answer.events[-1]["type"] == "text_delta"
    assert [message["role"] for message in answer.llm_messages] == ["assistant", "tool"]
    assert _wait_for(lambda: Conversation.objects.get(pk=conversation.pk).turn_started_at is None)
    conversation.refresh_from_db()
    assert [item["sku"] for item in conversation.cart["items"]] == ["milk-001"]
    assert len(cart_posts(shop)) == 1
    assert shop.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 1


@pytest.mark.django_db(transaction=True)
def test_client_reset_at_opening_counts_nothing(
    live_server, public_key, shop, conversation, llm, monkeypatch
):
    llm.add(reply("Привіт! Чим можу допомогти?", delay=0.5))
    closed = threading.Event()
    close_turn = ConversationTurn.close

    def close_and_report(turn: ConversationTurn) -> None:
        close_turn(turn)
        closed.set()

    # The live server runs in a thread of this process, so it calls the patched method.
    monkeypatch.setattr(ConversationTurn, "close", close_and_report)
    connection = _connection(live_server)
    connection.connect()
    client_socket = connection.sock
    connection.request(
        "POST",
        MESSAGES_URL.format(conversation.public_id),
        body=json.dumps({"text": "привіт"}),
        headers={
            "Authorization": f"Bearer {public_key.raw_key}",
            "Content-Type": "application/json",
            "Accept": SSE,
        },
    )
    # Close with a TCP RST at once, so the server's first write fails.
    client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client_socket.close()

    assert closed.wait(timeout=15)
    stored = Message.objects.filter(role="user").count()
    assert stored == 0
    assert daily_messages(conversation) == 0
    assert llm.requests == []
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at is None


def _take_over_during_the_model_call(llm, conversation) -> None:
    """Wait for the model request, then take the lease as a worker after its expiry would."""
    assert _wait_for(lambda: len(llm.requests) == 1)
    try:
        Conversation.objects.filter(pk=conversation.pk).update(turn_started_at=timezone.now())
    finally:
        # Each thread has its own connection, which would keep the test database open.
        db.connection.close()


@contextlib.contextmanager
def _lease_taken_over_during_the_model_call(llm, conversation) -> Iterator[None]:
    """Take the lease in a thread while the model request of the block's turn runs."""
    taking_over = threading.Thread(
        target=_take_over_during_the_model_call, args=(llm, conversation)
    )
    taking_over.start()
    try:
        yield
    finally:
        taking_over.join(timeout=15)


@pytest.mark.django_db(transaction=True)
def test_lease_lost_json_reply_has_error_id(
    live_server, public_key, shop, conversation, llm, caplog
):
    llm.add(reply("Привіт!", delay=1.0))

    with (
        _lease_taken_over_during_the_model_call(llm, conversation),
        caplog.at_level(logging.ERROR),
    ):
        response = _post_live(_connection(live_server), conversation, public_key.raw_key, "привіт")
        body = json.loads(response.read())

    assert response.status == 500
    assert body == {
        "detail": "The conversation was taken over by another worker.",
        "code": "internal_error",
        "error_id": body["error_id"],
    }
    assert len(body["error_id"]) == 32
    [record] = [r for r in caplog.records if r.getMessage() == "api.internal_error"]
    assert record.error_id == body["error_id"]
    assert type(record.exc_info[1]).__name__ == "LeaseLost"


@pytest.mark.django_db(transaction=True)
def test_lease_lost_stream_ends_with_error(
    live_server, public_key, shop, conversation, llm, caplog
):
    llm.add(reply("Привіт!", delay=1.0))

    with (
        _lease_taken_over_during_the_model_call(llm, conversation),
        caplog.at_level(logging.ERROR),
    ):
        response = _post_live(
            _connection(live_server), conversation, public_key.raw_key, "привіт", SSE
        )
        sent = sse_events(response.read().decode())

    assert response.status == 200
    error_id = sent[-2]["error_id"]
    assert sent[-2:] == [
        {"type": "error", "code": "internal_error", "error_id": error_id},
        {"type": "response_complete"},
    ]
    [record] = [r for r in caplog.records if r.getMessage() == "conversations.stream.failed"]
    assert record.error_id == error_id
    assert list(Message.objects.values_list("role", flat=True)) == ["user"]
