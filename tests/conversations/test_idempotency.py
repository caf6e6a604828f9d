"""Idempotency keys of shopper messages: replays, reused keys, isolation and invalid headers."""

import unicodedata
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.leases import lease_duration, turn_lease_acquire
from conversations.models import Conversation, Message, UserDailyUsage
from tests.conversations.agent.chat import sse_events
from tests.conversations.chat import cart_posts
from tests.conversations.shop_data import MILK_LACTEL, SESSION_ID, STORE_ID, show
from tests.factories import ConversationFactory, MessageFactory

KEY_INVALID = "Must be 1 to 255 characters of printable ASCII, without a space at the start or end."

pytestmark = pytest.mark.django_db

KEY = "5f0c2b1e-9d8a-4c7b-8e6f-1a2b3c4d5e6f"


def messages_url(conversation: Conversation) -> str:
    return f"/api/v1/conversations/{conversation.public_id}/messages"


def post(client, conversation: Conversation, text: str, key: str | None = KEY, **headers):
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(messages_url(conversation), {"text": text}, format="json", **headers)


def stream_body(response) -> str:
    return b"".join(response.streaming_content).decode()


def daily_counts() -> list[tuple[str, int]]:
    return list(UserDailyUsage.objects.values_list("identity", "messages"))


@pytest.fixture
def shopper_conversation(tenant) -> Conversation:
    """A conversation whose offline assistant listed Lactel milk, so "додай перший" adds it."""
    conversation = ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)
    show(conversation, MILK_LACTEL)
    conversation.state["offline"] = {"listed": ["milk-001"], "listed_kind": "search", "focus": None}
    conversation.save()
    return conversation


def test_replay_returns_the_stored_reply(chat_client, merchant, shopper_conversation):
    first = post(chat_client, shopper_conversation, "додай перший")
    assert first.status_code == 200
    requests_before = len(merchant.requests)
    counts_before = daily_counts()

    again = post(chat_client, shopper_conversation, "додай перший")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(merchant.requests) == requests_before
    assert [body["quantity"] for body in cart_posts(merchant)] == [1]
    assert daily_counts() == counts_before
    roles = list(shopper_conversation.messages.values_list("role", flat=True))
    assert roles == ["user", "assistant"]
    stored = Message.objects.get(role=Message.Role.USER)
    assert stored.idempotency_key == KEY
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.turn_started_at is None


def test_replay_sends_the_current_cart(chat_client, merchant, shopper_conversation):
    first = post(chat_client, shopper_conversation, "додай перший")
    post(chat_client, shopper_conversation, "додай перший", key="second-key")
    stored = Message.objects.get(public_id=first.json()["message_id"]).events

    again = post(chat_client, shopper_conversation, "додай перший")

    assert again.status_code == 200
    assert again.json()["message_id"] == first.json()["message_id"]
    replayed = again.json()["events"]
    first_events = first.json()["events"]
    assert [event["type"] for event in replayed] == [event["type"] for event in first_events]
    change = next(event for event in replayed if event["type"] == "cart_changed")
    first_change = next(event for event in first_events if event["type"] == "cart_changed")
    assert first_change["total"] == 45.9
    assert [item["quantity"] for item in first_change["items"]] == [1]
    assert change["total"] == 91.8
    assert [(item["sku"], item["quantity"]) for item in change["items"]] == [("milk-001", 2)]
    assert change["action"] == "item_selected"
    assert change["quantity"] == 1
    shopper_conversation.refresh_from_db()
    assert change["items"] == shopper_conversation.cart["items"]
    assert Message.objects.get(public_id=first.json()["message_id"]).events == stored
    assert [body["quantity"] for body in cart_posts(merchant)] == [1, 1]


def test_stream_replay_sends_the_current_cart(chat_client, merchant, shopper_conversation):
    first = post(chat_client, shopper_conversation, "додай перший")
    post(chat_client, shopper_conversation, "додай перший", key="second-key")

    response = post(
        chat_client, shopper_conversation, "додай перший", HTTP_ACCEPT="text/event-stream"
    )

    replayed = sse_events(stream_body(response))
    assert [event["type"] for event in replayed] == [
        event["type"] for event in first.json()["events"]
    ]
    change = next(event for event in replayed if event["type"] == "cart_changed")
    assert change["total"] == 91.8
    assert replayed[-1] == {"type": "response_complete"}


def test_replay_is_not_rate_limited(chat_client, tenant, shopper_conversation):
    tenant.assistant_settings.rate_limit_messages = 1
    tenant.assistant_settings.save()
    first = post(chat_client, shopper_conversation, "привіт")

    again = post(chat_client, shopper_conversation, "привіт")
    limited = post(chat_client, shopper_conversation, "привіт", key="another-key")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limit_exceeded"


def test_replay_compares_the_stored_text(chat_client, shopper_conversation):
    first = post(chat_client, shopper_conversation, "привіт")

    again = post(chat_client, shopper_conversation, "  привіт\n")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert shopper_conversation.messages.count() == 2


@pytest.mark.parametrize(
    ("_case", "first_text", "again_text"),
    [
        ("decomposed", "йогурт", unicodedata.normalize("NFD", "йогурт")),
        ("inner whitespace", "білий хліб", "білий  хліб"),
        ("no-break space", "білий хліб", "білий\u00a0хліб"),
    ],
)
def test_replay_text_is_compared_exactly(
    chat_client, shopper_conversation, _case, first_text, again_text
):
    assert again_text != first_text
    post(chat_client, shopper_conversation, first_text)
    counts_before = daily_counts()

    response = post(chat_client, shopper_conversation, again_text)

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert shopper_conversation.messages.count() == 2
    assert daily_counts() == counts_before


def test_message_without_key_is_processed_again(chat_client, shopper_conversation):
    post(chat_client, shopper_conversation, "привіт", key=None)
    post(chat_client, shopper_conversation, "привіт", key=None)

    assert shopper_conversation.messages.count() == 4
    keys = set(Message.objects.values_list("idempotency_key", flat=True))
    assert keys == {""}


def test_new_key_gets_a_new_reply(chat_client, shopper_conversation):
    first = post(chat_client, shopper_conversation, "привіт")

    second = post(chat_client, shopper_conversation, "привіт", key="second-key")

    assert second.status_code == 200
    assert second.json()["message_id"] != first.json()["message_id"]
    assert shopper_conversation.messages.count() == 4


def test_reused_key_with_other_text_is_rejected(chat_client, merchant, shopper_conversation):
    post(chat_client, shopper_conversation, "привіт")
    requests_before = len(merchant.requests)
    counts_before = daily_counts()

    response = post(chat_client, shopper_conversation, "додай перший")

    assert response.status_code == 422
    assert response.json() == {
        "detail": (
            "This idempotency key was sent with another message text in this conversation; "
            "send a new key with each new message."
        ),
        "code": "idempotency_key_reused",
    }
    roles = list(shopper_conversation.messages.values_list("role", "text"))
    assert len(roles) == 2
    assert roles[0] == ("user", "привіт")
    assert roles[1][0] == "assistant"
    assert len(merchant.requests) == requests_before
    assert daily_counts() == counts_before
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.turn_started_at is None


def test_key_of_running_turn_is_agent_busy(chat_client, tenant, shopper_conversation):
    lease = turn_lease_acquire(conversation=shopper_conversation)
    MessageFactory(
        tenant=tenant, conversation=shopper_conversation, text="привіт", idempotency_key=KEY
    )

    response = post(chat_client, shopper_conversation, "привіт")

    assert response.status_code == 409
    assert response.json()["code"] == "agent_busy"
    assert shopper_conversation.messages.count() == 1
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.turn_started_at == lease.started_at


def test_key_of_abandoned_turn_replays_interrupted(chat_client, tenant, shopper_conversation):
    stale = timezone.now() - lease_duration() - timedelta(seconds=1)
    Conversation.objects.filter(pk=shopper_conversation.pk).update(turn_started_at=stale)
    MessageFactory(
        tenant=tenant, conversation=shopper_conversation, text="привіт", idempotency_key=KEY
    )
    counts_before = daily_counts()

    response = post(chat_client, shopper_conversation, "привіт")

    assert response.status_code == 200
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert response.json() == {
        "conversation_id": shopper_conversation.public_id,
        "message_id": reply.public_id,
        "events": [
            {"type": "error", "code": "internal_error", "reason": "interrupted"},
            {"type": "response_complete"},
        ],
    }
    assert shopper_conversation.messages.count() == 2
    assert daily_counts() == counts_before
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.turn_started_at is None


def test_replay_of_disconnected_reply_completes(chat_client, tenant, shopper_conversation):
    MessageFactory(
        tenant=tenant, conversation=shopper_conversation, text="привіт", idempotency_key=KEY
    )
    partial = [{"type": "status", "code": "searching"}, {"type": "text_delta", "delta": "Ось"}]
    reply = MessageFactory(
        tenant=tenant,
        conversation=shopper_conversation,
        role=Message.Role.ASSISTANT,
        text="Ось",
        events=partial,
        metadata={"assistant": "offline", "interrupted": "client_disconnected"},
    )

    response = post(chat_client, shopper_conversation, "привіт")

    assert response.status_code == 200
    assert response.json()["message_id"] == reply.public_id
    assert response.json()["events"] == [*partial, {"type": "response_complete"}]
    reply.refresh_from_db()
    assert reply.events == partial


def test_stream_replays_the_stored_events(chat_client, merchant, shopper_conversation):
    first = post(chat_client, shopper_conversation, "додай перший")
    requests_before = len(merchant.requests)

    response = post(
        chat_client, shopper_conversation, "додай перший", HTTP_ACCEPT="text/event-stream"
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert sse_events(stream_body(response)) == first.json()["events"]
    assert len(merchant.requests) == requests_before
    assert shopper_conversation.messages.count() == 2


def test_streamed_message_is_replayed_as_json(chat_client, shopper_conversation):
    streamed = post(chat_client, shopper_conversation, "привіт", HTTP_ACCEPT="text/event-stream")
    streamed_events = sse_events(stream_body(streamed))

    response = post(chat_client, shopper_conversation, "привіт")

    assert response.status_code == 200
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert response.json() == {
        "conversation_id": shopper_conversation.public_id,
        "message_id": reply.public_id,
        "events": streamed_events,
    }


# Keys belong to one conversation


def test_key_of_other_conversation_does_not_match(chat_client, tenant, shopper_conversation):
    other = ConversationFactory(tenant=tenant)
    post(chat_client, other, "привіт")

    response = post(chat_client, shopper_conversation, "що в кошику?")

    assert response.status_code == 200
    assert shopper_conversation.messages.count() == 2
    assert other.messages.count() == 2
    assert Message.objects.filter(idempotency_key=KEY).count() == 2


def test_key_of_other_tenant_does_not_match(
    chat_client, other_chat_client, other_tenant, shopper_conversation
):
    other = ConversationFactory(tenant=other_tenant)
    other_reply = post(other_chat_client, other, "привіт")

    response = post(chat_client, shopper_conversation, "привіт")

    assert response.status_code == 200
    assert response.json()["message_id"] != other_reply.json()["message_id"]
    assert shopper_conversation.messages.count() == 2


def test_other_tenant_cannot_replay_with_a_key(other_chat_client, shopper_conversation):
    post_response = other_chat_client.post(
        messages_url(shopper_conversation),
        {"text": "привіт"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=KEY,
    )

    assert post_response.status_code == 404
    assert post_response.json()["code"] == "not_found"
    assert shopper_conversation.messages.count() == 0


def test_key_is_unique_per_conversation(tenant, shopper_conversation):
    MessageFactory(tenant=tenant, conversation=shopper_conversation, idempotency_key=KEY)
    MessageFactory(tenant=tenant, conversation=shopper_conversation)
    MessageFactory(tenant=tenant, conversation=shopper_conversation)

    with pytest.raises(IntegrityError), transaction.atomic():
        MessageFactory(tenant=tenant, conversation=shopper_conversation, idempotency_key=KEY)

    assert shopper_conversation.messages.count() == 3


# Invalid headers


@pytest.mark.parametrize(
    ("_case", "key"),
    [
        ("empty", ""),
        ("too long", "k" * 256),
        ("non-ASCII", "ключ"),
        ("tab", "a\tb"),
        ("control character", "a\x7fb"),
        ("leading space", " k"),
        ("trailing space", "k "),
        ("only a space", " "),
    ],
)
def test_invalid_key_is_rejected(chat_client, shopper_conversation, _case, key):
    response = post(chat_client, shopper_conversation, "привіт", key=key)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The Idempotency-Key header is invalid.",
        "code": "invalid_json",
        "fields": {"Idempotency-Key": [KEY_INVALID]},
    }
    assert Message.objects.count() == 0
    assert daily_counts() == []
    shopper_conversation.refresh_from_db()
    assert shopper_conversation.turn_started_at is None


@pytest.mark.parametrize("key", ["k" * 255, "a", '"quoted key"', "with space"])
def test_valid_key_is_stored_as_sent(chat_client, shopper_conversation, key):
    response = post(chat_client, shopper_conversation, "привіт", key=key)

    assert response.status_code == 200
    assert Message.objects.get(role=Message.Role.USER).idempotency_key == key
