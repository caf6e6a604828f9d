"""The chat API's check of a public key's Origin against the tenant's allowed origins."""

import logging

import pytest
from rest_framework.test import APIClient

from conversations.models import Conversation, Message, TokenUsage, UserDailyUsage
from tenants.models import Tenant
from tests.factories import ConversationFactory
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

CREATE_URL = "/api/v1/conversations"
ALLOWED = "https://shop.example"
OTHER = "https://evil.example"


def messages_url(conversation: Conversation) -> str:
    return f"/api/v1/conversations/{conversation.public_id}/messages"


def allow_origins(tenant: Tenant, *origins: str) -> None:
    tenant.widget_allowed_origins = list(origins)
    tenant.save(update_fields=["widget_allowed_origins"])


def rejected_body(origin: str) -> dict[str, str]:
    return {
        "detail": f"The origin {origin!r} is not in this tenant's widget_allowed_origins. Add "
        "it in the admin or with PATCH /api/v1/admin/widget.",
        "code": "permission_denied",
        "reason": "origin_not_allowed",
    }


@pytest.fixture
def merchant_with_cart_get(tenant, merchant, catalog):
    """The reference merchant, called for the cart on a first message and for prices."""
    tenant.webhook_settings.cart_get_url = merchant.cart_get_url
    tenant.webhook_settings.save()
    return merchant


def test_create_from_another_origin_is_rejected(chat_client, tenant, public_key, caplog):
    allow_origins(tenant, ALLOWED)

    with caplog.at_level(logging.WARNING, logger="tenants.permissions"):
        response = chat_client.post(
            CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=OTHER
        )

    assert response.status_code == 403
    assert response.json() == rejected_body(OTHER)
    assert response["Access-Control-Allow-Origin"] == OTHER
    assert Conversation.objects.count() == 0
    assert UserDailyUsage.objects.count() == 0
    [record] = [r for r in caplog.records if r.name == "tenants.permissions"]
    assert record.getMessage() == "tenants.widget_origin.rejected"
    assert record.tenant_id == tenant.pk
    assert record.api_key == public_key.api_key.prefix
    assert record.origin == OTHER
    assert record.path == CREATE_URL


def test_message_from_another_origin_does_nothing(
    chat_client, tenant, conversation, merchant_with_cart_get
):
    allow_origins(tenant, ALLOWED)
    state_before = dict(conversation.state)

    response = chat_client.post(
        messages_url(conversation), {"text": "молоко"}, format="json", HTTP_ORIGIN=OTHER
    )

    assert response.status_code == 403
    assert response.json() == rejected_body(OTHER)
    assert Message.objects.count() == 0
    assert UserDailyUsage.objects.count() == 0
    assert TokenUsage.objects.count() == 0
    assert WebhookDelivery.objects.count() == 0
    assert merchant_with_cart_get.requests == []
    conversation.refresh_from_db()
    assert conversation.turn_started_at is None
    assert conversation.state == state_before


def test_message_from_an_allowed_origin_calls_the_merchant(
    chat_client, tenant, conversation, merchant_with_cart_get
):
    # The contrast of the test above: the same message with the allowed origin.
    allow_origins(tenant, ALLOWED)

    response = chat_client.post(
        messages_url(conversation), {"text": "молоко"}, format="json", HTTP_ORIGIN=ALLOWED
    )

    assert response.status_code == 200
    assert Message.objects.count() == 2
    paths = [(r.method, r.path) for r in merchant_with_cart_get.requests]
    assert paths == [("GET", "/vizochok/cart"), ("POST", "/vizochok/products")]
    assert WebhookDelivery.objects.count() == 2


def test_detail_from_another_origin_is_rejected(chat_client, tenant):
    allow_origins(tenant, ALLOWED)
    conversation = ConversationFactory(tenant=tenant)

    response = chat_client.get(f"/api/v1/conversations/{conversation.public_id}", HTTP_ORIGIN=OTHER)

    assert response.status_code == 403
    assert response.json() == rejected_body(OTHER)


@pytest.mark.parametrize(
    "origin", ["https://shop.example", "https://SHOP.example:443", "HTTPS://shop.example"]
)
def test_allowed_origin_is_compared_normalized(chat_client, tenant, origin):
    allow_origins(tenant, ALLOWED, "http://localhost:3000")

    response = chat_client.post(
        CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=origin
    )

    assert response.status_code == 201
    assert response["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize(
    "origin",
    [
        "http://shop.example",
        "https://shop.example:8443",
        "https://sub.shop.example",
        "null",
        "",
        "https://shop.example/path",
    ],
)
def test_near_misses_are_rejected(chat_client, tenant, origin):
    allow_origins(tenant, ALLOWED)

    response = chat_client.post(
        CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=origin
    )

    assert response.status_code == 403
    assert response.json()["reason"] == "origin_not_allowed"
    assert Conversation.objects.count() == 0


def test_request_without_origin_is_not_checked(chat_client, tenant):
    allow_origins(tenant, ALLOWED)

    response = chat_client.post(CREATE_URL, {"store_id": "store-1"}, format="json")

    assert response.status_code == 201


def test_empty_list_allows_every_origin(chat_client, tenant):
    response = chat_client.post(
        CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=OTHER
    )

    assert response.status_code == 201


def test_secret_key_is_not_checked(server_client, tenant):
    allow_origins(tenant, ALLOWED)

    response = server_client.post(
        CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=OTHER
    )

    assert response.status_code == 201


def test_missing_key_is_unauthenticated_before_the_origin_check(tenant):
    allow_origins(tenant, ALLOWED)

    response = APIClient().post(
        CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=OTHER
    )

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_one_tenant_list_never_applies_to_another(
    chat_client, other_chat_client, tenant, other_tenant
):
    allow_origins(tenant, ALLOWED)
    allow_origins(other_tenant, OTHER)

    other_from_its_origin = other_chat_client.post(
        CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=OTHER
    )
    other_from_tenant_origin = other_chat_client.post(
        CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=ALLOWED
    )
    tenant_from_other_origin = chat_client.post(
        CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=OTHER
    )

    assert other_from_its_origin.status_code == 201
    assert other_from_tenant_origin.status_code == 403
    assert tenant_from_other_origin.status_code == 403
    assert Conversation.objects.filter(tenant=other_tenant).count() == 1
    assert Conversation.objects.filter(tenant=tenant).count() == 0


def test_demo_page_origin_needs_listing(chat_client, tenant):
    """The demo page's same-origin POST carries the app's Origin, as browsers send it."""
    app_origin = "http://testserver"
    allow_origins(tenant, ALLOWED)

    rejected = chat_client.post(
        CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=app_origin
    )

    assert rejected.status_code == 403
    assert rejected.json() == rejected_body(app_origin)
    assert Conversation.objects.count() == 0

    allow_origins(tenant, ALLOWED, app_origin)
    accepted = chat_client.post(
        CREATE_URL, {"store_id": "store-1"}, format="json", HTTP_ORIGIN=app_origin
    )

    assert accepted.status_code == 201
    assert Conversation.objects.count() == 1
