"""Tenant isolation, route by route and model by model.

The tables below list every URL route and every WebSocket route with the tests that show
that one tenant's key cannot read or change another tenant's data there, or with the reason
why the route has no tenant data. The first tests compare the tables with the resolver and
the models, so a new route or model fails here until it is listed with its cross-tenant test.
The last test runs tenant B's secret key against every tenant route with tenant A's ids.
"""

import importlib
import json
from urllib.parse import quote

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import models
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.test import APIClient

from catalog.models import CatalogJob
from conversations.models import Conversation, Message
from conversations.routing import websocket_urlpatterns
from tenants.models import AssistantSettings, Tenant, WebhookSettings
from tests.factories import TokenUsageFactory
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

THIS_MODULE = "tests/vizochok/test_tenant_isolation.py"

# Routes that read or change one tenant's data, with the tests that use another tenant's key
# against them. Every route here is also called by test_other_tenants_key_changes_nothing.
TENANT_ROUTES: dict[str, tuple[str, ...]] = {
    "api/v1/admin/webhooks": (
        "tests/tenants/test_apis.py::test_patch_changes_only_the_callers_tenant",
        "tests/tenants/test_apis.py::test_get_returns_only_the_callers_settings",
    ),
    "api/v1/admin/webhooks/rotate-secret": (
        "tests/tenants/test_apis.py::test_rotate_secret_with_overlap",
    ),
    "api/v1/admin/webhooks/test": (
        "tests/webhooks/test_diagnostics.py::test_test_reaches_only_the_callers_webhooks",
        "tests/webhooks/test_diagnostics.py::test_test_sends_only_the_callers_skus",
    ),
    "api/v1/admin/widget": ("tests/tenants/test_widget_origins.py::test_api_key_scoped_to_tenant",),
    "api/v1/admin/assistant": (
        "tests/tenants/test_assistant_settings_api.py::test_key_reads_and_changes_only_its_tenant",
    ),
    "api/v1/admin/usage": (
        "tests/tenants/test_token_usage_api.py::test_key_reads_only_its_tenant",
        f"{THIS_MODULE}::test_other_tenants_key_changes_nothing",
    ),
    "api/v1/admin/shoppers/<path:user_id>/conversations": (
        "tests/tenants/test_shopper_data.py::test_other_tenant_cannot_see_or_delete",
        "tests/tenants/test_shopper_data.py::test_export_before_of_other_tenant_is_not_found",
    ),
    "api/v1/admin/shoppers/<path:user_id>": (
        "tests/tenants/test_shopper_data.py::test_other_tenant_cannot_see_or_delete",
        "tests/tenants/test_shopper_data.py::test_other_tenants_busy_conversation_is_hidden",
    ),
    "api/v1/admin/conversations/<public_id:conversation_id>": (
        "tests/tenants/test_shopper_data.py::test_other_tenant_cannot_see_or_delete",
        "tests/tenants/test_shopper_data.py::test_other_tenants_busy_conversation_is_hidden",
    ),
    "api/v1/catalog/products": (
        "tests/catalog/test_api.py::test_other_tenant_upload_keeps_own_products",
    ),
    "api/v1/catalog/jobs": (
        "tests/catalog/test_api.py::test_other_tenant_cannot_read_job",
        "tests/catalog/test_api.py::test_job_list_before_unknown_job_is_not_found",
    ),
    "api/v1/catalog/jobs/<public_id:job_id>": (
        "tests/catalog/test_api.py::test_other_tenant_cannot_read_job",
    ),
    "api/v1/conversations": (
        "tests/conversations/test_api.py::test_conversations_are_created_for_the_key_tenant",
    ),
    "api/v1/conversations/<public_id:conversation_id>": (
        "tests/conversations/test_api.py::test_other_tenant_cannot_read_a_conversation",
        "tests/conversations/test_api.py::test_detail_before_of_other_tenant_is_invalid",
    ),
    "api/v1/conversations/<public_id:conversation_id>/messages": (
        "tests/conversations/test_api.py::test_other_tenant_cannot_post_to_a_conversation",
        "tests/conversations/test_api.py::test_other_tenant_cannot_stream_to_a_conversation",
        "tests/conversations/test_idempotency.py::test_other_tenant_cannot_replay_with_a_key",
        "tests/conversations/test_idempotency.py::test_key_of_other_tenant_does_not_match",
    ),
}

# Routes without tenant data, with the reason.
ROUTES_WITHOUT_TENANT_DATA: dict[str, str] = {
    "api/v1/health": "reports whether the database answers; takes no key",
    "api/v1/schema": "the OpenAPI document, the same for every caller",
    "api/v1/": "JSON 404 for any other path under /api/v1/; reads nothing",
    "^api/": "JSON 404 for any other path under /api/; reads nothing",
    "widget/v1/vizochok-widget.js": "the widget script, a static file",
    "widget/demo/": "a static page that reads its keys from the URL fragment in the browser",
}

# The Django admin is for the operators of a deployment, not for retailers. A superuser can
# view every tenant, and a staff user only the models it has permissions on
# (docs/tenants.md). Every route under "admin/" is this kind.
ADMIN_PREFIX = "admin/"
ADMIN_TESTS = (
    "tests/tenants/test_admin.py::test_staff_without_permissions_sees_nothing",
    "tests/tenants/test_admin.py::test_api_keys_do_not_open_the_admin",
    f"{THIS_MODULE}::test_admin_pages_need_model_permissions",
    f"{THIS_MODULE}::test_admin_changelists_show_the_tenant",
)

WEBSOCKET_ROUTES: dict[str, tuple[str, ...]] = {
    "api/v1/ws/chat": (
        "tests/conversations/test_websocket.py::test_tenant_isolation",
        "tests/conversations/test_websocket.py::test_other_tenants_conversation_state_is_hidden",
        "tests/conversations/test_websocket_idempotency.py::test_other_tenant_cannot_replay",
        "tests/conversations/test_websocket_idempotency.py::test_other_tenant_key_means_nothing",
    ),
}

# Models of this project without a tenant foreign key, with the reason.
MODELS_WITHOUT_TENANT: dict[str, str] = {
    "tenants.Tenant": "the tenant itself",
    "vizochok.LoginFailureCount": "failed admin logins per user name and network, for operators",
}

PROJECT_APPS = ("vizochok", "tenants", "catalog", "webhooks", "conversations")


def _url_routes(patterns, prefix: str = "") -> list[tuple[str, URLPattern]]:
    routes = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            routes.extend(_url_routes(pattern.url_patterns, route))
        else:
            routes.append((route, pattern))
    return routes


def _test_exists(node_id: str) -> bool:
    path, name = node_id.split("::")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return callable(getattr(module, name, None))


def _tenant_owned_models() -> list[type[models.Model]]:
    owned = []
    for app_label in PROJECT_APPS:
        for model in apps.get_app_config(app_label).get_models():
            field = next((f for f in model._meta.fields if f.name == "tenant"), None)
            if field is not None and field.related_model is Tenant:
                owned.append(model)
    return owned


# --- Inventory ------------------------------------------------------------------------------


def test_every_url_route_is_listed():
    routes = [route for route, _ in _url_routes(get_resolver().url_patterns)]
    unlisted = [
        route
        for route in routes
        if route not in TENANT_ROUTES
        and route not in ROUTES_WITHOUT_TENANT_DATA
        and not route.startswith(ADMIN_PREFIX)
    ]

    assert unlisted == []
    assert set(TENANT_ROUTES) - set(routes) == set()
    assert set(ROUTES_WITHOUT_TENANT_DATA) - set(routes) == set()


def test_admin_routes_belong_to_the_admin_site():
    admin_views = {
        pattern.lookup_str
        for route, pattern in _url_routes(get_resolver().url_patterns)
        if route.startswith(ADMIN_PREFIX)
    }
    foreign = {
        view
        for view in admin_views
        if not view.startswith(("django.contrib.", "vizochok.admin.", "django.views.generic."))
    }

    assert foreign == set()


def test_every_websocket_route_is_listed():
    routes = {route for route, _ in _url_routes(websocket_urlpatterns)}

    assert routes == set(WEBSOCKET_ROUTES)


def test_listed_tests_exist():
    node_ids = [
        *(node for nodes in TENANT_ROUTES.values() for node in nodes),
        *(node for nodes in WEBSOCKET_ROUTES.values() for node in nodes),
        *ADMIN_TESTS,
    ]
    missing = [node_id for node_id in node_ids if not _test_exists(node_id)]

    assert all(nodes for nodes in TENANT_ROUTES.values())
    assert all(nodes for nodes in WEBSOCKET_ROUTES.values())
    assert missing == []


def test_every_model_has_a_tenant():
    owned = {model._meta.label for model in _tenant_owned_models()}
    unowned = {
        model._meta.label
        for app_label in PROJECT_APPS
        for model in apps.get_app_config(app_label).get_models()
        if model._meta.label not in owned
    }

    assert unowned == set(MODELS_WITHOUT_TENANT)


def test_tenant_columns_are_not_null():
    nullable = [
        model._meta.label
        for model in _tenant_owned_models()
        if model._meta.get_field("tenant").null
    ]

    assert nullable == []


# --- The admin ------------------------------------------------------------------------------


def test_admin_pages_need_model_permissions(client):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    changelists = [
        f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for model in admin.site._registry
    ]

    statuses = {url: client.get(url).status_code for url in changelists}

    assert len(changelists) >= 8
    assert statuses == {url: 403 for url in changelists}


def test_admin_changelists_show_the_tenant():
    """Every changelist of a tenant's rows shows the tenant, so that none is mistaken."""
    missing = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if model in _tenant_owned_models() and "tenant" not in model_admin.list_display
    ]

    assert missing == []


# --- Tenant B's key against tenant A's ids ----------------------------------------------------

SHOPPER = "shopper/1"
IDEMPOTENCY_KEY = "order-1"
SKU = "milk-1"


def _key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def _tenant_rows(tenant: Tenant) -> dict[str, list[dict[str, object]]]:
    rows = {
        model._meta.label: list(model.objects.filter(tenant=tenant).order_by("pk").values())
        for model in _tenant_owned_models()
    }
    rows["tenants.Tenant"] = list(Tenant.objects.filter(pk=tenant.pk).values())
    return rows


def _seed(client, *, product_name: str, text: str) -> dict[str, str]:
    """Upload one product, start the shopper's conversation and send one message."""
    upload = client.put(
        "/api/v1/catalog/products",
        {"products": [{"sku": SKU, "name": product_name, "category_path": "Dairy"}]},
        format="json",
    )
    created = client.post(
        "/api/v1/conversations", {"store_id": "store-1", "user_id": SHOPPER}, format="json"
    )
    conversation_id = created.json()["conversation_id"]
    reply = client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        {"text": text},
        format="json",
        HTTP_IDEMPOTENCY_KEY=IDEMPOTENCY_KEY,
    )
    assert upload.status_code == 202
    assert created.status_code == 201
    assert reply.status_code == 200
    return {
        "job_id": upload.json()["job_id"],
        "conversation_id": conversation_id,
        "message_id": reply.json()["message_id"],
    }


def test_other_tenants_key_changes_nothing(
    tenant, other_tenant, secret_key, other_secret_key, merchant
):
    ours = _key_client(secret_key.raw_key)
    theirs = _key_client(other_secret_key.raw_key)
    settings = AssistantSettings.objects.get(tenant=tenant)
    settings.system_prompt_addition = "Prompt of shop A only."
    settings.daily_token_limit = 987_654
    settings.save()
    TokenUsageFactory(tenant=tenant, prompt_tokens=7_654_321, completion_tokens=1, requests=1)
    Tenant.objects.filter(pk=tenant.pk).update(widget_allowed_origins=["https://a.example"])
    a_ids = _seed(ours, product_name="Молоко магазину A", text="молоко магазину A")
    b_ids = _seed(theirs, product_name="Молоко магазину B", text="молоко магазину B")
    a_rows = _tenant_rows(tenant)
    a_merchant_requests = len(merchant.requests)
    a_secret = WebhookSettings.objects.get(tenant=tenant).secret
    a_message_ids = list(Message.objects.filter(tenant=tenant).values_list("public_id", flat=True))
    # Text that only tenant A's rows contain. A response to tenant B that contains one leaks it,
    # unless tenant B sent that text itself, as the ids in 404 messages.
    a_only = [
        a_ids["job_id"],
        a_ids["conversation_id"],
        *a_message_ids,
        a_secret,
        "Prompt of shop A only.",
        "987654",
        "7654321",
        "7654322",
        "https://a.example",
        "магазину A",
        merchant.products_url,
    ]
    shopper_url = f"/api/v1/admin/shoppers/{quote(SHOPPER, safe='')}"
    calls = [
        ("get", "/api/v1/admin/webhooks", None, 200),
        ("patch", "/api/v1/admin/webhooks", {"timeout_seconds": 7}, 200),
        ("post", "/api/v1/admin/webhooks/rotate-secret", {"overlap_hours": 1}, 200),
        ("post", "/api/v1/admin/webhooks/test", {"kind": "products"}, 400),
        ("get", "/api/v1/admin/widget", None, 200),
        ("patch", "/api/v1/admin/widget", {"widget_allowed_origins": ["https://b.example"]}, 200),
        ("get", "/api/v1/admin/assistant", None, 200),
        ("patch", "/api/v1/admin/assistant", {"max_tool_rounds": 3}, 200),
        ("get", "/api/v1/admin/usage?days=366", None, 200),
        ("get", f"{shopper_url}/conversations", None, 200),
        ("get", f"{shopper_url}/conversations?before={a_ids['conversation_id']}", None, 404),
        ("delete", f"/api/v1/admin/conversations/{a_ids['conversation_id']}", None, 404),
        ("put", "/api/v1/catalog/products", {"products": [{"sku": SKU, "name": "B"}]}, 202),
        ("get", "/api/v1/catalog/jobs", None, 200),
        ("get", f"/api/v1/catalog/jobs?before={a_ids['job_id']}", None, 404),
        ("get", f"/api/v1/catalog/jobs/{a_ids['job_id']}", None, 404),
        ("post", "/api/v1/conversations", {"store_id": "store-1", "user_id": SHOPPER}, 201),
        ("get", f"/api/v1/conversations/{a_ids['conversation_id']}", None, 404),
        (
            "get",
            f"/api/v1/conversations/{b_ids['conversation_id']}?before={a_ids['message_id']}",
            None,
            400,
        ),
        ("post", f"/api/v1/conversations/{a_ids['conversation_id']}/messages", {"text": "x"}, 404),
        (
            "post",
            f"/api/v1/conversations/{b_ids['conversation_id']}/messages",
            {"text": "молоко магазину B"},
            200,
        ),
        # Last, because it erases tenant B's shopper with the same user id.
        ("delete", shopper_url, None, 200),
    ]

    routes = set()
    leaks = []
    statuses = []
    for method, url, body, expected_status in calls:
        response = getattr(theirs, method)(
            url, body, format="json", HTTP_IDEMPOTENCY_KEY=IDEMPOTENCY_KEY
        )
        routes.add(resolve(url.split("?")[0]).route)
        statuses.append((method, url, response.status_code, expected_status))
        sent = url + json.dumps(body, ensure_ascii=False)
        leaks.extend(
            (method, url, text) for text in a_only if text not in sent and text in response.text
        )

    assert [(m, u, got) for m, u, got, expected in statuses if got != expected] == []
    assert leaks == []
    assert set(TENANT_ROUTES) - routes == set()
    assert _tenant_rows(tenant) == a_rows
    assert len(merchant.requests) == a_merchant_requests
    assert not WebhookDelivery.objects.filter(tenant=other_tenant).exists()
    assert Conversation.objects.filter(tenant=other_tenant).count() == 0
    assert CatalogJob.objects.filter(tenant=other_tenant).count() == 2


def test_child_rows_share_the_parents_tenant(
    tenant, other_tenant, secret_key, other_secret_key, merchant
):
    """Rows that point at another tenant-owned row belong to that row's tenant."""
    _seed(_key_client(secret_key.raw_key), product_name="Молоко", text="молоко")
    _seed(_key_client(other_secret_key.raw_key), product_name="Молоко", text="молоко")
    owned = _tenant_owned_models()
    mismatched = {}
    checked = []
    for model in owned:
        for field in model._meta.fields:
            if field.name == "tenant" or field.related_model not in owned:
                continue
            checked.append(f"{model._meta.label}.{field.name}")
            other = models.F(f"{field.name}__tenant_id")
            mismatched[checked[-1]] = model.objects.exclude(tenant_id=other).count()

    assert "conversations.Message.conversation" in checked
    assert "conversations.OpenSocket.api_key" in checked
    assert mismatched == {label: 0 for label in checked}
