"""The error envelope for requests that never reach a view, and parser edge cases."""

import logging

import pytest

from catalog.models import CatalogJob
from conversations.models import Conversation
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("_case", "path"),
    [
        ("unknown route", "/api/v1/nope"),
        ("unknown version", "/api/v2/conversations"),
        ("trailing slash", "/api/v1/conversations/"),
        ("NUL in an id", "/api/v1/conversations/conv_x%00y"),
        ("malformed id", "/api/v1/conversations/not-an-id/messages"),
        ("NUL in a job id", "/api/v1/catalog/jobs/job_%00x"),
        ("malformed job id", "/api/v1/catalog/jobs/garbage"),
    ],
)
def test_unknown_api_paths_get_the_json_envelope(server_client, _case, path):
    response = server_client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/v1/conversations/{conversation}"),
        ("delete", "/api/v1/conversations/{conversation}"),
        ("get", "/api/v1/conversations/{conversation}/messages"),
        ("delete", "/api/v1/catalog/jobs/{job}"),
        ("put", "/api/v1/catalog/jobs/{job}"),
        ("get", "/api/v1/admin/conversations/{conversation}"),
    ],
)
def test_unsupported_method_on_other_tenants_id(server_client, other_tenant, method, path):
    conversation = ConversationFactory(tenant=other_tenant)
    job = CatalogJob.objects.create(tenant=other_tenant, source=CatalogJob.Source.API)
    conversation_before = Conversation.objects.filter(pk=conversation.pk).values().get()
    job_before = CatalogJob.objects.filter(pk=job.pk).values().get()

    foreign = getattr(server_client, method)(
        path.format(conversation=conversation.public_id, job=job.public_id)
    )
    unknown = getattr(server_client, method)(
        path.format(conversation="conv_unknown", job="job_unknown")
    )

    assert foreign.status_code == 405
    assert foreign.json() == {
        "detail": f'Method "{method.upper()}" not allowed.',
        "code": "method_not_allowed",
    }
    assert unknown.status_code == 405
    assert unknown.json() == foreign.json()
    assert Conversation.objects.filter(pk=conversation.pk).values().get() == conversation_before
    assert CatalogJob.objects.filter(pk=job.pk).values().get() == job_before


def test_deeply_nested_json_is_invalid_json(chat_client):
    body = "[" * 100_000 + "]" * 100_000

    response = chat_client.post("/api/v1/conversations", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


def test_a_body_over_the_upload_limit_is_payload_too_large(server_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = server_client.patch(
        "/api/v1/admin/webhooks",
        data='{"cart_url": "' + "x" * 2000 + '"}',
        content_type="application/json",
    )

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request body is larger than this server accepts.",
        "code": "payload_too_large",
        "max_bytes": 1000,
    }


def test_chunked_request_body_is_length_required(server_client):
    response = server_client.patch(
        "/api/v1/admin/webhooks",
        data='{"timeout_seconds": 9}',
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
    )

    assert response.status_code == 411
    assert response.json()["code"] == "length_required"


def test_compressed_request_body_is_unsupported(server_client):
    response = server_client.patch(
        "/api/v1/admin/webhooks",
        data='{"timeout_seconds": 9}',
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
    )

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert response["Accept-Encoding"] == "identity"


def test_disallowed_host_gets_a_json_hint(client, settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["shop.example.com"]

    response = client.get("/api/v1/catalog/jobs", HTTP_HOST="elsewhere.example.com")

    assert response.status_code == 400
    assert response.json() == {
        "detail": (
            "Bad request: the server rejected it before routing, for example because its Host"
            " header is not in DJANGO_ALLOWED_HOSTS."
        ),
        "code": "invalid_json",
    }


def test_overlong_json_integer_is_invalid_json(chat_client):
    body = '{"store_id": "shop", "user_id": ' + "9" * 5000 + "}"

    response = chat_client.post("/api/v1/conversations", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "JSON parse error - a number has more than 4300 digits.",
        "code": "invalid_json",
    }


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/catalog/jobs"])
def test_too_many_query_parameters_rejected(server_client, settings, caplog, path):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    query = "&".join(f"field{number}=1" for number in range(11))

    response = server_client.get(f"{path}?{query}")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The query string has more than 10 parameters; send at most 10.",
        "code": "invalid_json",
        "max_parameters": 10,
    }
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_query_parameters_at_limit_accepted(server_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    query = "&".join(["limit=5", *(f"field{number}=1" for number in range(9))])

    response = server_client.get(f"/api/v1/catalog/jobs?{query}")

    assert response.status_code == 200
    assert response.json() == []


def test_message_endpoint_ignores_long_query(chat_client, tenant, settings):
    # The OpenAPI description names the message endpoint as the one exception, because it
    # never reads its query string.
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    query = "&".join(f"field{number}=1" for number in range(11))
    conversation = ConversationFactory(tenant=tenant)

    response = chat_client.post(
        f"/api/v1/conversations/{conversation.public_id}/messages?{query}",
        {"text": "привіт"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["events"][-1] == {"type": "response_complete"}
    assert (
        "Every endpoint but the message endpoint, which ignores its query string, returns 400"
        " `invalid_json` for a query string of more than 1,000 parameters."
    ) in settings.SPECTACULAR_SETTINGS["DESCRIPTION"]
