"""Responses and request rules of the API compared with its OpenAPI document.

Each case is a request that schemathesis, fuzzing a live server from the document, found to
disagree with it. The document is checked with jsonschema against real responses.
"""

import json
import re

import jsonschema
import pytest
from drf_spectacular.generators import SchemaGenerator

from catalog.models import CatalogJob
from conversations.models import Conversation

CONVERSATIONS_URL = "/api/v1/conversations"
JOBS_URL = "/api/v1/catalog/jobs"
WEBHOOKS_URL = "/api/v1/admin/webhooks"

# Request bodies whose serializers reject a field they do not declare.
STRICT_REQUEST_COMPONENTS = [
    "AssistantSettingsUpdate",
    "ConversationCreate",
    "MessageCreate",
    "ProductUpload",
    "WebhookSecretRotation",
    "WebhookSettingsUpdate",
    "WebhookTestRequest",
    "WidgetSettings",
]


@pytest.fixture(scope="module")
def document() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _component_validator(document: dict, name: str) -> jsonschema.protocols.Validator:
    """Return a validator of one component that resolves the document's other components."""
    schema = {**document["components"]["schemas"][name], "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def _pattern_matches(pattern: str, value: str) -> bool:
    """Match as JSON Schema's ECMA-262 regular expressions do, where ``$`` is the end only.

    Python's ``$`` also matches before a final newline, so it becomes ``\\Z``.
    """
    if pattern.endswith("$"):
        pattern = pattern[:-1] + r"\Z"
    return re.search(pattern, value) is not None


def _query_parameter(document: dict, path: str, name: str) -> dict:
    parameters = document["paths"][path]["get"]["parameters"]
    return next(parameter for parameter in parameters if parameter["name"] == name)


@pytest.mark.parametrize("component", STRICT_REQUEST_COMPONENTS)
def test_strict_bodies_forbid_other_fields(document, component):
    assert document["components"]["schemas"][component]["additionalProperties"] is False


def test_unknown_field_rejected_as_documented(server_client, document):
    body = {"store_id": "store-1", "fields": {"store_id": "x"}}

    response = server_client.post(CONVERSATIONS_URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"fields": ["Unknown field."]}
    assert Conversation.objects.count() == 0
    assert not _component_validator(document, "ConversationCreate").is_valid(body)


def test_assistant_settings_match_the_document(server_client, document):
    body = {"temperature": 2, "disabled_tools": ["clear_cart"], "complex_model": "gpt-4.1"}

    patched = server_client.patch("/api/v1/admin/assistant", body, format="json")
    read = server_client.get("/api/v1/admin/assistant")

    validator = _component_validator(document, "AssistantSettings")
    assert patched.status_code == 200
    assert patched.json() == read.json()
    assert list(validator.iter_errors(read.json())) == []
    assert _component_validator(document, "AssistantSettingsUpdate").is_valid(body)


# Values at and just beyond each bound of the AI settings: the document and the server must
# both accept the first and both reject the second.
ASSISTANT_SETTINGS_BOUNDS = [
    ("complex_model", "m" * 200, "m" * 201),
    ("fast_model", "m" * 200, "m" * 201),
    ("system_prompt_addition", "p" * 4000, "p" * 4001),
    ("temperature", 0, -0.01),
    ("temperature", 2, 2.01),
    ("max_tool_rounds", 1, 0),
    ("max_tool_rounds", 20, 21),
    ("session_token_limit", 0, -1),
    ("session_token_limit", 2147483647, 2147483648),
    ("daily_token_limit", 2147483647, 2147483648),
    ("monthly_token_limit", 2147483647, 2147483648),
    ("user_daily_message_limit", 0, -1),
    ("user_daily_conversation_limit", 2147483647, 2147483648),
    ("rate_limit_messages", 0, -1),
    ("rate_limit_window_seconds", 1, 0),
    ("rate_limit_window_seconds", 3600, 3601),
]


@pytest.mark.parametrize(("field", "inside", "outside"), ASSISTANT_SETTINGS_BOUNDS)
def test_assistant_settings_bounds_documented(server_client, document, field, inside, outside):
    validator = _component_validator(document, "AssistantSettingsUpdate")

    accepted = server_client.patch("/api/v1/admin/assistant", {field: inside}, format="json")
    rejected = server_client.patch("/api/v1/admin/assistant", {field: outside}, format="json")

    assert validator.is_valid({field: inside})
    assert accepted.status_code == 200
    assert not validator.is_valid({field: outside})
    assert rejected.status_code == 400
    assert list(rejected.json()["fields"]) == [field]
    assert server_client.get("/api/v1/admin/assistant").json()[field] == inside


# store_id values with whether the API accepts them: an id is kept as sent, so it may not be
# blank, start or end with whitespace (as Python's str.strip() defines it) or contain a NUL.
STORE_IDS = [
    ("store-1", True),
    ("a b", True),
    ("x", True),
    ("", False),
    (" ", False),
    (" store", False),
    ("store\n", False),
    ("\x1cstore", False),
    ("store\x85", False),
    ("\u3000store", False),
    ("st\x00ore", False),
]


@pytest.mark.parametrize(("store_id", "accepted"), STORE_IDS)
def test_store_id_pattern_matches_api(server_client, document, store_id, accepted):
    pattern = document["components"]["schemas"]["ConversationCreate"]["properties"]["store_id"][
        "pattern"
    ]

    response = server_client.post(CONVERSATIONS_URL, {"store_id": store_id}, format="json")

    assert _pattern_matches(pattern, store_id) is accepted
    assert response.status_code == (201 if accepted else 400)
    assert Conversation.objects.count() == (1 if accepted else 0)


# Conversation languages with whether the API accepts them: one of three codes, or null.
LANGUAGES = [
    ("uk", True),
    ("en", True),
    ("ru", True),
    (None, True),
    ("de", False),
    ("RU", False),
    ("", False),
    (1, False),
]


@pytest.mark.parametrize(("language", "accepted"), LANGUAGES)
def test_language_enum_matches_api(server_client, document, language, accepted):
    body = {"store_id": "store-1", "language": language}

    response = server_client.post(CONVERSATIONS_URL, body, format="json")

    assert _component_validator(document, "ConversationCreate").is_valid(body) is accepted
    assert response.status_code == (201 if accepted else 400)
    assert Conversation.objects.count() == (1 if accepted else 0)


# Message texts with whether the API accepts them: not blank after trimming, no NUL.
MESSAGE_TEXTS = [
    ("milk", True),
    ("  milk ", True),
    ("", False),
    (" \t\n", False),
    ("\x1f\u2028", False),
    ("mi\x00lk", False),
]


@pytest.mark.parametrize(("text", "accepted"), MESSAGE_TEXTS)
def test_message_text_pattern_matches_api(document, text, accepted):
    pattern = document["components"]["schemas"]["MessageCreate"]["properties"]["text"]["pattern"]

    assert _pattern_matches(pattern, text) is accepted


def test_message_text_pattern_rejections(server_client, document):
    conversation_id = server_client.post(
        CONVERSATIONS_URL, {"store_id": "store-1"}, format="json"
    ).json()["conversation_id"]
    url = f"{CONVERSATIONS_URL}/{conversation_id}/messages"

    for text, accepted in MESSAGE_TEXTS:
        if accepted:
            continue
        response = server_client.post(url, {"text": text}, format="json")
        assert response.status_code == 400, text
        assert response.json()["code"] == "invalid_json", text
    conversation = Conversation.objects.get(public_id=conversation_id)
    assert conversation.messages.count() == 0


def _sse_messages(body: str) -> list[dict]:
    """Return the fields of each message of an SSE body, without its comments."""
    messages = []
    for block in body.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            messages.append(dict(line.split(": ", 1) for line in lines))
    return messages


def test_streamed_reply_matches_schema(server_client, document):
    conversation_id = server_client.post(
        CONVERSATIONS_URL, {"store_id": "store-1"}, format="json"
    ).json()["conversation_id"]
    operation = document["paths"]["/api/v1/conversations/{conversation_id}/messages"]["post"]
    stream_schema = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]
    message_validator = jsonschema.Draft202012Validator(stream_schema)
    event_validator = _component_validator(document, "ChatEvent")

    response = server_client.post(
        f"{CONVERSATIONS_URL}/{conversation_id}/messages",
        {"text": "milk"},
        format="json",
        HTTP_ACCEPT="text/event-stream",
    )

    assert response.status_code == 200
    messages = _sse_messages(b"".join(response.streaming_content).decode())
    assert messages[-1]["event"] == "response_complete"
    for message in messages:
        assert list(message_validator.iter_errors(message)) == []
        assert list(event_validator.iter_errors(json.loads(message["data"]))) == []


def test_unset_webhook_urls_match_schema(server_client, document):
    # The tenant fixture's webhook settings have a secret and no URLs.
    response = server_client.get(WEBHOOKS_URL)

    assert response.status_code == 200
    body = response.json()
    assert body["products_url"] == ""
    assert body["cart_url"] == ""
    assert body["cart_get_url"] == ""
    properties = document["components"]["schemas"]["WebhookSettings"]["properties"]
    for name in ("products_url", "cart_url", "cart_get_url"):
        assert properties[name]["type"] == "string"
        assert "format" not in properties[name]
    validator = _component_validator(document, "WebhookSettings")
    validator.format_checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    assert list(validator.iter_errors(body)) == []


def test_empty_status_lists_every_job(server_client, tenant, document):
    for job_status in (CatalogJob.Status.PENDING, CatalogJob.Status.COMPLETE):
        CatalogJob.objects.create(
            tenant=tenant, source=CatalogJob.Source.API, status=job_status, total=1
        )

    response = server_client.get(JOBS_URL, {"status": "", "before": "", "limit": ""})

    assert response.status_code == 200
    assert sorted(job["status"] for job in response.json()) == ["complete", "pending"]
    for name in ("status", "before", "limit"):
        assert _query_parameter(document, JOBS_URL, name)["allowEmptyValue"] is True


def test_nul_in_before_rejected_as_schema_says(server_client, document):
    pattern = _query_parameter(document, JOBS_URL, "before")["schema"]["pattern"]

    response = server_client.get(JOBS_URL, {"before": "job_\x00"})

    assert response.status_code == 400
    assert response.json()["fields"] == {"before": ["Null characters are not allowed."]}
    assert not _pattern_matches(pattern, "job_\x00")
    assert _pattern_matches(pattern, "job_abc")
