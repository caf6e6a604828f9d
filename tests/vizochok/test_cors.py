"""CORS of the chat endpoints for the widget on a store's own site (vizochok.middleware)."""

import pytest
from rest_framework.test import APIClient

from conversations import apis as conversation_apis
from conversations.leases import turn_lease_acquire
from conversations.models import Conversation, Message, UserDailyUsage
from conversations.services import MAX_MESSAGE_BYTES
from tests.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db

ORIGIN = "https://shop.example"
CORS_HEADERS = [
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Credentials",
    "Access-Control-Expose-Headers",
    "Access-Control-Max-Age",
]


def preflight(path: str, origin: str = ORIGIN):
    return APIClient().options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, accept",
    )


def assert_actual_response_cors(response, origin: str = ORIGIN) -> None:
    assert response["Access-Control-Allow-Origin"] == origin
    assert response["Access-Control-Expose-Headers"] == "Retry-After"
    assert "Origin" in response["Vary"]
    assert "Access-Control-Allow-Credentials" not in response
    assert "Access-Control-Allow-Methods" not in response


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/conversations",
        "/api/v1/conversations/conv_Jt1-8mVZ3tqy4Hq0cAqJfA",
        "/api/v1/conversations/conv_Jt1-8mVZ3tqy4Hq0cAqJfA/messages",
    ],
)
def test_preflight_is_answered_without_a_key(tenant, path):
    response = preflight(path)

    assert response.status_code == 204
    assert response.content == b""
    assert "Content-Type" not in response
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert response["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert response["Access-Control-Allow-Headers"] == (
        "Authorization, Content-Type, Accept, Idempotency-Key"
    )
    assert response["Access-Control-Max-Age"] == "7200"
    assert response["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in response
    assert Conversation.objects.count() == 0


def test_preflight_ignores_the_tenant_allow_list(tenant):
    # The preflight has no key, so no tenant's list can apply; the actual request is checked.
    tenant.widget_allowed_origins = ["https://allowed.example"]
    tenant.save(update_fields=["widget_allowed_origins"])

    response = preflight("/api/v1/conversations", origin="https://other.example")

    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "https://other.example"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/admin/webhooks",
        "/api/v1/admin/widget",
        "/api/v1/catalog/products",
        "/api/v1/catalog/jobs",
        "/api/v1/health",
        "/api/v1/conversationsX",
        "/admin/login/",
    ],
)
def test_other_paths_get_no_cors_headers(server_client, path):
    preflight_response = preflight(path)
    get_response = server_client.get(path, HTTP_ORIGIN=ORIGIN)

    assert preflight_response.status_code != 204
    for header in CORS_HEADERS:
        assert header not in preflight_response
        assert header not in get_response


def test_create_response_carries_cors_headers(chat_client):
    response = chat_client.post(
        "/api/v1/conversations", {"store_id": "store-1"}, format="json", HTTP_ORIGIN=ORIGIN
    )

    assert response.status_code == 201
    assert_actual_response_cors(response)


def test_detail_response_carries_cors_headers(chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)

    response = chat_client.get(
        f"/api/v1/conversations/{conversation.public_id}", HTTP_ORIGIN=ORIGIN
    )

    assert response.status_code == 200
    assert_actual_response_cors(response)


def test_message_response_carries_cors_headers(chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)

    response = chat_client.post(
        f"/api/v1/conversations/{conversation.public_id}/messages",
        {"text": "привіт"},
        format="json",
        HTTP_ORIGIN=ORIGIN,
    )

    assert response.status_code == 200
    assert_actual_response_cors(response)


def test_event_stream_carries_cors_headers(chat_client, tenant):
    conversation = ConversationFactory(tenant=tenant)

    response = chat_client.post(
        f"/api/v1/conversations/{conversation.public_id}/messages",
        {"text": "привіт"},
        format="json",
        HTTP_ORIGIN=ORIGIN,
        HTTP_ACCEPT="text/event-stream",
    )
    body = b"".join(response.streaming_content).decode()

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert_actual_response_cors(response)
    assert body.endswith('event: response_complete\ndata: {"type":"response_complete"}\n\n')


def test_response_without_origin_has_no_cors_headers(chat_client):
    response = chat_client.post("/api/v1/conversations", {"store_id": "store-1"}, format="json")

    assert response.status_code == 201
    assert response["Vary"] == "Origin"
    for header in CORS_HEADERS:
        assert header not in response


@pytest.mark.parametrize(
    ("authorization", "code"),
    [(None, "not_authenticated"), ("Bearer pk_live_unknown", "authentication_failed")],
)
def test_authentication_errors_carry_cors_headers(tenant, authorization, code):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)

    response = client.post(
        "/api/v1/conversations", {"store_id": "store-1"}, format="json", HTTP_ORIGIN=ORIGIN
    )

    assert response.status_code == 401
    assert response.json()["code"] == code
    assert_actual_response_cors(response)


def test_errors_of_the_chat_api_carry_cors_headers(chat_client, tenant, public_key, settings):
    conversation = ConversationFactory(tenant=tenant)
    busy = ConversationFactory(tenant=tenant)
    turn_lease_acquire(conversation=busy)
    limited = ConversationFactory(tenant=tenant)
    for _ in range(10):
        MessageFactory(tenant=tenant, conversation=limited, role=Message.Role.USER)
    messages_path = f"/api/v1/conversations/{conversation.public_id}/messages"
    headers = {"HTTP_ORIGIN": ORIGIN}

    responses = {
        400: chat_client.post("/api/v1/conversations", {}, format="json", **headers),
        404: chat_client.get("/api/v1/conversations/conv_Jt1-8mVZ3tqy4Hq0cAqJfA", **headers),
        405: chat_client.put("/api/v1/conversations", {}, format="json", **headers),
        409: chat_client.post(
            f"/api/v1/conversations/{busy.public_id}/messages",
            {"text": "привіт"},
            format="json",
            **headers,
        ),
        411: chat_client.post(
            messages_path,
            {"text": "привіт"},
            format="json",
            HTTP_TRANSFER_ENCODING="chunked",
            **headers,
        ),
        413: chat_client.post(
            messages_path, {"text": "a" * (MAX_MESSAGE_BYTES + 1)}, format="json", **headers
        ),
        415: chat_client.post(messages_path, data="text=x", content_type="text/plain", **headers),
        429: chat_client.post(
            f"/api/v1/conversations/{limited.public_id}/messages",
            {"text": "привіт"},
            format="json",
            **headers,
        ),
    }

    for status, response in responses.items():
        assert response.status_code == status, response.content
        assert set(response.json()) >= {"detail", "code"}
        assert_actual_response_cors(response)
    assert responses[429]["Retry-After"] == str(responses[429].json()["retry_after"])


def test_unexpected_error_carries_cors_headers(chat_client, monkeypatch):
    def fail(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(conversation_apis, "conversation_create", fail)

    response = chat_client.post(
        "/api/v1/conversations", {"store_id": "store-1"}, format="json", HTTP_ORIGIN=ORIGIN
    )

    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert_actual_response_cors(response)


def test_deployment_allow_list_limits_cors(chat_client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example"]

    allowed = preflight("/api/v1/conversations", origin="https://SHOP.example:443")
    unlisted_preflight = preflight("/api/v1/conversations", origin="https://other.example")
    unlisted_request = chat_client.post(
        "/api/v1/conversations",
        {"store_id": "store-1"},
        format="json",
        HTTP_ORIGIN="https://other.example",
    )

    assert allowed.status_code == 204
    assert allowed["Access-Control-Allow-Origin"] == "https://SHOP.example:443"
    assert unlisted_preflight.status_code == 204
    assert unlisted_request.status_code == 201
    for header in CORS_HEADERS:
        assert header not in unlisted_preflight
        assert header not in unlisted_request
    assert UserDailyUsage.objects.count() == 1
