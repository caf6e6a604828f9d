import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import ConversationFactory, MessageFactory

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
