"""The rate limit per conversation and the daily limits per user, through the chat API."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from conversations.identity import ShopperIdentity
from conversations.limits import message_limits_take, user_daily_count_take
from conversations.models import Conversation, Message, UserDailyUsage
from conversations.services import conversation_create
from tests.factories import ConversationFactory, MessageFactory
from vizochok.exceptions import LimitExceeded

pytestmark = pytest.mark.django_db

CREATE_URL = "/api/v1/conversations"


def messages_url(conversation: Conversation) -> str:
    return f"/api/v1/conversations/{conversation.public_id}/messages"


def post_message(client, conversation: Conversation, text: str = "дякую", **headers):
    return client.post(messages_url(conversation), {"text": text}, format="json", **headers)


def shopper_messages(conversation: Conversation, count: int, *, first_age: float) -> None:
    """Save ``count`` answered shopper messages, the oldest ``first_age`` seconds ago."""
    now = timezone.now()
    for index in range(count):
        created_at = now - timedelta(seconds=first_age - index)
        for role in (Message.Role.USER, Message.Role.ASSISTANT):
            message = MessageFactory(
                tenant=conversation.tenant, conversation=conversation, role=role
            )
            Message.objects.filter(pk=message.pk).update(created_at=created_at)


def set_limits(tenant, **values) -> None:
    for name, value in values.items():
        setattr(tenant.assistant_settings, name, value)
    tenant.assistant_settings.save()


@pytest.fixture
def conversation(tenant) -> Conversation:
    return ConversationFactory(tenant=tenant, limit_identity="user:shopper-1")


# Rate limit


def test_rate_limit_rejects_the_eleventh_message(chat_client, conversation):
    shopper_messages(conversation, 10, first_age=50)

    response = post_message(chat_client, conversation)

    assert response.status_code == 429
    assert response.json() == {
        "detail": "Too many messages: at most 10 in 60 seconds; retry in 10 seconds.",
        "code": "rate_limit_exceeded",
        "retry_after": 10,
        "limit": 10,
        "window_seconds": 60,
    }
    assert response["Retry-After"] == "10"
    assert Message.objects.count() == 20
    assert UserDailyUsage.objects.count() == 0
    conversation.refresh_from_db()
    assert conversation.turn_started_at is None


def test_rate_limit_window_slides(chat_client, conversation):
    shopper_messages(conversation, 10, first_age=61)

    response = post_message(chat_client, conversation)

    assert response.status_code == 200
    assert Message.objects.filter(role=Message.Role.USER).count() == 11


def test_rate_limit_applies_to_streamed_replies(chat_client, conversation):
    shopper_messages(conversation, 10, first_age=30)

    response = post_message(chat_client, conversation, HTTP_ACCEPT="text/event-stream")

    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "rate_limit_exceeded"
    assert response["Retry-After"] == str(response.json()["retry_after"])
    assert Message.objects.count() == 20


def test_rate_limit_is_per_conversation(chat_client, tenant, conversation):
    shopper_messages(conversation, 10, first_age=30)
    other = ConversationFactory(tenant=tenant, limit_identity="user:shopper-1")

    response = post_message(chat_client, other)

    assert response.status_code == 200


def test_rate_limit_follows_tenant_settings(chat_client, tenant, conversation):
    set_limits(tenant, rate_limit_messages=2, rate_limit_window_seconds=600)
    shopper_messages(conversation, 2, first_age=500)

    response = post_message(chat_client, conversation)

    assert response.status_code == 429
    assert response.json()["retry_after"] == 100
    assert response.json()["limit"] == 2
    assert response.json()["window_seconds"] == 600


def test_rate_limit_of_zero_means_no_limit(chat_client, tenant, conversation):
    set_limits(tenant, rate_limit_messages=0)
    shopper_messages(conversation, 30, first_age=30)

    response = post_message(chat_client, conversation)

    assert response.status_code == 200


def test_retry_after_counts_from_the_oldest_message_in_the_window(conversation):
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    for age in (59.5, 40, 1):
        message = MessageFactory(tenant=conversation.tenant, conversation=conversation)
        Message.objects.filter(pk=message.pk).update(created_at=now - timedelta(seconds=age))
    set_limits(conversation.tenant, rate_limit_messages=3)

    with pytest.raises(LimitExceeded) as raised:
        message_limits_take(conversation=conversation, now=now)

    assert raised.value.extra["retry_after"] == 1


# Daily limits


def test_daily_message_limit_rejects_the_201st_message(chat_client, tenant, conversation):
    UserDailyUsage.objects.create(
        tenant=tenant, identity="user:shopper-1", date=timezone.now().date(), messages=200
    )

    response = post_message(chat_client, conversation)

    assert response.status_code == 429
    tomorrow = timezone.now().date() + timedelta(days=1)
    assert response.json() == {
        "detail": "This user sent the maximum of 200 messages for today (UTC). The count "
        "resets at midnight UTC.",
        "code": "user_message_limit",
        "limit": 200,
        "resets_at": f"{tomorrow.isoformat()}T00:00:00+00:00",
    }
    assert not response.has_header("Retry-After")
    assert Message.objects.count() == 0
    assert UserDailyUsage.objects.get().messages == 200


def test_daily_message_limit_counts_across_conversations(chat_client, tenant):
    set_limits(tenant, user_daily_message_limit=2)
    first = ConversationFactory(tenant=tenant, limit_identity="user:shopper-1")
    second = ConversationFactory(tenant=tenant, limit_identity="user:shopper-1")
    stranger = ConversationFactory(tenant=tenant, limit_identity="user:shopper-2")

    statuses = [
        post_message(chat_client, first).status_code,
        post_message(chat_client, second).status_code,
        post_message(chat_client, second).status_code,
        post_message(chat_client, stranger).status_code,
    ]

    assert statuses == [200, 200, 429, 200]
    assert UserDailyUsage.objects.get(identity="user:shopper-1").messages == 2
    assert UserDailyUsage.objects.get(identity="user:shopper-2").messages == 1


def test_yesterdays_messages_do_not_count(chat_client, tenant, conversation):
    yesterday = timezone.now().date() - timedelta(days=1)
    UserDailyUsage.objects.create(
        tenant=tenant, identity="user:shopper-1", date=yesterday, messages=200
    )

    response = post_message(chat_client, conversation)

    assert response.status_code == 200


def test_rate_limit_wins_over_the_daily_limit(chat_client, tenant, conversation):
    shopper_messages(conversation, 10, first_age=30)
    UserDailyUsage.objects.create(
        tenant=tenant, identity="user:shopper-1", date=timezone.now().date(), messages=200
    )

    response = post_message(chat_client, conversation)

    assert response.json()["code"] == "rate_limit_exceeded"


def test_daily_limits_are_per_tenant(chat_client, tenant, other_tenant, conversation):
    theirs = UserDailyUsage.objects.create(
        tenant=other_tenant, identity="user:shopper-1", date=timezone.now().date(), messages=200
    )

    response = post_message(chat_client, conversation)

    assert response.status_code == 200
    mine = UserDailyUsage.objects.get(tenant=tenant)
    assert (mine.identity, mine.messages) == ("user:shopper-1", 1)
    theirs_after = UserDailyUsage.objects.get(pk=theirs.pk)
    assert (theirs_after.messages, theirs_after.conversations) == (200, 0)


def test_conversation_limit_is_per_tenant(server_client, tenant, other_tenant):
    theirs = UserDailyUsage.objects.create(
        tenant=other_tenant, identity="user:shopper-1", date=timezone.now().date(), conversations=20
    )

    response = server_client.post(
        CREATE_URL, {"store_id": "store-1", "user_id": "shopper-1"}, format="json"
    )

    assert response.status_code == 201
    mine = UserDailyUsage.objects.get(tenant=tenant)
    assert (mine.identity, mine.conversations) == ("user:shopper-1", 1)
    theirs_after = UserDailyUsage.objects.get(pk=theirs.pk)
    assert (theirs_after.messages, theirs_after.conversations) == (0, 20)
    assert not Conversation.objects.filter(tenant=other_tenant).exists()


def test_daily_conversation_limit_rejects_the_21st(server_client, tenant):
    statuses = [
        server_client.post(
            CREATE_URL, {"store_id": "store-1", "user_id": "shopper-1"}, format="json"
        ).status_code
        for _ in range(21)
    ]

    assert statuses == [201] * 20 + [429]
    response = server_client.post(
        CREATE_URL, {"store_id": "store-1", "user_id": "shopper-1"}, format="json"
    )
    assert response.json()["code"] == "user_conversation_limit"
    assert response.json()["limit"] == 20
    assert Conversation.objects.count() == 20
    assert UserDailyUsage.objects.get().conversations == 20


def test_anonymous_shoppers_share_the_key_limit(chat_client, tenant):
    set_limits(tenant, user_daily_conversation_limit=2)

    statuses = [
        chat_client.post(CREATE_URL, {"store_id": "store-1"}, format="json").status_code
        for _ in range(3)
    ]

    assert statuses == [201, 201, 429]
    assert Conversation.objects.count() == 2


def test_another_key_has_its_own_anonymous_limit(chat_client, server_client, tenant):
    set_limits(tenant, user_daily_conversation_limit=1)

    first = chat_client.post(CREATE_URL, {"store_id": "store-1"}, format="json")
    second = server_client.post(CREATE_URL, {"store_id": "store-1"}, format="json")

    assert first.status_code == 201
    assert second.status_code == 201


@pytest.mark.parametrize(
    ("trusted_proxies", "address_header"),
    [(0, "REMOTE_ADDR"), (1, "HTTP_X_FORWARDED_FOR")],
)
def test_two_addresses_share_the_key_limit(
    chat_client, public_key, tenant, settings, caplog, trusted_proxies, address_header
):
    # The tenant keeps the default anonymous_limit_identity, api_key.
    settings.TRUSTED_PROXY_COUNT = trusted_proxies
    addresses = ["203.0.113.7", "198.51.100.20"]

    statuses = [
        chat_client.post(
            CREATE_URL,
            {"store_id": "store-1"},
            format="json",
            **{address_header: addresses[index % 2]},
        ).status_code
        for index in range(20)
    ]
    rejected = chat_client.post(
        CREATE_URL, {"store_id": "store-1"}, format="json", **{address_header: addresses[1]}
    )

    assert statuses == [201] * 20
    assert rejected.status_code == 429
    tomorrow = timezone.now().date() + timedelta(days=1)
    assert rejected.json() == {
        "detail": "This user started the maximum of 20 conversations for today (UTC). The "
        "count resets at midnight UTC.",
        "code": "user_conversation_limit",
        "limit": 20,
        "resets_at": datetime.combine(tomorrow, time.min, tzinfo=UTC).isoformat(),
    }
    key_identity = f"key:{public_key.api_key.pk}"
    assert Conversation.objects.count() == 20
    assert set(Conversation.objects.values_list("limit_identity", flat=True)) == {key_identity}
    assert not Message.objects.exists()
    usage = UserDailyUsage.objects.get()
    assert (usage.identity, usage.messages, usage.conversations) == (key_identity, 0, 20)
    assert "conversations.identity.client_address_fallback" not in caplog.messages


def test_daily_count_take_stops_at_the_limit(tenant):
    today = timezone.now().date()

    taken = [
        user_daily_count_take(
            tenant=tenant, identity="key:1", counter="messages", limit=3, day=today
        )
        for _ in range(5)
    ]

    assert taken == [True, True, True, False, False]
    assert UserDailyUsage.objects.get().messages == 3


def test_daily_count_take_without_limit_keeps_counting(tenant):
    today = timezone.now().date()

    taken = [
        user_daily_count_take(
            tenant=tenant, identity="key:1", counter="conversations", limit=0, day=today
        )
        for _ in range(3)
    ]

    assert taken == [True, True, True]
    assert UserDailyUsage.objects.get().conversations == 3


def test_failed_conversation_insert_is_not_counted(tenant, monkeypatch):
    def failing_create(**fields):
        raise DatabaseError("insert failed")

    monkeypatch.setattr(Conversation.objects, "create", failing_create)

    with pytest.raises(DatabaseError):
        conversation_create(
            tenant=tenant,
            store_id="store-1",
            identity=ShopperIdentity(user_id="shopper-1", limit_key="user:shopper-1"),
        )

    assert Conversation.objects.count() == 0
    assert UserDailyUsage.objects.count() == 0


def test_failed_limit_check_releases_lease(chat_client, conversation, monkeypatch, caplog):
    def deadlocked(**kwargs):
        raise DatabaseError("deadlock detected")

    monkeypatch.setattr("conversations.services.message_limits_take", deadlocked)

    failed = post_message(chat_client, conversation)

    monkeypatch.undo()
    conversation.refresh_from_db()
    lease_after_failure = conversation.turn_started_at
    retried = post_message(chat_client, conversation)

    assert failed.status_code == 500
    assert failed.json()["code"] == "internal_error"
    assert lease_after_failure is None
    assert "conversations.turn.lease_release_failed" not in caplog.messages
    assert retried.status_code == 200
    assert Message.objects.filter(conversation=conversation, role="user").count() == 1
    assert UserDailyUsage.objects.get().messages == 1
