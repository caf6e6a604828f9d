from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.models import TokenUsage
from tests.factories import ConversationFactory, MessageFactory, TokenUsageFactory

pytestmark = pytest.mark.django_db


def test_conversation_list_filters_by_tenant(admin_client, tenant, other_tenant):
    own = ConversationFactory(tenant=tenant)
    other = ConversationFactory(tenant=other_tenant)

    response = admin_client.get(
        "/admin/conversations/conversation/", {"tenant__id__exact": tenant.pk}
    )

    assert response.status_code == 200
    assert own.public_id in response.content.decode()
    assert other.public_id not in response.content.decode()


def test_conversation_page_shows_messages_read_only(admin_client, tenant):
    conversation = ConversationFactory(tenant=tenant)
    MessageFactory(conversation=conversation, text="покажи кефір")

    page = admin_client.get(f"/admin/conversations/conversation/{conversation.pk}/change/")
    post = admin_client.post(
        f"/admin/conversations/conversation/{conversation.pk}/change/", {"store_id": "changed"}
    )
    add = admin_client.get("/admin/conversations/conversation/add/")

    assert page.status_code == 200
    assert "покажи кефір" in page.content.decode()
    assert post.status_code == 403
    assert add.status_code == 403
    conversation.refresh_from_db()
    assert conversation.store_id == "store-1"


HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
ESCAPED = "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;"


def _query_count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries.captured_queries)


def test_conversation_queries_do_not_grow_with_rows(admin_client, tenant, other_tenant):
    conversation = ConversationFactory(tenant=tenant)
    MessageFactory(conversation=conversation)
    list_url = "/admin/conversations/conversation/"
    page_url = f"/admin/conversations/conversation/{conversation.pk}/change/"
    few_in_list = _query_count(admin_client, list_url)
    few_on_page = _query_count(admin_client, page_url)

    for index in range(40):
        ConversationFactory(tenant=tenant if index % 2 else other_tenant)
        MessageFactory(conversation=conversation)
    many_in_list = _query_count(admin_client, list_url)
    many_on_page = _query_count(admin_client, page_url)

    assert many_in_list == few_in_list
    assert many_on_page == few_on_page


def test_pages_escape_hostile_conversation(admin_client, tenant):
    conversation = ConversationFactory(tenant=tenant, store_id=HOSTILE, user_id=HOSTILE)
    MessageFactory(conversation=conversation, text=HOSTILE, metadata={"note": HOSTILE})

    pages = [
        admin_client.get("/admin/conversations/conversation/"),
        admin_client.get("/admin/conversations/conversation/", {"q": HOSTILE}),
        admin_client.get(f"/admin/conversations/conversation/{conversation.pk}/change/"),
    ]

    for page in pages:
        content = page.content.decode()
        assert page.status_code == 200
        assert "<script>alert" not in content
        assert "<img src=x" not in content
    assert ESCAPED in pages[2].content.decode()


def test_token_usage_list_filters_by_tenant(admin_client, tenant, other_tenant):
    TokenUsageFactory(tenant=tenant, date=date(2025, 3, 1), prompt_tokens=1_234_567)
    TokenUsageFactory(tenant=other_tenant, date=date(2025, 3, 1), prompt_tokens=7_654_321)

    filtered = admin_client.get(
        "/admin/conversations/tokenusage/", {"tenant__id__exact": tenant.pk}
    )
    unfiltered = admin_client.get("/admin/conversations/tokenusage/")

    assert filtered.status_code == 200
    assert "1234567" in filtered.content.decode()
    assert "7654321" not in filtered.content.decode()
    assert "1234567" in unfiltered.content.decode()
    assert "7654321" in unfiltered.content.decode()


def test_token_usage_is_read_only(admin_client, tenant):
    usage = TokenUsageFactory(tenant=tenant, prompt_tokens=100, requests=1)
    before = TokenUsage.objects.values().get(pk=usage.pk)
    page_url = f"/admin/conversations/tokenusage/{usage.pk}/change/"

    page = admin_client.get(page_url)
    post = admin_client.post(page_url, {"prompt_tokens": "0", "requests": "0"})
    add = admin_client.get("/admin/conversations/tokenusage/add/")
    add_post = admin_client.post(
        "/admin/conversations/tokenusage/add/", {"tenant": tenant.pk, "date": "2025-03-01"}
    )
    delete = admin_client.post(
        f"/admin/conversations/tokenusage/{usage.pk}/delete/", {"post": "yes"}
    )
    bulk_delete = admin_client.post(
        "/admin/conversations/tokenusage/",
        {"action": "delete_selected", "_selected_action": [usage.pk], "post": "yes"},
    )

    assert page.status_code == 200
    assert 'name="prompt_tokens"' not in page.content.decode()
    assert post.status_code == 403
    assert add.status_code == 403
    assert add_post.status_code == 403
    assert delete.status_code == 403
    assert bulk_delete.status_code == 200
    assert TokenUsage.objects.count() == 1
    assert TokenUsage.objects.values().get(pk=usage.pk) == before
