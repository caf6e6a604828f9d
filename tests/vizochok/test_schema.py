"""The OpenAPI document at /api/v1/schema and its coverage of the API's routes."""

import json
import re
from pathlib import Path

import pytest
import yaml
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from vizochok.openapi import SchemaApi
from vizochok.views import ApiNotFound

REPOSITORY = Path(__file__).resolve().parents[2]
SCHEMA_URL = "/api/v1/schema"
ERROR_REF = "#/components/schemas/Error"
CHAT_SECURITY = [{"publicKey": ["chat"]}, {"secretKey": ["chat"]}]
CATALOG_SECURITY = [{"secretKey": ["catalog"]}]
ADMIN_SECURITY = [{"secretKey": []}]


@pytest.fixture(scope="module")
def document() -> dict:
    GENERATOR_STATS.reset()
    return SchemaGenerator().get_schema(request=None, public=True)


def _walk(patterns: list, prefix: str):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            assert isinstance(pattern, URLPattern)
            yield prefix + str(pattern.pattern), pattern


def _api_routes() -> list[tuple[str, type]]:
    """Return (OpenAPI path, view class) of every route under /api/v1/ that has operations."""
    routes = []
    for route, pattern in _walk(get_resolver().url_patterns, "/"):
        view_class = getattr(pattern.callback, "cls", None)
        if not route.startswith("/api/v1/") or view_class in (ApiNotFound, SchemaApi):
            continue
        routes.append((re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route), view_class))
    return routes


def _view_methods(view_class: type) -> set[str]:
    return {
        method
        for method in view_class.http_method_names
        if method not in ("options", "head") and hasattr(view_class, method)
    }


def test_schema_is_yaml_without_api_key(client):
    response = client.get(SCHEMA_URL)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    body = yaml.safe_load(response.content)
    assert body["openapi"] == "3.1.0"
    assert body["info"]["title"] == "Vizochok API"
    assert body["info"]["version"] == "1"
    assert '{"detail", "code"}' in body["info"]["description"]


def test_schema_is_json_on_request(client):
    yaml_body = yaml.safe_load(client.get(SCHEMA_URL).content)

    by_format = client.get(SCHEMA_URL, {"format": "json"})
    by_accept = client.get(SCHEMA_URL, headers={"Accept": "application/json"})

    assert by_format.status_code == 200
    assert by_format["Content-Type"] == "application/vnd.oai.openapi+json"
    assert json.loads(by_format.content) == yaml_body
    assert by_accept.status_code == 200
    assert by_accept["Content-Type"] == "application/json"
    assert json.loads(by_accept.content) == yaml_body


def test_schema_ignores_invalid_authorization(client):
    response = client.get(SCHEMA_URL, headers={"Authorization": "Bearer sk_live_unknown"})

    assert response.status_code == 200


def test_schema_rejects_other_methods(client):
    response = client.post(SCHEMA_URL, data={}, content_type="application/json")

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": 'Method "POST" not allowed.',
        "code": "method_not_allowed",
    }


def test_schema_unacceptable_accept_gets_json_error(client):
    response = client.get(SCHEMA_URL, headers={"Accept": "text/html"})

    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_acceptable"


def test_resolver_walk_finds_api_routes():
    paths = {path for path, _ in _api_routes()}

    assert "/api/v1/conversations/{conversation_id}/messages" in paths
    assert "/api/v1/catalog/jobs/{job_id}" in paths
    assert "/api/v1/health" in paths


def test_every_api_route_has_path(document):
    for path, view_class in _api_routes():
        assert path in document["paths"], path
        assert set(document["paths"][path]) == _view_methods(view_class), path


def test_document_has_only_api_routes(document):
    routes = {path for path, _ in _api_routes()}

    assert set(document["paths"]) == routes
    assert "/api/v1/ws/chat" not in document["paths"]
    assert SCHEMA_URL not in document["paths"]


def test_generator_emits_no_warnings(document):
    assert not GENERATOR_STATS, (
        f"warnings: {dict(GENERATOR_STATS._warn_cache)}, "
        f"errors: {dict(GENERATOR_STATS._error_cache)}"
    )
    validate_schema(document)


def test_error_component_has_detail_and_code(document):
    error = document["components"]["schemas"]["Error"]

    assert set(error["properties"]) == {"detail", "code"}
    assert error["properties"]["detail"]["type"] == "string"
    assert error["properties"]["code"]["type"] == "string"
    assert sorted(error["required"]) == ["code", "detail"]


def test_error_statuses_use_error_component(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, status)


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("get", "/api/v1/health", {"200", "503"}),
        ("get", "/api/v1/admin/webhooks", {"200", "401", "403"}),
        ("patch", "/api/v1/admin/webhooks", {"200", "400", "401", "403", "413"}),
        ("post", "/api/v1/admin/webhooks/rotate-secret", {"200", "400", "401", "403", "413"}),
        ("post", "/api/v1/admin/webhooks/test", {"200", "400", "401", "403", "413"}),
        ("get", "/api/v1/admin/widget", {"200", "401", "403"}),
        ("patch", "/api/v1/admin/widget", {"200", "400", "401", "403", "413"}),
        (
            "get",
            "/api/v1/admin/shoppers/{user_id}/conversations",
            {"200", "400", "401", "403", "404"},
        ),
        ("delete", "/api/v1/admin/shoppers/{user_id}", {"200", "400", "401", "403", "409"}),
        (
            "delete",
            "/api/v1/admin/conversations/{conversation_id}",
            {"200", "401", "403", "404", "409"},
        ),
        ("put", "/api/v1/catalog/products", {"202", "400", "401", "403", "413"}),
        ("get", "/api/v1/catalog/jobs", {"200", "400", "401", "403", "404"}),
        ("get", "/api/v1/catalog/jobs/{job_id}", {"200", "401", "403", "404"}),
        ("post", "/api/v1/conversations", {"201", "400", "401", "403", "413", "429"}),
        ("get", "/api/v1/conversations/{conversation_id}", {"200", "400", "401", "403", "404"}),
        (
            "post",
            "/api/v1/conversations/{conversation_id}/messages",
            {"200", "400", "401", "403", "404", "409", "413", "422", "429"},
        ),
    ],
)
def test_operation_statuses(document, method, path, statuses):
    assert set(document["paths"][path][method]["responses"]) == statuses


@pytest.mark.parametrize(
    ("method", "path", "security"),
    [
        ("get", "/api/v1/admin/webhooks", ADMIN_SECURITY),
        ("post", "/api/v1/admin/webhooks/test", ADMIN_SECURITY),
        ("patch", "/api/v1/admin/widget", ADMIN_SECURITY),
        ("get", "/api/v1/admin/shoppers/{user_id}/conversations", ADMIN_SECURITY),
        ("delete", "/api/v1/admin/shoppers/{user_id}", ADMIN_SECURITY),
        ("delete", "/api/v1/admin/conversations/{conversation_id}", ADMIN_SECURITY),
        ("put", "/api/v1/catalog/products", CATALOG_SECURITY),
        ("get", "/api/v1/catalog/jobs/{job_id}", CATALOG_SECURITY),
        ("post", "/api/v1/conversations", CHAT_SECURITY),
        ("post", "/api/v1/conversations/{conversation_id}/messages", CHAT_SECURITY),
    ],
)
def test_operation_security(document, method, path, security):
    assert document["paths"][path][method]["security"] == security


def test_health_needs_no_key(document):
    assert "security" not in document["paths"]["/api/v1/health"]["get"]


def test_security_schemes_are_bearer_keys(document):
    schemes = document["components"]["securitySchemes"]

    assert set(schemes) == {"publicKey", "secretKey"}
    assert schemes["publicKey"]["type"] == "http"
    assert schemes["publicKey"]["scheme"] == "bearer"
    assert schemes["secretKey"]["type"] == "http"
    assert schemes["secretKey"]["scheme"] == "bearer"


def test_message_reply_can_stream(document):
    operation = document["paths"]["/api/v1/conversations/{conversation_id}/messages"]["post"]
    content = operation["responses"]["200"]["content"]

    assert set(content) == {"application/json", "text/event-stream"}
    stream_schema = content["text/event-stream"]["schema"]
    assert stream_schema["required"] == ["event", "data"]
    assert stream_schema["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/ChatEvent"
    }
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/MessageReply"}


def test_message_lists_idempotency_key_header(document):
    operation = document["paths"]["/api/v1/conversations/{conversation_id}/messages"]["post"]

    [header] = [parameter for parameter in operation["parameters"] if parameter["in"] == "header"]
    assert header["name"] == "Idempotency-Key"
    # OpenAPI 3.1 reads a parameter without "required" as optional.
    assert "required" not in header
    assert header["schema"] == {"type": "string"}


def test_product_upload_body_lists_products(document):
    schemas = document["components"]["schemas"]
    operation = document["paths"]["/api/v1/catalog/products"]["put"]

    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProductUpload"
    }
    assert schemas["ProductUpload"]["properties"]["products"]["items"] == {
        "$ref": "#/components/schemas/ProductInput"
    }
    assert schemas["ProductInput"]["required"] == ["sku", "name"]


def test_widget_patch_requires_origins(document):
    operation = document["paths"]["/api/v1/admin/widget"]["patch"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]

    assert body == {"$ref": "#/components/schemas/WidgetSettings"}
    assert document["components"]["schemas"]["WidgetSettings"]["required"] == [
        "widget_allowed_origins"
    ]


def test_docs_name_schema_url():
    openapi_page = (REPOSITORY / "docs" / "openapi.md").read_text(encoding="utf-8")
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")

    assert f"curl -s http://127.0.0.1:8000{SCHEMA_URL}" in openapi_page
    assert "docs/openapi.md" in readme


def test_catalog_job_errors_are_strings(document):
    errors = document["components"]["schemas"]["CatalogJob"]["properties"]["errors"]

    assert errors["type"] == "array"
    assert errors["items"] == {"type": "string"}


def test_cart_nullable_fields_use_null_type(document):
    cart = document["components"]["schemas"]["ConversationPage"]["properties"]["cart"]
    item = cart["properties"]["items"]["items"]

    assert cart["required"] == ["items", "total"]
    assert item["properties"]["promo_price"]["type"] == ["number", "null"]
    assert item["properties"]["brand"]["type"] == ["string", "null"]
    assert item["properties"]["sku"]["type"] == "string"
    assert "nullable" not in item["properties"]["promo_price"]


@pytest.mark.parametrize("component", ["ConversationCreated", "ConversationPage"])
def test_assistant_field_lists_assistant_names(document, component):
    schemas = document["components"]["schemas"]
    field = schemas[component]["properties"]["assistant"]

    assert field["allOf"] == [{"$ref": "#/components/schemas/AssistantEnum"}]
    assert schemas["AssistantEnum"] == {"enum": ["agent", "offline"], "type": "string"}
