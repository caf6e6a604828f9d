"""The reads of the conversations app that the API tests do not reach in full."""

import pytest

from conversations import selectors
from conversations.models import Conversation, Message
from conversations.selectors import shopper_conversations_page
from tests.factories import ConversationFactory, MessageFactory
from vizochok.exceptions import NotFound

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


def shopper_conversation_bulk(tenant, *, messages: int) -> Conversation:
    conversation = ConversationFactory(tenant=tenant, user_id=USER_ID, session_id=USER_ID)
    Message.objects.bulk_create(
        Message(tenant=tenant, conversation=conversation, role=Message.Role.USER, text="молоко")
        for _ in range(messages)
    )
    return conversation


def export_pages(tenant, *, limit: int) -> list[list[str]]:
    """Read every page of the shopper's export by following ``has_more``."""
    pages: list[list[str]] = []
    before = None
    while True:
        page = shopper_conversations_page(
            tenant=tenant, user_id=USER_ID, limit=limit, before=before
        )
        pages.append(public_ids(page.conversations))
        if not page.has_more:
            return pages
        before = page.conversations[-1].public_id


@pytest.mark.parametrize(
    ("sizes", "expected_pages"),
    [
        # Newest first: the sizes are listed from the oldest conversation to the newest.
        ([1, 1000, 1000], [[2, 1], [0]]),
        ([1, 1001, 1000], [[2], [1, 0]]),
        ([1, 999, 1000], [[2, 1, 0]]),
        ([2001, 3, 2000], [[2], [1], [0]]),
    ],
)
def test_export_pages_at_real_bound(tenant, other_tenant, sizes, expected_pages):
    conversations = [shopper_conversation_bulk(tenant, messages=size) for size in sizes]
    foreign = shopper_conversation_bulk(other_tenant, messages=5)

    pages = export_pages(tenant, limit=100)

    assert pages == [[conversations[index].public_id for index in page] for page in expected_pages]
    assert foreign.public_id not in sum(pages, [])
    assert export_pages(other_tenant, limit=100) == [[foreign.public_id]]


def test_export_before_of_other_tenant_not_found(tenant, other_tenant):
    shopper_conversation(tenant, messages=1)
    foreign = shopper_conversation(other_tenant, messages=1)

    with pytest.raises(NotFound):
        shopper_conversations_page(tenant=tenant, user_id=USER_ID, before=foreign.public_id)


def test_export_pages_limit_and_bound(tenant, monkeypatch):
    monkeypatch.setattr(selectors, "SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES", 4)
    sizes = [1, 3, 0, 2, 2, 5, 1, 1]
    conversations = [shopper_conversation(tenant, messages=size) for size in sizes]

    pages = export_pages(tenant, limit=2)

    read = sum(pages, [])
    assert sorted(read) == sorted(public_ids(conversations))
    assert len(read) == len(set(read))
    assert read == public_ids(list(reversed(conversations)))
