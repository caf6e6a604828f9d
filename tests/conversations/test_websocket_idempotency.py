"""Idempotency keys of WebSocket ``message`` frames, over real sockets.

A frame's ``idempotency_key`` means what the REST API's ``Idempotency-Key`` header means,
so a key stored by either transport replays on the other.
"""

import time

import pytest

from conversations.leases import turn_lease_acquire
from conversations.models import Conversation, Message, UserDailyUsage
from tenants.models import AssistantSettings
from tests.conversations.chat import cart_posts
from tests.conversations.shop_data import MILK_LACTEL, SESSION_ID, STORE_ID, show
from tests.conversations.test_websocket import (
    DATABASE_DOWN_FRAME,
    BlockingAssistant,
    database_lost_at_search,
)
from tests.conversations.websocket_client import (
    assert_open,
    authenticate,
    open_socket,
    receive,
    reply_events,
    send_frame,
)
from tests.factories import ConversationFactory, MessageFactory

KEY_INVALID = "Must be 1 to 255 characters of printable ASCII, without a space at the start or end."

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "5f0c2b1e-9d8a-4c7b-8e6f-1a2b3c4d5e6f"
NOT_FOUND = {"type": "error", "code": "not_found", "detail": "Conversation not found."}
KEY_REUSED = {
    "type": "error",
    "detail": (
        "This idempotency key was sent with another message text in this conversation; "
        "send a new key with each new message."
    ),
    "code": "idempotency_key_reused",
}


def daily_counts() -> list[tuple[str, int]]:
    return list(UserDailyUsage.objects.values_list("identity", "messages"))


def message_frame(conversation: Conversation, text: str, key: str | None = KEY) -> dict:
    frame = {"type": "message", "text": text, "conversation_id": conversation.public_id}
    if key is not None:
        frame["idempotency_key"] = key
    return frame


def rest_message_post(client, conversation: Conversation, text: str):
    """Send ``text`` with ``KEY`` as ``Idempotency-Key`` through the REST API."""
    return client.post(
        f"/api/v1/conversations/{conversation.public_id}/messages",
        {"text": text},
        format="json",
        HTTP_IDEMPOTENCY_KEY=KEY,
    )


def send_once(url: str, token: str, frame: dict) -> list[dict]:
    """Send ``frame`` on a new socket and return its reply, as a reconnecting client does."""
    with open_socket(url) as ws:
        authenticate(ws, token)
        send_frame(ws, frame)
        return reply_events(ws)


def wait_lease_free(conversation: Conversation) -> None:
    deadline = time.monotonic() + 5
    while Conversation.objects.get(pk=conversation.pk).turn_started_at is not None:
        assert time.monotonic() < deadline, "the lease was not released"
        time.sleep(0.02)


@pytest.fixture
def shopper_conversation(tenant, catalog, merchant) -> Conversation:
    """A conversation whose offline assistant listed Lactel milk, so "додай перший" adds it."""
    conversation = ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)
    show(conversation, MILK_LACTEL)
    conversation.state["offline"] = {"listed": ["milk-001"], "listed_kind": "search", "focus": None}
    conversation.save()
    return conversation


def test_repeat_replays_stored_reply(ws_url, public_key, merchant, shopper_conversation):
    frame = message_frame(shopper_conversation, "додай перший")
    first = send_once(ws_url, public_key.raw_key, frame)
    requests_before = len(merchant.requests)
    counts_before = daily_counts()

    again = send_once(ws_url, public_key.raw_key, frame)

    assert again == first
    assert [event["type"] for event in first] == [
        "status",
        "text_delta",
        "text_end",
        "cart_changed",
        "response_complete",
    ]
    assert len(merchant.requests) == requests_before
    assert [body["quantity"] for body in cart_posts(merchant)] == [1]
    assert daily_counts() == counts_before
    roles = list(shopper_conversation.messages.values_list("role", flat=True))
    assert roles == ["user", "assistant"]
    assert Message.objects.get(role=Message.Role.USER).idempotency_key == KEY
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.turn_started_at is None


def test_repeat_on_same_socket_replays(ws_url, public_key, merchant, shopper_conversation):
    frame = message_frame(shopper_conversation, "додай перший")
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key)
        send_frame(ws, frame)
        first = reply_events(ws)
        send_frame(ws, frame)
        again = reply_events(ws)

    assert again == first
    assert [body["quantity"] for body in cart_posts(merchant)] == [1]
    assert shopper_conversation.messages.count() == 2


def test_replay_sends_current_cart(ws_url, public_key, merchant, shopper_conversation):
    first = send_once(
        ws_url, public_key.raw_key, message_frame(shopper_conversation, "додай перший")
    )
    send_once(
        ws_url,
        public_key.raw_key,
        message_frame(shopper_conversation, "додай перший", key="second-key"),
    )

    again = send_once(
        ws_url, public_key.raw_key, message_frame(shopper_conversation, "додай перший")
    )

    assert [event["type"] for event in again] == [event["type"] for event in first]
    first_change = next(event for event in first if event["type"] == "cart_changed")
    change = next(event for event in again if event["type"] == "cart_changed")
    assert first_change["total"] == 45.9
    assert change["total"] == 91.8
    assert [(item["sku"], item["quantity"]) for item in change["items"]] == [("milk-001", 2)]
    assert change["action"] == "item_selected"
    assert change["quantity"] == 1
    assert [body["quantity"] for body in cart_posts(merchant)] == [1, 1]


def test_replay_counts_no_conversation_limit(ws_url, tenant, public_key, shopper_conversation):
    AssistantSettings.objects.filter(tenant=tenant).update(
        rate_limit_messages=1, user_daily_message_limit=1
    )
    first = send_once(ws_url, public_key.raw_key, message_frame(shopper_conversation, "привіт"))
    counts_before = daily_counts()

    again = send_once(ws_url, public_key.raw_key, message_frame(shopper_conversation, "привіт"))
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key)
        send_frame(ws, message_frame(shopper_conversation, "привіт", key="another-key"))
        limited = receive(ws)

    assert again == first
    assert limited["code"] == "rate_limit_exceeded"
    assert daily_counts() == counts_before
    assert shopper_conversation.messages.count() == 2


def test_rest_key_replays_on_socket(ws_url, chat_client, public_key, shopper_conversation):
    response = rest_message_post(chat_client, shopper_conversation, "привіт")
    assert response.status_code == 200

    again = send_once(ws_url, public_key.raw_key, message_frame(shopper_conversation, "привіт"))

    assert again == response.json()["events"]
    assert shopper_conversation.messages.count() == 2


def test_socket_key_replays_on_rest(ws_url, chat_client, public_key, shopper_conversation):
    first = send_once(ws_url, public_key.raw_key, message_frame(shopper_conversation, "привіт"))

    response = rest_message_post(chat_client, shopper_conversation, "привіт")

    assert response.status_code == 200
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert response.json() == {
        "conversation_id": shopper_conversation.public_id,
        "message_id": reply.public_id,
        "events": first,
    }


def test_key_of_new_conversation_replays(ws_url, public_key, shopper_conversation):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        send_frame(ws, {"type": "message", "text": "привіт", "idempotency_key": KEY})
        started = receive(ws)
        first = reply_events(ws)
    conversation = Conversation.objects.get(public_id=started["conversation_id"])

    again = send_once(ws_url, public_key.raw_key, message_frame(conversation, "привіт"))

    assert started["type"] == "conversation_started"
    assert again == first
    assert conversation.messages.count() == 2
    assert shopper_conversation.messages.count() == 0


def test_repeat_compares_trimmed_text(ws_url, public_key, shopper_conversation):
    first = send_once(ws_url, public_key.raw_key, message_frame(shopper_conversation, "привіт"))

    again = send_once(ws_url, public_key.raw_key, message_frame(shopper_conversation, "  привіт\n"))

    assert again == first
    assert shopper_conversation.messages.count() == 2


# Rejected repeats


def test_key_with_other_text_is_rejected(ws_url, public_key, merchant, shopper_conversation):
    send_once(ws_url, public_key.raw_key, message_frame(shopper_conversation, "привіт"))
    requests_before = len(merchant.requests)
    counts_before = daily_counts()

    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key)
        send_frame(ws, message_frame(shopper_conversation, "додай перший"))
        rejection = receive(ws)
        # No response_complete follows, and the socket stays usable.
        assert_open(ws)

    assert rejection == KEY_REUSED
    assert list(shopper_conversation.messages.values_list("role", "text"))[0] == (
        "user",
        "привіт",
    )
    assert shopper_conversation.messages.count() == 2
    assert len(merchant.requests) == requests_before
    assert daily_counts() == counts_before
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.turn_started_at is None


def test_repeat_while_running_is_agent_busy(ws_url, public_key, shopper_conversation, monkeypatch):
    assistant = BlockingAssistant()
    monkeypatch.setattr("conversations.services.get_assistant", lambda tenant: assistant)
    frame = message_frame(shopper_conversation, "привіт")
    try:
        with open_socket(ws_url) as first_ws, open_socket(ws_url) as second_ws:
            authenticate(first_ws, public_key.raw_key)
            send_frame(first_ws, frame)
            assert receive(first_ws) == {"type": "text_delta", "delta": "Шукаю"}
            authenticate(second_ws, public_key.raw_key)
            send_frame(second_ws, frame)
            busy = receive(second_ws)
            assert_open(second_ws)
            assistant.release.set()
            first = [{"type": "text_delta", "delta": "Шукаю"}, *reply_events(first_ws)]
            send_frame(second_ws, frame)
            again = reply_events(second_ws)
    finally:
        assistant.release.set()

    assert busy["code"] == "agent_busy"
    assert again == first
    assert shopper_conversation.messages.count() == 2


def test_repeat_of_busy_conversation_stores_nothing(ws_url, public_key, shopper_conversation):
    lease = turn_lease_acquire(conversation=shopper_conversation)
    assert lease is not None
    MessageFactory(
        tenant=shopper_conversation.tenant,
        conversation=shopper_conversation,
        text="привіт",
        idempotency_key=KEY,
    )

    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key)
        send_frame(ws, message_frame(shopper_conversation, "привіт"))
        rejection = receive(ws)

    assert rejection["code"] == "agent_busy"
    assert shopper_conversation.messages.count() == 1
    assert daily_counts() == []
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.turn_started_at == lease.started_at


def test_reply_cut_by_disconnect_is_replayed(ws_url, public_key, shopper_conversation, monkeypatch):
    assistant = BlockingAssistant()
    monkeypatch.setattr("conversations.services.get_assistant", lambda tenant: assistant)
    frame = message_frame(shopper_conversation, "привіт")
    try:
        with open_socket(ws_url) as ws:
            authenticate(ws, public_key.raw_key)
            send_frame(ws, frame)
            assert receive(ws) == {"type": "text_delta", "delta": "Шукаю"}
        # Before the stopped reply is stored, its repeat is busy, and nothing is added.
        with open_socket(ws_url) as ws:
            authenticate(ws, public_key.raw_key)
            send_frame(ws, frame)
            assert receive(ws)["code"] == "agent_busy"
    finally:
        assistant.release.set()
    wait_lease_free(shopper_conversation)

    again = send_once(ws_url, public_key.raw_key, frame)

    assert again == [
        {"type": "text_delta", "delta": "Шукаю"},
        {"type": "text_end"},
        {"type": "response_complete"},
    ]
    reply = shopper_conversation.messages.get(role=Message.Role.ASSISTANT)
    assert reply.metadata["interrupted"] == "client_disconnected"
    assert shopper_conversation.messages.count() == 2


def test_retry_after_database_loss(ws_url, public_key, catalog, monkeypatch):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        with database_lost_at_search(monkeypatch):
            send_frame(ws, {"type": "message", "text": "молоко", "idempotency_key": KEY})
            started = receive(ws)
            frames = [receive(ws) for _ in range(3)]
        conversation = Conversation.objects.get(public_id=started["conversation_id"])
        send_frame(ws, message_frame(conversation, "молоко"))
        again = reply_events(ws)
        send_frame(ws, message_frame(conversation, "молоко"))
        third = reply_events(ws)

    # The shopper message was stored before the connection was lost, so its key now names
    # a message whose reply was lost, and the retry gets the interrupted reply.
    assert frames[1]["code"] == "internal_error"
    assert frames[2] == DATABASE_DOWN_FRAME
    assert again == [
        {"type": "error", "code": "internal_error", "reason": "interrupted"},
        {"type": "response_complete"},
    ]
    assert third == again
    roles = list(conversation.messages.values_list("role", flat=True))
    assert roles == ["user", "assistant"]
    conversation.refresh_from_db()
    assert conversation.turn_started_at is None


# Keys belong to one conversation of one tenant


def test_other_tenant_cannot_replay(ws_url, other_public_key, shopper_conversation):
    MessageFactory(
        tenant=shopper_conversation.tenant,
        conversation=shopper_conversation,
        text="привіт",
        idempotency_key=KEY,
    )
    MessageFactory(
        tenant=shopper_conversation.tenant,
        conversation=shopper_conversation,
        role=Message.Role.ASSISTANT,
        text="Вітаю!",
        events=[{"type": "text_delta", "delta": "Вітаю!"}, {"type": "response_complete"}],
    )

    with open_socket(ws_url) as ws:
        authenticate(ws, other_public_key.raw_key)
        send_frame(ws, message_frame(shopper_conversation, "привіт"))
        not_found = receive(ws)
        send_frame(ws, message_frame(shopper_conversation, "інший текст"))
        reused_elsewhere = receive(ws)

    assert not_found == NOT_FOUND
    assert reused_elsewhere == NOT_FOUND
    assert shopper_conversation.messages.count() == 2
    assert daily_counts() == []
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.turn_started_at is None


def test_other_tenant_key_means_nothing(
    ws_url, public_key, other_public_key, other_tenant, shopper_conversation
):
    theirs = ConversationFactory(tenant=other_tenant, store_id=STORE_ID)
    their_reply = send_once(ws_url, other_public_key.raw_key, message_frame(theirs, "привіт"))

    ours = send_once(ws_url, public_key.raw_key, message_frame(shopper_conversation, "кефір"))

    assert ours != their_reply
    assert shopper_conversation.messages.count() == 2
    assert theirs.messages.count() == 2
    assert Message.objects.filter(idempotency_key=KEY).count() == 2


def test_key_of_other_conversation_does_not_match(ws_url, tenant, public_key, shopper_conversation):
    other = ConversationFactory(tenant=tenant, store_id=STORE_ID)
    send_once(ws_url, public_key.raw_key, message_frame(other, "привіт"))

    send_once(ws_url, public_key.raw_key, message_frame(shopper_conversation, "кефір"))

    assert other.messages.count() == 2
    assert shopper_conversation.messages.count() == 2
    assert Message.objects.filter(idempotency_key=KEY).count() == 2


# Invalid keys


@pytest.mark.parametrize(
    ("_case", "key", "error"),
    [
        ("empty", "", KEY_INVALID),
        ("too long", "k" * 256, KEY_INVALID),
        ("non-ASCII", "ключ", KEY_INVALID),
        ("tab", "a\tb", KEY_INVALID),
        ("newline", "a\n", KEY_INVALID),
        ("control character", "a\x7fb", KEY_INVALID),
        ("leading space", " k", KEY_INVALID),
        ("trailing space", "k ", KEY_INVALID),
        ("only a space", " ", KEY_INVALID),
        ("number", 5, "Expected a string, got a number."),
        ("null", None, "This field may not be null."),
        ("object", {"key": KEY}, "Expected a string, got an object."),
    ],
)
def test_invalid_key_is_rejected(
    ws_url, public_key, merchant, shopper_conversation, _case, key, error
):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        send_frame(ws, {**message_frame(shopper_conversation, "привіт"), "idempotency_key": key})
        rejection = receive(ws)
        # Without a conversation_id the frame is rejected before a conversation starts.
        send_frame(ws, {"type": "message", "text": "привіт", "idempotency_key": key})
        new_conversation_rejection = receive(ws)
        assert_open(ws)

    expected = {
        "type": "error",
        "detail": "The message is invalid.",
        "code": "invalid_json",
        "fields": {"idempotency_key": [error]},
    }
    assert rejection == expected
    assert new_conversation_rejection == expected
    assert Message.objects.count() == 0
    assert Conversation.objects.count() == 1
    assert daily_counts() == []
    assert UserDailyUsage.objects.count() == 0
    assert merchant.requests == []
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.turn_started_at is None


@pytest.mark.parametrize("key", ["k" * 255, "a", '"quoted key"', "with space", "~ !"])
def test_valid_key_is_stored_as_sent(ws_url, public_key, shopper_conversation, key):
    send_once(ws_url, public_key.raw_key, message_frame(shopper_conversation, "привіт", key=key))

    assert Message.objects.get(role=Message.Role.USER).idempotency_key == key
