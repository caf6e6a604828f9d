"""Admin API for a shopper's data: the export and the erasure of conversations."""

from datetime import timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.models import CatalogJob
from conversations import apis as conversations_apis
from conversations.leases import turn_lease_acquire
from conversations.models import Conversation, Message, TokenUsage, UserDailyUsage
from conversations.retention import shopper_data_erase
from tests.factories import ConversationFactory, MessageFactory, ProductFactory

pytestmark = pytest.mark.django_db

USER_ID = "user-42"


def _url(user_id: str = USER_ID) -> str:
    return f"/api/v1/admin/shoppers/{quote(user_id, safe='')}"


def _shopper_conversation(tenant, *, user_id: str = USER_ID, messages: int = 2) -> Conversation:
    conversation = ConversationFactory(
        tenant=tenant, user_id=user_id, session_id=user_id, limit_identity=f"user:{user_id}"
    )
    for index in range(messages):
        role = Message.Role.USER if index % 2 == 0 else Message.Role.ASSISTANT
        MessageFactory(tenant=tenant, conversation=conversation, role=role, text=f"text {index}")
    return conversation


def _anonymous_conversation(tenant) -> Conversation:
    conversation = ConversationFactory(tenant=tenant, session_id="anon_abc", limit_identity="key:1")
    MessageFactory(tenant=tenant, conversation=conversation, role=Message.Role.USER)
    return conversation


def _usage(tenant, identity: str) -> UserDailyUsage:
    return UserDailyUsage.objects.create(
        tenant=tenant, identity=identity, date=timezone.now().date(), messages=3, conversations=1
    )


def _conversation_ids(tenant) -> set[str]:
    return set(Conversation.objects.filter(tenant=tenant).values_list("public_id", flat=True))


# --- Export ---------------------------------------------------------------------------


def test_export_returns_conversations_with_messages(tenant, server_client):
    conversation = _shopper_conversation(tenant, messages=3)
    _shopper_conversation(tenant, user_id="someone-else")
    _anonymous_conversation(tenant)

    response = server_client.get(f"{_url()}/conversations")

    assert response.status_code == 200
    body = response.json()
    assert body["has_more"] is False
    assert [item["conversation_id"] for item in body["conversations"]] == [conversation.public_id]
    exported = body["conversations"][0]
    assert set(exported) == {
        "conversation_id",
        "store_id",
        "session_id",
        "user_id",
        "cart",
        "created_at",
        "updated_at",
        "assistant",
        "messages",
        "has_more_messages",
    }
    assert exported["user_id"] == USER_ID
    assert exported["session_id"] == USER_ID
    assert exported["has_more_messages"] is False
    assert [message["text"] for message in exported["messages"]] == ["text 0", "text 1", "text 2"]
    assert [message["role"] for message in exported["messages"]] == [
        "user",
        "assistant",
        "user",
    ]


def test_export_pages_newest_first(tenant, server_client):
    first = _shopper_conversation(tenant)
    second = _shopper_conversation(tenant)
    third = _shopper_conversation(tenant)
    Conversation.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=2))
    Conversation.objects.filter(pk=second.pk).update(created_at=timezone.now() - timedelta(hours=1))

    page_one = server_client.get(f"{_url()}/conversations?limit=2").json()
    page_two = server_client.get(
        f"{_url()}/conversations?limit=2&before={page_one['conversations'][-1]['conversation_id']}"
    ).json()

    assert [item["conversation_id"] for item in page_one["conversations"]] == [
        third.public_id,
        second.public_id,
    ]
    assert page_one["has_more"] is True
    assert [item["conversation_id"] for item in page_two["conversations"]] == [first.public_id]
    assert page_two["has_more"] is False


def test_export_of_unknown_shopper_is_empty(tenant, server_client):
    response = server_client.get(f"{_url('nobody')}/conversations")

    assert response.status_code == 200
    assert response.json() == {"conversations": [], "has_more": False}


def test_export_rejects_unknown_before(tenant, other_tenant, server_client):
    _shopper_conversation(tenant)
    other_shopper = _shopper_conversation(tenant, user_id="someone-else")

    response = server_client.get(f"{_url()}/conversations?before={other_shopper.public_id}")

    assert response.status_code == 404
    assert response.json() == {"detail": "Conversation not found.", "code": "not_found"}


def test_export_before_of_other_tenant_is_not_found(tenant, other_tenant, other_server_client):
    theirs = _shopper_conversation(tenant)
    _shopper_conversation(other_tenant)

    foreign = other_server_client.get(f"{_url()}/conversations?before={theirs.public_id}")
    unknown = other_server_client.get(f"{_url()}/conversations?before=conv_unknown")

    assert foreign.status_code == 404
    assert foreign.json() == {"detail": "Conversation not found.", "code": "not_found"}
    assert unknown.status_code == 404
    assert unknown.json() == foreign.json()
    assert _conversation_ids(tenant) == {theirs.public_id}
    assert Message.objects.filter(conversation=theirs).count() == 2


@pytest.mark.parametrize("limit", ["0", "101", "x"])
def test_export_rejects_invalid_limit(tenant, server_client, limit):
    response = server_client.get(f"{_url()}/conversations?limit={limit}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert list(response.json()["fields"]) == ["limit"]


def test_export_reads_user_id_with_slash(tenant, server_client):
    conversation = _shopper_conversation(tenant, user_id="shop/42")

    response = server_client.get(f"{_url('shop/42')}/conversations")

    assert response.status_code == 200
    assert [item["conversation_id"] for item in response.json()["conversations"]] == [
        conversation.public_id
    ]


# --- Erasure --------------------------------------------------------------------------


def test_delete_erases_every_row_of_the_shopper(tenant, server_client, caplog):
    caplog.set_level("INFO", logger="conversations.retention")
    _shopper_conversation(tenant, messages=3)
    _shopper_conversation(tenant, messages=2)
    _usage(tenant, f"user:{USER_ID}")
    UserDailyUsage.objects.create(
        tenant=tenant, identity=f"user:{USER_ID}", date=timezone.now().date() - timedelta(days=1)
    )
    other_shopper = _shopper_conversation(tenant, user_id="someone-else")
    other_usage = _usage(tenant, "user:someone-else")
    anonymous = _anonymous_conversation(tenant)
    key_usage = _usage(tenant, "key:1")

    response = server_client.delete(_url())

    assert response.status_code == 200
    assert response.json() == {"ok": True, "conversations": 2, "messages": 5, "usage_rows": 2}
    assert _conversation_ids(tenant) == {other_shopper.public_id, anonymous.public_id}
    assert Message.objects.filter(tenant=tenant).count() == 3
    assert set(UserDailyUsage.objects.values_list("pk", flat=True)) == {
        other_usage.pk,
        key_usage.pk,
    }
    records = [r for r in caplog.records if r.msg == "conversations.shopper_erased"]
    assert len(records) == 1
    assert records[0].tenant_id == tenant.pk
    assert records[0].conversations == 2
    assert records[0].messages == 5
    assert records[0].usage_rows == 2
    assert USER_ID not in caplog.text


def test_delete_is_idempotent(tenant, server_client):
    _shopper_conversation(tenant)

    first = server_client.delete(_url())
    second = server_client.delete(_url())

    assert first.json() == {"ok": True, "conversations": 1, "messages": 2, "usage_rows": 0}
    assert second.status_code == 200
    assert second.json() == {"ok": True, "conversations": 0, "messages": 0, "usage_rows": 0}


def test_delete_leaves_other_tables_alone(tenant, server_client):
    _shopper_conversation(tenant)
    product = ProductFactory(tenant=tenant)
    job = CatalogJob.objects.create(tenant=tenant, source=CatalogJob.Source.API)
    TokenUsage.objects.create(tenant=tenant, date=timezone.now().date(), prompt_tokens=10)

    response = server_client.delete(_url())

    assert response.status_code == 200
    assert list(tenant.products.values_list("pk", flat=True)) == [product.pk]
    assert list(tenant.catalog_jobs.values_list("pk", flat=True)) == [job.pk]
    assert TokenUsage.objects.get(tenant=tenant).prompt_tokens == 10


def test_delete_during_turn_deletes_nothing(tenant, server_client):
    idle = _shopper_conversation(tenant)
    busy = _shopper_conversation(tenant)
    Conversation.objects.filter(pk=busy.pk).update(turn_started_at=timezone.now())
    usage = _usage(tenant, f"user:{USER_ID}")

    response = server_client.delete(_url())

    assert response.status_code == 409
    assert response.json()["code"] == "agent_busy"
    assert _conversation_ids(tenant) == {idle.public_id, busy.public_id}
    assert Message.objects.filter(tenant=tenant).count() == 4
    assert UserDailyUsage.objects.filter(pk=usage.pk).exists()


def test_delete_after_expired_lease_succeeds(tenant, server_client):
    conversation = _shopper_conversation(tenant)
    Conversation.objects.filter(pk=conversation.pk).update(
        turn_started_at=timezone.now() - timedelta(days=1)
    )

    response = server_client.delete(_url())

    assert response.status_code == 200
    assert response.json()["conversations"] == 1


@pytest.mark.parametrize(
    ("user_id", "problem"),
    [
        (
            "anon_abc",
            "User ids starting with 'anon_' are reserved; delete an anonymous shopper's "
            "conversation by its id.",
        ),
        (" user-42", "Must not start or end with whitespace."),
        ("x" * 201, "Ensure this field has no more than 200 characters."),
        ("user\x0042", "Null characters are not allowed."),
    ],
)
def test_delete_rejects_invalid_user_id(tenant, server_client, user_id, problem):
    anonymous = _anonymous_conversation(tenant)

    response = server_client.delete(_url(user_id))

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid user id.",
        "code": "invalid_json",
        "fields": {"user_id": [problem]},
    }
    assert _conversation_ids(tenant) == {anonymous.public_id}


def test_export_rejects_null_character(tenant, server_client):
    _shopper_conversation(tenant, user_id="user")

    response = server_client.get(_url("user\x00") + "/conversations")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid user id.",
        "code": "invalid_json",
        "fields": {"user_id": ["Null characters are not allowed."]},
    }


def test_delete_erases_user_id_with_slash(tenant, server_client):
    _shopper_conversation(tenant, user_id="shop/42")
    kept = _shopper_conversation(tenant, user_id="shop")

    response = server_client.delete(_url("shop/42"))

    assert response.json() == {"ok": True, "conversations": 1, "messages": 2, "usage_rows": 0}
    assert _conversation_ids(tenant) == {kept.public_id}


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
def test_message_racing_erasure_is_not_found(tenant, server_client, monkeypatch, accept):
    conversation = _shopper_conversation(tenant)
    read_conversation = conversations_apis.conversation_get

    def read_then_erase(**kwargs):
        # The shopper's message reads the conversation just before the erasure deletes it.
        found = read_conversation(**kwargs)
        shopper_data_erase(tenant=tenant, user_id=USER_ID)
        return found

    monkeypatch.setattr(conversations_apis, "conversation_get", read_then_erase)

    response = server_client.post(
        f"/api/v1/conversations/{conversation.public_id}/messages",
        {"text": "milk"},
        format="json",
        HTTP_ACCEPT=accept,
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "Conversation not found.", "code": "not_found"}
    assert _conversation_ids(tenant) == set()
    assert Message.objects.count() == 0
    assert UserDailyUsage.objects.count() == 0


# --- One conversation -----------------------------------------------------------------


def test_delete_conversation_erases_it(tenant, server_client):
    anonymous = _anonymous_conversation(tenant)
    kept = _shopper_conversation(tenant)
    key_usage = _usage(tenant, "key:1")

    response = server_client.delete(f"/api/v1/admin/conversations/{anonymous.public_id}")

    assert response.status_code == 200
    assert response.json() == {"ok": True, "conversations": 1, "messages": 1, "usage_rows": 0}
    assert _conversation_ids(tenant) == {kept.public_id}
    assert UserDailyUsage.objects.filter(pk=key_usage.pk).exists()


def test_delete_conversation_during_turn_is_busy(tenant, server_client):
    conversation = _anonymous_conversation(tenant)
    Conversation.objects.filter(pk=conversation.pk).update(turn_started_at=timezone.now())

    response = server_client.delete(f"/api/v1/admin/conversations/{conversation.public_id}")

    assert response.status_code == 409
    assert response.json()["code"] == "agent_busy"
    assert Message.objects.filter(conversation=conversation).count() == 1


def test_delete_unknown_conversation_is_not_found(tenant, server_client):
    response = server_client.delete("/api/v1/admin/conversations/conv_unknown")

    assert response.status_code == 404
    assert response.json() == {"detail": "Conversation not found.", "code": "not_found"}


# --- Authentication and tenant isolation ----------------------------------------------


def test_other_tenant_cannot_see_or_delete(tenant, other_tenant, other_server_client):
    conversation = _shopper_conversation(tenant)
    usage = _usage(tenant, f"user:{USER_ID}")
    own = _shopper_conversation(other_tenant)

    exported = other_server_client.get(f"{_url()}/conversations")
    deleted = other_server_client.delete(_url())
    single = other_server_client.delete(f"/api/v1/admin/conversations/{conversation.public_id}")

    assert [item["conversation_id"] for item in exported.json()["conversations"]] == [own.public_id]
    assert deleted.json() == {"ok": True, "conversations": 1, "messages": 2, "usage_rows": 0}
    assert single.status_code == 404
    assert single.json() == {"detail": "Conversation not found.", "code": "not_found"}
    assert _conversation_ids(tenant) == {conversation.public_id}
    assert Message.objects.filter(conversation=conversation).count() == 2
    assert UserDailyUsage.objects.filter(pk=usage.pk).exists()
    assert _conversation_ids(other_tenant) == set()


def test_other_tenants_busy_conversation_is_hidden(tenant, other_tenant, other_server_client):
    conversation = _shopper_conversation(tenant)
    lease = turn_lease_acquire(conversation=conversation)
    assert lease is not None
    row_before = Conversation.objects.filter(pk=conversation.pk).values().get()

    single = other_server_client.delete(f"/api/v1/admin/conversations/{conversation.public_id}")
    shopper = other_server_client.delete(_url())

    assert single.status_code == 404
    assert single.json() == {"detail": "Conversation not found.", "code": "not_found"}
    assert shopper.status_code == 200
    assert shopper.json() == {"ok": True, "conversations": 0, "messages": 0, "usage_rows": 0}
    assert Conversation.objects.filter(pk=conversation.pk).values().get() == row_before
    assert Message.objects.filter(conversation=conversation).count() == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"/api/v1/admin/shoppers/{USER_ID}/conversations"),
        ("delete", f"/api/v1/admin/shoppers/{USER_ID}"),
        ("delete", "/api/v1/admin/conversations/{conversation_id}"),
    ],
)
def test_public_key_is_forbidden(tenant, chat_client, method, path):
    conversation = _shopper_conversation(tenant)

    response = getattr(chat_client, method)(path.format(conversation_id=conversation.public_id))

    assert response.status_code == 403
    assert response.json() == {
        "detail": "This endpoint needs a secret (sk_) API key.",
        "code": "permission_denied",
    }
    assert _conversation_ids(tenant) == {conversation.public_id}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"/api/v1/admin/shoppers/{USER_ID}/conversations"),
        ("delete", f"/api/v1/admin/shoppers/{USER_ID}"),
        ("delete", "/api/v1/admin/conversations/{conversation_id}"),
    ],
)
def test_missing_key_is_unauthenticated(tenant, method, path):
    conversation = _shopper_conversation(tenant)

    response = getattr(APIClient(), method)(path.format(conversation_id=conversation.public_id))

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert _conversation_ids(tenant) == {conversation.public_id}
