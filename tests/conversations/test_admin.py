import pytest

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
