"""The reads of the conversations app that the API tests do not reach in full."""

import pytest

from conversations import selectors
from conversations.models import Conversation, Message
from conversations.selectors import shopper_conversations_page
from tests.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db

USER_ID = "user-42"


def shopper_conversation(tenant, *, messages: int) -> Conversation:
    conversation = ConversationFactory(tenant=tenant, user_id=USER_ID, session_id=USER_ID)
    for index in range(messages):
        role = Message.Role.USER if index % 2 == 0 else Message.Role.ASSISTANT
        MessageFactory(tenant=tenant, conversation=conversation, role=role, text=f"text {index}")
    return conversation


def public_ids(conversations: list[Conversation]) -> list[str]:
    return [conversation.public_id for conversation in conversations]


def test_export_page_under_message_bound(tenant):
    oldest = shopper_conversation(tenant, messages=4)
    newest = shopper_conversation(tenant, messages=6)

    page = shopper_conversations_page(tenant=tenant, user_id=USER_ID)

    assert public_ids(page.conversations) == [newest.public_id, oldest.public_id]
    assert len(page.messages[newest.pk]) == 6
    assert len(page.messages[oldest.pk]) == 4
    assert page.has_more is False


def test_export_page_stops_at_message_bound(tenant, monkeypatch):
    monkeypatch.setattr(selectors, "SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES", 7)
    oldest = shopper_conversation(tenant, messages=2)
    middle = shopper_conversation(tenant, messages=4)
    newest = shopper_conversation(tenant, messages=3)

    first = shopper_conversations_page(tenant=tenant, user_id=USER_ID)
    second = shopper_conversations_page(
        tenant=tenant, user_id=USER_ID, before=first.conversations[-1].public_id
    )

    assert public_ids(first.conversations) == [newest.public_id, middle.public_id]
    assert set(first.messages) == {newest.pk, middle.pk}
    assert first.has_more is True
    assert public_ids(second.conversations) == [oldest.public_id]
    assert len(second.messages[oldest.pk]) == 2
    assert second.has_more is False


def test_export_page_keeps_long_conversation_whole(tenant, monkeypatch):
    monkeypatch.setattr(selectors, "SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES", 3)
    older = shopper_conversation(tenant, messages=1)
    longest = shopper_conversation(tenant, messages=5)

    page = shopper_conversations_page(tenant=tenant, user_id=USER_ID)

    assert public_ids(page.conversations) == [longest.public_id]
    assert [message.text for message in page.messages[longest.pk]] == [
        f"text {index}" for index in range(5)
    ]
    assert older.pk not in page.messages
    assert page.has_more is True


def test_export_page_counts_empty_conversations(tenant, monkeypatch):
    monkeypatch.setattr(selectors, "SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES", 2)
    full = shopper_conversation(tenant, messages=2)
    empty = shopper_conversation(tenant, messages=0)

    page = shopper_conversations_page(tenant=tenant, user_id=USER_ID)

    assert public_ids(page.conversations) == [empty.public_id, full.public_id]
    assert page.messages[empty.pk] == []
    assert len(page.messages[full.pk]) == 2
    assert page.has_more is False


def test_export_api_pages_by_message_bound(tenant, server_client, monkeypatch):
    monkeypatch.setattr(selectors, "SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES", 3)
    older = shopper_conversation(tenant, messages=2)
    newer = shopper_conversation(tenant, messages=2)
    url = f"/api/v1/admin/shoppers/{USER_ID}/conversations"

    first = server_client.get(url).json()
    second = server_client.get(url, {"before": newer.public_id}).json()

    assert [item["conversation_id"] for item in first["conversations"]] == [newer.public_id]
    assert len(first["conversations"][0]["messages"]) == 2
    assert first["conversations"][0]["has_more_messages"] is False
    assert first["has_more"] is True
    assert [item["conversation_id"] for item in second["conversations"]] == [older.public_id]
    assert second["has_more"] is False
