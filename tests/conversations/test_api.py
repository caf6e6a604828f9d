"""The chat REST API: authentication, validation, tenant isolation and the turn lease."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from conversations.leases import lease_duration, turn_lease_acquire
from conversations.models import Conversation, Message, UserDailyUsage
from conversations.services import MAX_MESSAGE_BYTES
from tenants.models import ApiKey
from tenants.services import api_key_revoke
from tests.conversations.shop_data import STORE_ID
from tests.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db

CREATE_URL = "/api/v1/conversations"


def detail_url(conversation: Conversation) -> str:
    return f"/api/v1/conversations/{conversation.public_id}"


def messages_url(conversation: Conversation) -> str:
    return f"/api/v1/conversations/{conversation.public_id}/messages"


def invalid_body(fields: dict) -> dict:
    return {"detail": "The request body is invalid.", "code": "invalid_json", "fields": fields}


# Creating conversations


def test_create_returns_the_new_conversation(server_client, tenant):
    response = server_client.post(
        CREATE_URL, {"store_id": "store-1", "user_id": "user-123"}, format="json"
    )

    assert response.status_code == 201
    conversation = Conversation.objects.get()
    assert response.json() == {
        "conversation_id": conversation.public_id,
        "store_id": "store-1",
        "session_id": "user-123",
        "created_at": conversation.created_at.isoformat().replace("+00:00", "Z"),
        "assistant": "offline",
    }
    assert conversation.public_id.startswith("conv_")
    assert conversation.tenant == tenant
    assert conversation.user_id == "user-123"


def test_create_without_user_id_generates_a_session_id(chat_client):
    response = chat_client.post(CREATE_URL, {"store_id": "store-1"}, format="json")

    assert response.status_code == 201
    conversation = Conversation.objects.get()
    assert response.json()["session_id"] == conversation.session_id
    assert conversation.session_id.startswith("anon_")
    assert conversation.user_id == ""


def test_create_names_agent_when_llm_set(chat_client, settings):
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"

    response = chat_client.post(CREATE_URL, {"store_id": "store-1"}, format="json")

    assert response.status_code == 201
    assert response.json()["assistant"] == "agent"


def test_detail_names_agent_when_llm_set(chat_client, tenant, settings):
    conversation = ConversationFactory(tenant=tenant)
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"

    response = chat_client.get(detail_url(conversation))

    assert response.status_code == 200
    assert response.json()["assistant"] == "agent"


def test_create_with_the_secret_key(server_client):
    response = server_client.post(CREATE_URL, {"store_id": "store-1"}, format="json")

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("_case", "body", "fields"),
    [
        ("missing store", {}, {"store_id": ["This field is required."]}),
        ("blank store", {"store_id": " "}, {"store_id": ["This field may not be blank."]}),
        (
            "long store",
            {"store_id": "s" * 101},
            {"store_id": ["Ensure this field has no more than 100 characters."]},
        ),
        (
            "long user",
            {"store_id": "store-1", "user_id": "u" * 201},
            {"user_id": ["Ensure this field has no more than 200 characters."]},
        ),
        (
            "blank user",
            {"store_id": "store-1", "user_id": ""},
            {"user_id": ["This field may not be blank."]},
        ),
    ],
)
def test_create_rejects_invalid_bodies(chat_client, _case, body, fields):
    response = chat_client.post(CREATE_URL, body, format="json")

    assert response.status_code == 400
    assert response.json() == invalid_body(fields)
    assert Conversation.objects.count() == 0


def test_create_rejects_malformed_json(chat_client):
    response = chat_client.post(CREATE_URL, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert response.json()["detail"].startswith("JSON parse error")
    assert Conversation.objects.count() == 0


# Authentication


def test_requests_without_a_key_are_rejected(tenant):
    conversation = ConversationFactory(tenant=tenant)
    client = APIClient()

    responses = [
        client.post(CREATE_URL, {"store_id": "store-1"}, format="json"),
        client.get(detail_url(conversation)),
        client.post(messages_url(conversation), {"text": "привіт"}, format="json"),
    ]

    for response in responses:
        assert response.status_code == 401
        assert response.json() == {
            "detail": "Authentication credentials were not provided.",
            "code": "not_authenticated",
        }
        assert response["WWW-Authenticate"] == "Bearer"
    assert Conversation.objects.count() == 1
    assert Message.objects.count() == 0


@pytest.mark.parametrize("header", ["Bearer pk_live_unknown", "Bearer sk_live_unknown"])
def test_unknown_keys_are_rejected(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.post(CREATE_URL, {"store_id": "store-1"}, format="json")

    assert response.status_code == 401
    assert response.json() == {
        "detail": "Invalid or revoked API key.",
        "code": "authentication_failed",
    }
    assert Conversation.objects.count() == 0


def test_revoked_key_is_rejected(chat_client, tenant, public_key):
    api_key_revoke(tenant=tenant, api_key_id=public_key.api_key.pk)

    response = chat_client.post(CREATE_URL, {"store_id": "store-1"}, format="json")

    assert response.status_code == 401
    assert response.json() == {
        "detail": "Invalid or revoked API key.",
        "code": "authentication_failed",
    }
    assert Conversation.objects.count() == 0


def test_key_without_chat_scope_is_forbidden(chat_client, public_key):
    ApiKey.objects.filter(pk=public_key.api_key.pk).update(scopes=["catalog"])

    response = chat_client.post(CREATE_URL, {"store_id": "store-1"}, format="json")

    assert response.status_code == 403
    assert response.json() == {
        "detail": "This API key lacks the 'chat' scope.",
        "code": "permission_denied",
    }
    assert Conversation.objects.count() == 0


# Reading a conversation


def test_detail_returns_cart_and_messages_in_order(chat_client, tenant):
    conversation = ConversationFactory(
        tenant=tenant,
        store_id="store-1",
        session_id="user-123",
        user_id="user-123",
        cart={"items": [], "total": 0.0},
    )
    question = MessageFactory(conversation=conversation, text="що в кошику?")
    answer = MessageFactory(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        text="Ваш кошик порожній.",
        events=[{"type": "text_delta", "delta": "Ваш кошик порожній."}],
        metadata={"assistant": "offline", "intent": "show_cart"},
    )

    response = chat_client.get(detail_url(conversation))

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "conversation_id": conversation.public_id,
        "store_id": "store-1",
        "session_id": "user-123",
        "user_id": "user-123",
        "cart": {"items": [], "total": 0.0},
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
        "assistant": "offline",
        "messages": [
            {
                "message_id": question.public_id,
                "role": "user",
                "text": "що в кошику?",
                "events": [],
                "metadata": {},
                "created_at": body["messages"][0]["created_at"],
            },
            {
                "message_id": answer.public_id,
                "role": "assistant",
                "text": "Ваш кошик порожній.",
                "events": [{"type": "text_delta", "delta": "Ваш кошик порожній."}],
                "metadata": {"assistant": "offline", "intent": "show_cart"},
                "created_at": body["messages"][1]["created_at"],
            },
        ],
        "has_more_messages": False,
    }


def test_unknown_conversation_is_not_found(chat_client):
    response = chat_client.get("/api/v1/conversations/conv_unknown")

    assert response.status_code == 404
    assert response.json() == {"detail": "Conversation not found.", "code": "not_found"}


# Tenant isolation


def test_other_tenant_cannot_read_a_conversation(other_chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)

    response = other_chat_client.get(detail_url(conversation))

    assert response.status_code == 404
    assert response.json() == {"detail": "Conversation not found.", "code": "not_found"}


def test_other_tenant_cannot_post_to_a_conversation(other_chat_client, other_server_client, tenant):
    conversation = ConversationFactory(tenant=tenant)
    state_before = dict(conversation.state)

    for client in (other_chat_client, other_server_client):
        response = client.post(messages_url(conversation), {"text": "очисти кошик"}, format="json")

        assert response.status_code == 404
        assert response.json() == {"detail": "Conversation not found.", "code": "not_found"}
    conversation.refresh_from_db()
    assert Message.objects.count() == 0
    assert conversation.state == state_before
    assert conversation.turn_started_at is None


def test_other_tenant_cannot_stream_to_a_conversation(other_chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)
    row_before = Conversation.objects.filter(pk=conversation.pk).values().get()

    response = other_chat_client.post(
        messages_url(conversation),
        {"text": "очисти кошик"},
        format="json",
        HTTP_ACCEPT="text/event-stream",
    )

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Conversation not found.", "code": "not_found"}
    assert Conversation.objects.filter(pk=conversation.pk).values().get() == row_before
    assert Message.objects.count() == 0
    assert UserDailyUsage.objects.count() == 0


@pytest.mark.parametrize(
    ("_case", "body", "busy"),
    [
        ("a turn holds the lease", {"text": "молоко"}, True),
        ("invalid body", {"message": "молоко"}, False),
        ("text over the limit", {"text": "я" * MAX_MESSAGE_BYTES}, False),
    ],
)
def test_other_tenants_conversation_gets_only_not_found(
    other_chat_client, tenant, _case, body, busy
):
    conversation = ConversationFactory(tenant=tenant)
    if busy:
        turn_lease_acquire(conversation=conversation)
    row_before = Conversation.objects.filter(pk=conversation.pk).values().get()

    foreign = other_chat_client.post(messages_url(conversation), body, format="json")
    unknown = other_chat_client.post(
        "/api/v1/conversations/conv_unknown/messages", body, format="json"
    )

    assert foreign.status_code == 404
    assert foreign.json() == {"detail": "Conversation not found.", "code": "not_found"}
    assert unknown.status_code == 404
    assert unknown.json() == foreign.json()
    assert Conversation.objects.filter(pk=conversation.pk).values().get() == row_before
    assert Message.objects.count() == 0


def test_detail_before_of_other_tenant_is_invalid(chat_client, tenant, other_tenant):
    conversation, _ = conversation_with_messages(tenant, 2)
    _, theirs = conversation_with_messages(other_tenant, 1)

    foreign = chat_client.get(detail_url(conversation), {"before": theirs[0].public_id})
    unknown = chat_client.get(detail_url(conversation), {"before": "msg_unknown"})

    assert foreign.status_code == 400
    assert foreign.json() == {
        "detail": "Invalid message id.",
        "code": "invalid_json",
        "fields": {"before": ["No message with this id in this conversation."]},
    }
    assert unknown.status_code == 400
    assert unknown.json() == foreign.json()


def test_conversations_are_created_for_the_key_tenant(other_chat_client, other_tenant):
    response = other_chat_client.post(CREATE_URL, {"store_id": "store-1"}, format="json")

    assert response.status_code == 201
    assert Conversation.objects.get().tenant == other_tenant


# Sending messages


def test_message_returns_the_events_of_the_reply(chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)

    response = chat_client.post(messages_url(conversation), {"text": "привіт"}, format="json")

    assert response.status_code == 200
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    help_text = (
        "Я допоможу знайти товари і зібрати кошик. Напишіть, наприклад: «молоко», "
        "«додай другий», «зміни кількість першого на 2», «прибери молоко», «що в кошику?» "
        "або «очисти кошик»."
    )
    assert response.json() == {
        "conversation_id": conversation.public_id,
        "message_id": reply.public_id,
        "events": [
            {"type": "text_delta", "delta": help_text},
            {"type": "text_end"},
            {"type": "response_complete"},
        ],
    }
    assert reply.text == help_text
    assert reply.events == response.json()["events"]
    assert reply.metadata == {"assistant": "offline", "intent": "help"}
    question = Message.objects.get(role=Message.Role.USER)
    assert question.text == "привіт"
    assert question.metadata == {"language": "uk"}
    conversation.refresh_from_db()
    assert conversation.turn_started_at is None
    assert conversation.state["language"] == "uk"


def test_message_is_answered_in_the_shopper_language(chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)

    response = chat_client.post(messages_url(conversation), {"text": "show my cart"}, format="json")

    assert response.status_code == 200
    assert response.json()["events"][0] == {"type": "text_delta", "delta": "Your cart is empty."}


@pytest.mark.parametrize(
    ("_case", "body", "fields"),
    [
        ("missing text", {}, {"text": ["This field is required."]}),
        ("empty text", {"text": ""}, {"text": ["This field may not be blank."]}),
        ("blank text", {"text": "  \n "}, {"text": ["This field may not be blank."]}),
        ("null text", {"text": None}, {"text": ["This field may not be null."]}),
    ],
)
def test_message_rejects_invalid_bodies(chat_client, tenant, _case, body, fields):
    conversation = ConversationFactory(tenant=tenant)

    response = chat_client.post(messages_url(conversation), body, format="json")

    assert response.status_code == 400
    assert response.json() == invalid_body(fields)
    assert Message.objects.count() == 0


def test_message_over_64_kb_is_too_large(chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)

    # 32,769 two-byte letters are 65,538 bytes of UTF-8.
    response = chat_client.post(messages_url(conversation), {"text": "ї" * 32_769}, format="json")

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The message is larger than 65536 bytes; send a shorter text.",
        "code": "message_too_large",
        "max_size": 65536,
    }
    assert Message.objects.count() == 0
    conversation.refresh_from_db()
    assert conversation.turn_started_at is None


def test_message_body_over_upload_limit_is_too_large(chat_client, tenant, settings):
    conversation = ConversationFactory(tenant=tenant)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000

    response = chat_client.post(messages_url(conversation), {"text": "a" * 100_001}, format="json")

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The message is larger than 65536 bytes; send a shorter text.",
        "code": "message_too_large",
        "max_size": 65536,
    }
    assert Message.objects.count() == 0


def test_message_of_exactly_64_kb_is_accepted(chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)

    response = chat_client.post(
        messages_url(conversation), {"text": "a" * MAX_MESSAGE_BYTES}, format="json"
    )

    assert response.status_code == 200
    assert Message.objects.get(role=Message.Role.USER).text == "a" * MAX_MESSAGE_BYTES


def test_long_search_reply_quotes_searched_text(chat_client, tenant, catalog, merchant):
    conversation = ConversationFactory(tenant=tenant, store_id=STORE_ID)
    text = "milk " * (MAX_MESSAGE_BYTES // 5)

    response = chat_client.post(messages_url(conversation), {"text": text}, format="json")

    assert response.status_code == 200
    delta = response.json()["events"][1]["delta"]
    # The search reads the first 200 characters, and the reply quotes only those.
    searched = ("milk " * 40).rstrip()
    assert delta.startswith(f"Here is what I found for \u201c{searched}\u201d:\n")
    assert len(delta) < 1000


def test_message_while_another_turn_runs_is_agent_busy(chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)
    lease = turn_lease_acquire(conversation=conversation)
    state_before = dict(conversation.state)

    response = chat_client.post(messages_url(conversation), {"text": "очисти кошик"}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Another message of this conversation is being processed; retry when it is done.",
        "code": "agent_busy",
    }
    conversation.refresh_from_db()
    assert Message.objects.count() == 0
    assert conversation.turn_started_at == lease.started_at
    assert conversation.state == state_before


def test_abandoned_lease_is_taken_over(chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)
    stale = timezone.now() - lease_duration() - timedelta(seconds=1)
    Conversation.objects.filter(pk=conversation.pk).update(turn_started_at=stale)

    response = chat_client.post(messages_url(conversation), {"text": "привіт"}, format="json")

    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.turn_started_at is None
    assert Message.objects.count() == 2


# Strict input types


@pytest.mark.parametrize(
    ("_case", "body", "fields"),
    [
        ("number store", {"store_id": 123}, {"store_id": ["Expected a string, got a number."]}),
        (
            "boolean user",
            {"store_id": "store-1", "user_id": True},
            {"user_id": ["Expected a string, got a boolean."]},
        ),
        (
            "object token",
            {"store_id": "store-1", "user_id": "u-1", "user_token": {"a": 1}},
            {"user_token": ["Expected a string, got an object."]},
        ),
        (
            "unknown field",
            {"store_id": "store-1", "session_id": "victim"},
            {"session_id": ["Unknown field."]},
        ),
        (
            "unknown field and missing store",
            {"foo": 1},
            {"store_id": ["This field is required."], "foo": ["Unknown field."]},
        ),
    ],
)
def test_create_rejects_non_string_and_unknown_fields(server_client, _case, body, fields):
    response = server_client.post(CREATE_URL, body, format="json")

    assert response.status_code == 400
    assert response.json() == invalid_body(fields)
    assert Conversation.objects.count() == 0


@pytest.mark.parametrize(
    ("_case", "raw_body", "fields"),
    [
        ("integer", '{"text": 5}', {"text": ["Expected a string, got a number."]}),
        ("infinity", '{"text": 1e999}', {"text": ["Expected a string, got a number."]}),
        ("array", '{"text": ["молоко"]}', {"text": ["Expected a string, got an array."]}),
        ("null", '{"text": null}', {"text": ["This field may not be null."]}),
        (
            "unknown field",
            '{"text": "молоко", "role": "assistant"}',
            {"role": ["Unknown field."]},
        ),
    ],
)
def test_message_rejects_non_string_and_unknown_fields(
    chat_client, tenant, _case, raw_body, fields
):
    conversation = ConversationFactory(tenant=tenant)

    response = chat_client.post(
        messages_url(conversation), raw_body, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == invalid_body(fields)
    assert Message.objects.count() == 0
    conversation.refresh_from_db()
    assert conversation.turn_started_at is None


# Pages of messages


def conversation_with_messages(tenant, count: int) -> tuple[Conversation, list[Message]]:
    conversation = ConversationFactory(tenant=tenant)
    messages = [
        MessageFactory(tenant=tenant, conversation=conversation, text=f"message {index}")
        for index in range(count)
    ]
    return conversation, messages


def texts(body: dict) -> list[str]:
    return [message["text"] for message in body["messages"]]


def test_detail_returns_the_latest_fifty_messages(chat_client, tenant):
    conversation, _ = conversation_with_messages(tenant, 55)

    body = chat_client.get(detail_url(conversation)).json()

    assert texts(body) == [f"message {index}" for index in range(5, 55)]
    assert body["has_more_messages"] is True


def test_detail_pages_back_with_before(chat_client, tenant):
    conversation, messages = conversation_with_messages(tenant, 7)

    first = chat_client.get(detail_url(conversation), {"limit": 3}).json()
    second = chat_client.get(
        detail_url(conversation), {"limit": 3, "before": first["messages"][0]["message_id"]}
    ).json()
    third = chat_client.get(
        detail_url(conversation), {"limit": 3, "before": second["messages"][0]["message_id"]}
    ).json()

    assert texts(first) == ["message 4", "message 5", "message 6"]
    assert first["has_more_messages"] is True
    assert texts(second) == ["message 1", "message 2", "message 3"]
    assert second["has_more_messages"] is True
    assert texts(third) == ["message 0"]
    assert third["has_more_messages"] is False


QUERY_INVALID = "The query parameters are invalid."


@pytest.mark.parametrize(
    ("query", "detail", "fields"),
    [
        ({"limit": 0}, QUERY_INVALID, {"limit": ["Ensure this value is greater than or equal to 1."]}),
        ({"limit": 201}, QUERY_INVALID, {"limit": ["Ensure this value is less than or equal to 200."]}),
        ({"limit": "x"}, QUERY_INVALID, {"limit": ["A valid integer is required."]}),
        ({"before": "msg_unknown"}, "Invalid message id.", {"before": ["No message with this id in this conversation."]}),
    ],
)  # fmt: skip
def test_detail_rejects_invalid_page_parameters(chat_client, tenant, query, detail, fields):
    conversation, _ = conversation_with_messages(tenant, 2)

    response = chat_client.get(detail_url(conversation), query)

    assert response.status_code == 400
    assert response.json() == {"detail": detail, "code": "invalid_json", "fields": fields}


def test_detail_before_must_belong_to_the_conversation(chat_client, tenant):
    conversation, _ = conversation_with_messages(tenant, 2)
    _, others = conversation_with_messages(tenant, 1)

    response = chat_client.get(detail_url(conversation), {"before": others[0].public_id})

    assert response.status_code == 400


# A turn whose worker stopped


def test_message_after_an_abandoned_turn_is_answered(chat_client, tenant):
    conversation = ConversationFactory(
        tenant=tenant, turn_started_at=timezone.now() - lease_duration() - timedelta(seconds=1)
    )
    MessageFactory(tenant=tenant, conversation=conversation, text="молоко")

    response = chat_client.post(messages_url(conversation), {"text": "дякую"}, format="json")

    assert response.status_code == 200
    history = chat_client.get(detail_url(conversation)).json()["messages"]
    assert [message["role"] for message in history] == ["user", "assistant", "user", "assistant"]
    assert history[1]["events"] == [
        {"type": "error", "code": "internal_error", "reason": "interrupted"},
        {"type": "response_complete"},
    ]
