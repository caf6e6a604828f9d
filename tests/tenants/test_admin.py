"""Tenants added and changed in the Django admin."""

import uuid

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import CatalogJob, Product
from conversations.models import Conversation, Message
from tenants.admin import AssistantSettingsForm, TenantForm, WebhookSettingsForm
from tenants.models import ApiKey, AssistantSettings, Tenant, WebhookSettings
from tenants.services import api_key_revoke, row_version, tenant_create
from tests.factories import (
    ASSISTANT_SETTINGS_FORM_DEFAULTS,
    MessageFactory,
    ProductFactory,
    TenantFactory,
)
from webhooks.models import CircuitBreaker, WebhookDelivery

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/tenants/tenant/add/"


def tenant_form(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Shop C",
        "slug": "shop-c",
        "is_active": "on",
        "assistant_settings-TOTAL_FORMS": 0,
        "assistant_settings-INITIAL_FORMS": 0,
        "assistant_settings-MIN_NUM_FORMS": 0,
        "assistant_settings-MAX_NUM_FORMS": 1,
    }
    return {**data, **changes}


def page_version(row: Tenant | AssistantSettings | WebhookSettings) -> str:
    """Return the version that a change page of ``row`` opened now carries."""
    form = {
        Tenant: TenantForm,
        AssistantSettings: AssistantSettingsForm,
        WebhookSettings: WebhookSettingsForm,
    }[type(row)]
    stored = type(row)._default_manager.get(pk=row.pk)
    return row_version(row=stored, fields=form.version_fields)


def secret_messages(response) -> list[str]:
    return [
        str(message)
        for message in response.context["messages"]
        if "User token secret" in str(message)
    ]


def test_admin_add_generates_user_token_secret(admin_client):
    response = admin_client.post(ADD_URL, tenant_form(), follow=True)

    tenant = Tenant.objects.get(slug="shop-c")
    assert response.status_code == 200
    assert len(tenant.user_token_secret) == 43
    assert tenant.user_token_secret_updated_at is not None
    assert secret_messages(response) == [
        "User token secret for Shop C (shown only now, copy it to your backend): "
        f"{tenant.user_token_secret}"
    ]


def test_admin_secret_message_sets_no_cookie(admin_client):
    response = admin_client.post(ADD_URL, tenant_form())

    tenant = Tenant.objects.get(slug="shop-c")
    assert response.status_code == 302
    assert "messages" not in response.cookies
    assert all(tenant.user_token_secret not in cookie.value for cookie in response.cookies.values())
    next_page = admin_client.get(response["Location"])
    assert tenant.user_token_secret in next_page.content.decode()


def test_admin_change_keeps_user_token_secret(admin_client, tenant):
    tenant.user_token_secret = "s" * 43
    tenant.save(update_fields=["user_token_secret"])
    change_url = f"/admin/tenants/tenant/{tenant.pk}/change/"
    data = tenant_form(
        name="Shop A renamed",
        slug=tenant.slug,
        version=page_version(tenant),
        **{"assistant_settings-TOTAL_FORMS": 0, "assistant_settings-INITIAL_FORMS": 0},
    )

    response = admin_client.post(change_url, data, follow=True)

    tenant.refresh_from_db()
    assert response.status_code == 200
    assert tenant.name == "Shop A renamed"
    assert tenant.user_token_secret == "s" * 43
    assert secret_messages(response) == []


def test_admin_add_invalid_tenant_generates_nothing(admin_client):
    response = admin_client.post(ADD_URL, tenant_form(slug="bad slug"))

    assert response.status_code == 200
    assert not Tenant.objects.filter(name="Shop C").exists()
    assert secret_messages(response) == []


def used_tenant(tenant: Tenant) -> Tenant:
    """Give ``tenant`` a product, a catalog job, a chat, a webhook delivery and a breaker."""
    ProductFactory(tenant=tenant, sku="milk-1", name="Молоко")
    CatalogJob.objects.create(tenant=tenant, source=CatalogJob.Source.API, total=1)
    MessageFactory(conversation__tenant=tenant)
    WebhookDelivery.objects.create(
        tenant=tenant,
        kind="products",
        call_id=uuid.uuid4(),
        delivery_id=uuid.uuid4(),
        url="https://shop.example/products",
        attempt=1,
        status_code=200,
        outcome="success",
        duration_ms=12,
    )
    CircuitBreaker.objects.create(tenant=tenant, kind="products")
    return tenant


def test_admin_deletes_used_tenant(admin_client, tenant, other_tenant):
    used_tenant(tenant)
    used_tenant(other_tenant)
    delete_url = f"/admin/tenants/tenant/{tenant.pk}/delete/"

    page = admin_client.get(delete_url)
    response = admin_client.post(delete_url, {"post": "yes"})

    assert page.status_code == 200
    assert "Are you sure" in page.content.decode()
    assert response.status_code == 302
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert not Conversation.objects.filter(tenant_id=tenant.pk).exists()
    assert not Message.objects.filter(tenant_id=tenant.pk).exists()
    assert not WebhookDelivery.objects.filter(tenant_id=tenant.pk).exists()
    assert not CircuitBreaker.objects.filter(tenant_id=tenant.pk).exists()
    assert not Product.objects.filter(tenant_id=tenant.pk).exists()
    assert not CatalogJob.objects.filter(tenant_id=tenant.pk).exists()
    assert Conversation.objects.filter(tenant=other_tenant).count() == 1
    assert CatalogJob.objects.filter(tenant=other_tenant).count() == 1
    assert WebhookDelivery.objects.filter(tenant=other_tenant).count() == 1
    assert CircuitBreaker.objects.filter(tenant=other_tenant).count() == 1


def test_admin_delete_needs_conversation_permission(client, tenant):
    used_tenant(tenant)
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    # Every delete permission but the conversation's, so that only it can block the delete.
    staff.user_permissions.add(
        *Permission.objects.filter(codename__startswith="delete_").exclude(
            codename="delete_conversation"
        ),
        Permission.objects.get(codename="view_tenant"),
    )
    client.force_login(staff)
    delete_url = f"/admin/tenants/tenant/{tenant.pk}/delete/"

    page = client.get(delete_url)
    response = client.post(delete_url, {"post": "yes"})

    assert page.status_code == 200
    assert "Cannot delete tenant" in page.content.decode()
    assert "<li>conversation</li>" in page.content.decode()
    assert "<li>webhook delivery</li>" not in page.content.decode()
    assert "<li>catalog job</li>" not in page.content.decode()
    assert response.status_code == 403
    assert Tenant.objects.filter(pk=tenant.pk).exists()
    assert Conversation.objects.filter(tenant=tenant).count() == 1
    assert WebhookDelivery.objects.filter(tenant=tenant).count() == 1


def add_used_rows(tenant: Tenant, count: int) -> None:
    """Give ``tenant`` ``count`` more products, conversations with one message, and deliveries."""
    start = Product.objects.filter(tenant=tenant).count()
    for index in range(start, start + count):
        ProductFactory(tenant=tenant, sku=f"extra-{index}", name=f"Extra product {index}")
        MessageFactory(conversation__tenant=tenant, text=f"Extra message {index}")
        WebhookDelivery.objects.create(
            tenant=tenant,
            kind="cart",
            call_id=uuid.uuid4(),
            delivery_id=uuid.uuid4(),
            url="https://shop.example/cart",
            attempt=1,
            status_code=200,
            outcome="success",
            duration_ms=12,
        )


def test_delete_page_counts_rows_per_model(admin_client, tenant, other_tenant):
    used_tenant(tenant)
    add_used_rows(tenant, 2)
    add_used_rows(other_tenant, 1)

    page = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/delete/")

    content = page.content.decode()
    assert page.status_code == 200
    assert dict(page.context["model_count"]) == {
        "assistant settings": 1,
        "catalog jobs": 1,
        "circuit breakers": 1,
        "conversations": 3,
        "messages": 3,
        "products": 3,
        "tenants": 1,
        "webhook deliveries": 3,
        "webhook settings": 1,
    }
    assert page.context["deleted_objects"] == [
        f'Tenant: <a href="/admin/tenants/tenant/{tenant.pk}/change/">{tenant.name}</a>',
        [
            "Catalog jobs: 1",
            "Products: 3",
            "Conversations: 3",
            "Messages: 3",
            "Assistant settings: 1",
            "Webhook settings: 1",
            "Circuit breakers: 1",
            "Webhook deliveries: 3",
        ],
    ]
    assert "<li>Products: 3</li>" in content
    assert "Extra product" not in content
    assert "Extra message" not in content


def test_delete_page_queries_do_not_grow_with_rows(admin_client, tenant):
    delete_url = f"/admin/tenants/tenant/{tenant.pk}/delete/"

    def query_count() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(delete_url)
        assert response.status_code == 200
        return len(queries.captured_queries)

    add_used_rows(tenant, 1)
    few = query_count()
    add_used_rows(tenant, 30)
    many = query_count()

    assert many == few
    assert Product.objects.filter(tenant=tenant).count() == 31


def test_bulk_delete_counts_each_tenant(admin_client, tenant, other_tenant):
    add_used_rows(tenant, 2)
    add_used_rows(other_tenant, 1)
    data = {"action": "delete_selected", "_selected_action": [tenant.pk, other_tenant.pk]}

    page = admin_client.post("/admin/tenants/tenant/", data)
    response = admin_client.post("/admin/tenants/tenant/", {**data, "post": "yes"})

    assert page.status_code == 200
    assert dict(page.context["model_count"])["products"] == 3
    assert dict(page.context["model_count"])["webhook deliveries"] == 3
    assert dict(page.context["model_count"])["tenants"] == 2
    assert response.status_code == 302
    assert not Tenant.objects.filter(pk__in=[tenant.pk, other_tenant.pk]).exists()
    assert not Product.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert not Message.objects.exists()


def test_admin_revoke_counts_only_new_revocations(admin_client, public_key, secret_key):
    api_key_revoke(tenant=secret_key.api_key.tenant, api_key_id=secret_key.api_key.pk)
    first_revoked_at = ApiKey.objects.get(pk=secret_key.api_key.pk).revoked_at
    selected = [public_key.api_key.pk, secret_key.api_key.pk]

    response = admin_client.post(
        "/admin/tenants/apikey/",
        {"action": "revoke_keys", "_selected_action": selected, "index": 0},
        follow=True,
    )

    messages = [str(message) for message in response.context["messages"]]
    assert response.status_code == 200
    assert messages == ["Revoked 1 API key(s). 1 selected key(s) were already revoked and stay so."]
    assert ApiKey.objects.get(pk=public_key.api_key.pk).revoked_at is not None
    assert ApiKey.objects.get(pk=secret_key.api_key.pk).revoked_at == first_revoked_at


@pytest.fixture
def viewer_client(client):
    """A client logged in as staff with every view permission and nothing else."""
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(viewer)
    return client


@pytest.mark.parametrize(
    ("changelist_url", "action"),
    [
        ("/admin/tenants/webhooksettings/", "rotate_secret_now"),
        ("/admin/tenants/webhooksettings/", "rotate_secret_with_overlap"),
        ("/admin/tenants/webhooksettings/", "send_test_products"),
        ("/admin/tenants/webhooksettings/", "send_test_cart"),
        ("/admin/tenants/webhooksettings/", "send_test_cart_get"),
        ("/admin/tenants/tenant/", "generate_user_token_secret"),
        ("/admin/tenants/apikey/", "revoke_keys"),
    ],
)
def test_view_only_staff_cannot_run_action(
    viewer_client, tenant, public_key, changelist_url, action
):
    selected = {
        "/admin/tenants/webhooksettings/": tenant.webhook_settings.pk,
        "/admin/tenants/tenant/": tenant.pk,
        "/admin/tenants/apikey/": public_key.api_key.pk,
    }[changelist_url]
    before = WebhookSettings.objects.values().get(tenant=tenant)
    user_token_secret = Tenant.objects.get(pk=tenant.pk).user_token_secret

    page = viewer_client.get(changelist_url)
    response = viewer_client.post(
        changelist_url, {"action": action, "_selected_action": [selected], "index": 0}, follow=True
    )

    assert page.status_code == 200
    assert action not in page.content.decode()
    assert response.status_code == 200
    messages = [str(message) for message in response.context["messages"]]
    assert messages == []
    assert WebhookSettings.objects.values().get(tenant=tenant) == before
    assert Tenant.objects.get(pk=tenant.pk).user_token_secret == user_token_secret
    assert ApiKey.objects.get(pk=public_key.api_key.pk).revoked_at is None


def test_staff_without_permissions_sees_nothing(client, tenant):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)

    index = client.get("/admin/")
    pages = [
        client.get(url)
        for url in (
            "/admin/tenants/tenant/",
            f"/admin/tenants/tenant/{tenant.pk}/change/",
            "/admin/tenants/apikey/",
            "/admin/tenants/webhooksettings/",
            "/admin/catalog/product/",
            "/admin/catalog/catalogjob/",
            "/admin/conversations/conversation/",
            "/admin/procrastinate/procrastinatejob/",
        )
    ]

    assert index.status_code == 200
    assert "You don’t have permission to view or edit anything." in index.content.decode()
    assert [page.status_code for page in pages] == [403] * len(pages)


def ai_settings_form(tenant: Tenant, **changes: object) -> dict[str, object]:
    """Return the tenant change form with its AI settings inline, as the admin renders it."""
    assistant_settings = AssistantSettings.objects.get(tenant=tenant)
    inline = {
        "id": assistant_settings.pk,
        "tenant": tenant.pk,
        "version": page_version(assistant_settings),
        **ASSISTANT_SETTINGS_FORM_DEFAULTS,
        **changes,
    }
    return tenant_form(
        name=tenant.name,
        slug=tenant.slug,
        version=page_version(tenant),
        **{"assistant_settings-TOTAL_FORMS": 1, "assistant_settings-INITIAL_FORMS": 1},
        **{f"assistant_settings-0-{name}": value for name, value in inline.items()},
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("session_token_limit", -1, "Ensure this value is greater than or equal to 0."),
        (
            "daily_token_limit",
            "99999999999999999999",
            "Ensure this value is less than or equal to 2147483647.",
        ),
        ("temperature", "1e10", "Ensure that there are no more than 3 digits in total."),
        ("temperature", "NaN", "Enter a number."),
        ("temperature", "-0.5", "Ensure this value is greater than or equal to 0."),
        ("max_tool_rounds", 100_000, "Ensure this value is less than or equal to 20."),
        ("rate_limit_window_seconds", 0, "Ensure this value is greater than or equal to 1."),
        (
            "complex_model",
            "gpt 4.1",
            "Invalid model name 'gpt 4.1'. Enter a name without spaces or control characters, "
            "such as gpt-4.1.",
        ),
        (
            "fast_model",
            "gpt-4.1\nmini",
            "Invalid model name 'gpt-4.1\\nmini'. Enter a name without spaces or control "
            "characters, such as gpt-4.1.",
        ),
        ("complex_model", "gpt\x004", "Null characters are not allowed."),
        (
            "default_language",
            "de",
            "Select a valid choice. de is not one of the available choices.",
        ),
        (
            "anonymous_limit_identity",
            "ip",
            "Select a valid choice. ip is not one of the available choices.",
        ),
        ("anonymous_limit_identity", "", "This field is required."),
    ],
)
def test_ai_settings_reject_invalid_value(admin_client, tenant, field, value, message):
    before = AssistantSettings.objects.values().get(tenant=tenant)
    change_url = f"/admin/tenants/tenant/{tenant.pk}/change/"

    response = admin_client.post(change_url, ai_settings_form(tenant, **{field: value}))

    assert response.status_code == 200
    inline_errors = response.context["inline_admin_formsets"][0].formset.errors
    assert inline_errors == [{field: [message]}]
    assert AssistantSettings.objects.values().get(tenant=tenant) == before


def test_ai_settings_save_valid_models(admin_client, tenant):
    change_url = f"/admin/tenants/tenant/{tenant.pk}/change/"
    data = ai_settings_form(tenant, complex_model="org/model-1:beta", fast_model="gpt-4.1-mini")

    response = admin_client.post(change_url, data)

    assert response.status_code == 302
    assistant_settings = AssistantSettings.objects.get(tenant=tenant)
    assert assistant_settings.complex_model == "org/model-1:beta"
    assert assistant_settings.fast_model == "gpt-4.1-mini"


def test_ai_settings_save_limit_identity(admin_client, tenant, other_tenant):
    change_url = f"/admin/tenants/tenant/{tenant.pk}/change/"
    data = ai_settings_form(tenant, anonymous_limit_identity="client_network")

    page = admin_client.get(change_url).content.decode()
    response = admin_client.post(change_url, data)

    assert '<option value="api_key" selected>API key</option>' in page
    assert '<option value="client_network">Client network</option>' in page
    assert "What the two daily limits count a shopper without a trusted user id" in page
    assert response.status_code == 302
    stored = AssistantSettings.objects.get(tenant=tenant)
    assert stored.anonymous_limit_identity == "client_network"
    other = AssistantSettings.objects.get(tenant=other_tenant)
    assert other.anonymous_limit_identity == "api_key"


HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
ESCAPED = "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;"


def test_pages_escape_hostile_tenant_name(admin_client, tenant, public_key):
    Tenant.objects.filter(pk=tenant.pk).update(name=HOSTILE)
    urls = [
        "/admin/tenants/tenant/",
        f"/admin/tenants/tenant/{tenant.pk}/change/",
        f"/admin/tenants/tenant/{tenant.pk}/delete/",
        "/admin/tenants/apikey/",
        f"/admin/tenants/apikey/{public_key.api_key.pk}/change/",
        "/admin/tenants/webhooksettings/",
        f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/",
        "/admin/catalog/product/add/",
    ]

    for url in urls:
        content = admin_client.get(url).content.decode()
        assert "<script>alert" not in content, url
        assert "<img src=x" not in content, url
        assert ESCAPED in content, url


@pytest.mark.parametrize(
    "url", ["/admin/tenants/tenant/", "/admin/tenants/apikey/", "/admin/tenants/webhooksettings/"]
)
def test_changelist_queries_do_not_grow_with_rows(admin_client, url):
    def query_count() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url)
        assert response.status_code == 200
        return len(queries.captured_queries)

    TenantFactory(slug="first")
    few = query_count()

    for index in range(30):
        created = tenant_create(name=f"Shop {index}", slug=f"shop-{index}")
        WebhookSettings.objects.filter(tenant=created.tenant).update(
            products_url="https://93.184.215.14/products"
        )
    many = query_count()

    assert many == few


def test_history_lists_only_changed_fields(admin_client, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(widget_allowed_origins=["https://shop.example.com"])
    change_url = f"/admin/tenants/tenant/{tenant.pk}/change/"
    unchanged = {**ai_settings_form(tenant), "widget_allowed_origins": "https://shop.example.com"}
    changed = {**unchanged, "widget_allowed_origins": "https://m.shop.example.com"}

    first = admin_client.post(change_url, unchanged)
    second = admin_client.post(change_url, {**changed, "version": page_version(tenant)})

    assert first.status_code == 302
    assert second.status_code == 302
    entries = LogEntry.objects.filter(object_id=str(tenant.pk)).order_by("pk")
    assert [entry.get_change_message() for entry in entries] == [
        "No fields changed.",
        "Changed Widget allowed origins.",
    ]
    assert Tenant.objects.get(pk=tenant.pk).widget_allowed_origins == ["https://m.shop.example.com"]


def test_history_names_custom_secret_without_value(admin_client, tenant):
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"
    secret = "my-own-secret-of-32-characters!!"

    response = admin_client.post(
        change_url,
        {
            "products_url": "",
            "cart_url": "",
            "cart_get_url": "",
            "timeout_seconds": 5,
            "custom_secret": secret,
            "version": page_version(tenant.webhook_settings),
        },
    )

    assert response.status_code == 302
    assert WebhookSettings.objects.get(tenant=tenant).secret == secret
    entry = LogEntry.objects.get(object_id=str(tenant.webhook_settings.pk))
    assert entry.get_change_message() == "Changed Custom secret."
    assert secret not in entry.change_message
    history = admin_client.get(f"{change_url.removesuffix('change/')}history/")
    assert history.status_code == 200
    assert secret not in history.content.decode()


def test_ai_limits_get_wide_inputs(admin_client, tenant):
    response = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")

    form = response.context["inline_admin_formsets"][0].formset.forms[0]
    limits = [
        "session_token_limit",
        "daily_token_limit",
        "monthly_token_limit",
        "user_daily_message_limit",
        "user_daily_conversation_limit",
        "rate_limit_messages",
        "rate_limit_window_seconds",
    ]
    for name in limits:
        assert 'class="vBigIntegerField"' in str(form[name]), name
    assert 'class="vBigIntegerField"' not in str(form["max_tool_rounds"])


def test_history_labels_disabled_tools(admin_client, tenant):
    response = admin_client.post(
        f"/admin/tenants/tenant/{tenant.pk}/change/",
        ai_settings_form(tenant, disabled_tools=["clear_cart"]),
    )

    assert response.status_code == 302
    assert AssistantSettings.objects.get(tenant=tenant).disabled_tools == ["clear_cart"]
    entry = LogEntry.objects.get(object_id=str(tenant.pk))
    assert entry.get_change_message() == (
        f"Changed Disabled tools for assistant settings “Assistant of {tenant.name}”."
    )


@pytest.mark.parametrize("key_fixture", ["public_key", "secret_key"])
def test_api_keys_do_not_open_the_admin(client, request, other_tenant, key_fixture):
    raw_key = request.getfixturevalue(key_fixture).raw_key
    theirs = WebhookSettings.objects.get(tenant=other_tenant)
    settings_before = WebhookSettings.objects.filter(pk=theirs.pk).values().get()
    headers = {"Authorization": f"Bearer {raw_key}"}

    listing = client.get("/admin/tenants/webhooksettings/", headers=headers)
    action = client.post(
        "/admin/tenants/webhooksettings/",
        {"action": "rotate_secret_now", "_selected_action": [theirs.pk], "index": 0},
        headers=headers,
    )

    login = "/admin/login/?next=/admin/tenants/webhooksettings/"
    assert listing.status_code == 302
    assert listing["Location"] == login
    assert action.status_code == 302
    assert action["Location"] == login
    assert WebhookSettings.objects.filter(pk=theirs.pk).values().get() == settings_before
