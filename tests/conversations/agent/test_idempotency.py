"""Idempotency keys with the LLM agent: a replay makes no LLM or webhook request."""

import http.client
import json
import threading
import time
from urllib.parse import urlsplit

import pytest
from django import db

from conversations.models import Conversation, Message, TokenUsage, UserDailyUsage
from tests.conversations.agent.chat import MESSAGES_URL
from tests.conversations.agent.llm_server import call, reply, tool_calls
from tests.conversations.chat import cart_posts
from tests.conversations.shop_data import MILK_LACTEL, SESSION_ID, STORE_ID, show

KEY = "0b9e7d2c-4f1a-4e8b-9c3d-5a6b7c8d9e0f"


def post(client, conversation, text, key=KEY, **headers):
    return client.post(
        MESSAGES_URL.format(conversation.public_id),
        {"text": text},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
        **headers,
    )


def live_request(live_server, conversation, raw_key, text) -> http.client.HTTPConnection:
    """Send a message with ``KEY`` to the live server; return the connection to read from."""
    url = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.request(
        "POST",
        MESSAGES_URL.format(conversation.public_id),
        body=json.dumps({"text": text}),
        headers={
            "Authorization": f"Bearer {raw_key}",
            "Content-Type": "application/json",
            "Idempotency-Key": KEY,
        },
    )
    return connection


def wait_for(condition, timeout=15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.django_db
def test_replay_sends_no_llm_request(chat_client, shop, conversation, llm):
    show(conversation, MILK_LACTEL)
    llm.add(tool_calls(call("add_to_cart", {"sku": "milk-001"})), reply("Додав молоко Lactel."))
    first = post(chat_client, conversation, "Додай Lactel")
    assert first.status_code == 200
    usage_before = list(TokenUsage.objects.values_list("prompt_tokens", "completion_tokens"))
    daily_before = list(UserDailyUsage.objects.values_list("messages", flat=True))
    conversation.refresh_from_db()
    tokens_before = conversation.tokens_used

    again = post(chat_client, conversation, "Додай Lactel")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(llm.requests) == 2
    assert len(cart_posts(shop)) == 1
    assert shop.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 1
    assert list(TokenUsage.objects.values_list("prompt_tokens", "completion_tokens")) == (
        usage_before
    )
    assert list(UserDailyUsage.objects.values_list("messages", flat=True)) == daily_before
    conversation.refresh_from_db()
    assert conversation.tokens_used == tokens_before
    assert conversation.messages.count() == 2


@pytest.mark.django_db
def test_stream_replay_sends_no_llm_request(chat_client, shop, conversation, llm):
    llm.add(reply("Привіт! Чим можу допомогти?"))
    first = post(chat_client, conversation, "привіт", HTTP_ACCEPT="text/event-stream")
    first_body = b"".join(first.streaming_content)

    again = post(chat_client, conversation, "привіт", HTTP_ACCEPT="text/event-stream")

    assert again.status_code == 200
    assert b"".join(again.streaming_content) == first_body
    assert len(llm.requests) == 1
    assert conversation.messages.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_same_key_gets_one_reply(live_server, public_key, shop, conversation, llm):
    # The reply keeps the conversation's lease for 2 s, so the two requests overlap.
    llm.add(reply("Привіт! Чим можу допомогти?", delay=2.0))
    barrier = threading.Barrier(2)
    results: list[tuple[int, dict]] = []

    def send() -> None:
        try:
            barrier.wait()
            response = live_request(
                live_server, conversation, public_key.raw_key, "привіт"
            ).getresponse()
            results.append((response.status, json.loads(response.read())))
        finally:
            db.connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 409]
    busy = next(body for status, body in results if status == 409)
    assert busy["code"] == "agent_busy"
    assert len(llm.requests) == 1
    assert list(Message.objects.order_by("created_at").values_list("role", "idempotency_key")) == [
        ("user", KEY),
        ("assistant", ""),
    ]


@pytest.mark.django_db(transaction=True)
def test_lost_response_is_replayed(live_server, public_key, shop, conversation, llm):
    show(conversation, MILK_LACTEL)
    llm.add(
        tool_calls(call("add_to_cart", {"sku": "milk-001"})),
        reply("Додав молоко Lactel.", delay=0.5),
    )
    # The client sends the message and goes away without reading the response.
    live_request(live_server, conversation, public_key.raw_key, "Додай Lactel").close()
    assert wait_for(lambda: Message.objects.filter(role="assistant").exists())
    assert wait_for(lambda: Conversation.objects.get(pk=conversation.pk).turn_started_at is None)

    response = live_request(live_server, conversation, public_key.raw_key, "Додай Lactel")
    retried = response.getresponse()
    body = json.loads(retried.read())

    assert retried.status == 200
    answer = Message.objects.get(role="assistant")
    assert body == {
        "conversation_id": conversation.public_id,
        "message_id": answer.public_id,
        "events": answer.events,
    }
    assert len(llm.requests) == 2
    assert len(cart_posts(shop)) == 1
    assert shop.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 1


@pytest.mark.django_db(transaction=True)
def test_header_sent_twice_is_one_key(live_server, public_key, conversation, llm):
    llm.add(reply("Привіт! Чим можу допомогти?"))
    url = urlsplit(live_server.url)
    body = json.dumps({"text": "привіт"}).encode()
    statuses = []
    for _ in range(2):
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        connection.putrequest("POST", MESSAGES_URL.format(conversation.public_id))
        connection.putheader("Authorization", f"Bearer {public_key.raw_key}")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.putheader("Idempotency-Key", "k1")
        connection.putheader("Idempotency-Key", "k2")
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        connection.close()

    assert statuses == [200, 200]
    assert len(llm.requests) == 1
    assert list(Message.objects.order_by("created_at").values_list("role", "idempotency_key")) == [
        ("user", "k1,k2"),
        ("assistant", ""),
    ]
