"""Django admin: URL checks at save time, the delivery log and the circuit breakers."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from django.views.debug import SafeExceptionReporterFilter

from tenants.models import WebhookSettings
from tenants.services import webhook_secret_set
from tests.factories import TenantFactory
from tests.tenants.test_admin import page_version
from webhooks.models import CircuitBreaker, WebhookDelivery

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/tenants/webhooksettings/add/"


def delivery(tenant, **fields) -> WebhookDelivery:
    values = {
        "kind": "products",
        "call_id": uuid.uuid4(),
        "delivery_id": uuid.uuid4(),
        "url": "https://shop.example/products",
        "attempt": 1,
        "status_code": 200,
        "outcome": "success",
        "duration_ms": 12,
        **fields,
    }
    return WebhookDelivery.objects.create(tenant=tenant, **values)


def settings_form(tenant, **overrides) -> dict[str, object]:
    webhook_settings = WebhookSettings.objects.filter(tenant=tenant).first()
    return {
        "tenant": tenant.pk,
        "products_url": "",
        "cart_url": "",
        "cart_get_url": "",
        "timeout_seconds": 5,
        "custom_secret": "",
        "version": "" if webhook_settings is None else page_version(webhook_settings),
        **overrides,
    }


@pytest.mark.parametrize(
    ("_case", "url"),
    [
        ("loopback", "https://127.0.0.1/products"),
        ("metadata address", "https://169.254.169.254/latest/meta-data"),
        ("private network", "https://10.0.0.5/products"),
        ("decimal loopback", "https://2130706433/products"),
        ("mapped ipv6", "https://[::ffff:127.0.0.1]/products"),
        ("plain http", "http://shop.example/products"),
        ("credentials", "https://user:pass@shop.example/products"),
    ],
)
def test_admin_add_rejects_unsafe_url(admin_client, _case, url):
    tenant = TenantFactory(slug="shop-new")

    response = admin_client.post(ADD_URL, settings_form(tenant, products_url=url))

    assert response.status_code == 200
    assert "products_url" in response.context["adminform"].form.errors
    assert not WebhookSettings.objects.filter(tenant=tenant).exists()


@pytest.mark.parametrize(
    ("_case", "url", "message"),
    [
        (
            "file scheme",
            "file:///etc/passwd",
            "URL scheme 'file' is not allowed. Use a URL that starts with https://.",
        ),
        (
            "javascript scheme",
            "javascript:alert(1)",
            "URL scheme 'javascript' is not allowed. Use a URL that starts with https://.",
        ),
        (
            "plain http",
            "http://10.0.0.1/cart",
            "URL scheme 'http' is not allowed. Use a URL that starts with https://.",
        ),
        (
            "hex loopback",
            "http://0x7f000001/cart",
            "URL scheme 'http' is not allowed. Use a URL that starts with https://.",
        ),
        (
            "space in host",
            "https://exa mple.com/cart",
            "URL contains whitespace, a control character or a backslash.",
        ),
        (
            "credentials",
            "https://user:pass@93.184.215.14/cart",
            "URL must not contain a user name or password. The webhook secret signs each "
            "request instead.",
        ),
        (
            "too long",
            "https://93.184.215.14/" + "a" * 2000,
            "Ensure this field has no more than 2000 characters.",
        ),
        ("nul character", "https://93.184.215.14/\x00", "Null characters are not allowed."),
    ],
)
def test_admin_url_errors_match_the_api(admin_client, server_client, tenant, _case, url, message):
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"

    response = admin_client.post(change_url, settings_form(tenant, cart_url=url))
    api_response = server_client.patch("/api/v1/admin/webhooks", {"cart_url": url}, format="json")

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"cart_url": [message]}
    assert api_response.status_code == 400
    assert api_response.json()["fields"] == {"cart_url": [message]}
    assert WebhookSettings.objects.get(tenant=tenant).cart_url == ""


def test_admin_change_rejects_unsafe_cart_url(admin_client, tenant):
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"

    response = admin_client.post(
        change_url, settings_form(tenant, cart_url="https://192.168.1.10/cart")
    )

    form_errors = response.context["adminform"].form.errors
    assert response.status_code == 200
    assert list(form_errors) == ["cart_url"]
    assert "private" in form_errors["cart_url"][0]
    tenant.webhook_settings.refresh_from_db()
    assert tenant.webhook_settings.cart_url == ""


def _set_secret_between_read_and_save(monkeypatch) -> list[str]:
    """Make another request set a secret between the admin's read of the row and its save.

    Return the list that receives the secret once the admin has read the row.
    """
    model_admin = admin.site._registry[WebhookSettings]
    read = model_admin.get_object
    installed: list[str] = []

    def read_then_set_secret(request, object_id, from_field=None):
        webhook_settings = read(request, object_id, from_field)
        fresh = WebhookSettings.objects.get(pk=webhook_settings.pk)
        installed.append(webhook_secret_set(webhook_settings=fresh))
        return webhook_settings

    monkeypatch.setattr(model_admin, "get_object", read_then_set_secret)
    return installed


def _change_cart_url(admin_client, tenant) -> WebhookSettings:
    """Save a new cart URL through the admin's change form and return the stored row."""
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"

    response = admin_client.post(
        change_url, settings_form(tenant, cart_url="https://93.184.215.14/cart")
    )

    assert response.status_code == 302
    stored = WebhookSettings.objects.get(tenant=tenant)
    assert stored.cart_url == "https://93.184.215.14/cart"
    return stored


def test_admin_rejects_too_long_custom_secret(admin_client, tenant):
    old_secret = tenant.webhook_settings.secret
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"

    response = admin_client.post(
        change_url,
        settings_form(tenant, cart_url="https://93.184.215.14/cart", custom_secret="x" * 201),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "custom_secret": [
            "Use 24 to 200 characters of UTF-8 text, without NUL characters or leading or "
            "trailing spaces."
        ]
    }
    stored = WebhookSettings.objects.get(tenant=tenant)
    assert stored.secret == old_secret
    assert stored.cart_url == ""


def test_admin_rejects_custom_secret_with_line_break(admin_client, tenant):
    old_secret = tenant.webhook_settings.secret
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"

    response = admin_client.post(
        change_url,
        settings_form(
            tenant,
            cart_url="https://93.184.215.14/cart",
            custom_secret="first-line-of-the-secret\r\nsecond-line",
        ),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "custom_secret": [
            "The secret contains the control character U+000D. Use a secret on one line, "
            "without line breaks, tabs or other control characters."
        ]
    }
    stored = WebhookSettings.objects.get(tenant=tenant)
    assert stored.secret == old_secret
    assert stored.cart_url == ""


def test_custom_secret_input_is_not_autofilled(admin_client, tenant):
    response = admin_client.get(
        f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"
    )

    field = str(response.context["adminform"].form["custom_secret"])
    assert 'type="password"' in field
    assert 'autocomplete="new-password"' in field
    assert "value=" not in field


def test_admin_keeps_concurrent_rotation(admin_client, tenant, monkeypatch):
    rotated = _set_secret_between_read_and_save(monkeypatch)

    stored = _change_cart_url(admin_client, tenant)

    assert stored.secret == rotated[0]


def test_admin_change_sets_updated_at(admin_client, tenant):
    earlier = timezone.now() - timedelta(days=1)
    WebhookSettings.objects.filter(tenant=tenant).update(updated_at=earlier)

    stored = _change_cart_url(admin_client, tenant)

    assert stored.updated_at > earlier + timedelta(hours=23)


def test_admin_change_keeps_the_tenant(admin_client, tenant, other_tenant):
    other_settings = WebhookSettings.objects.values().get(tenant=other_tenant)
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"

    response = admin_client.post(
        change_url,
        settings_form(
            other_tenant,
            cart_url="https://93.184.215.14/cart",
            version=page_version(tenant.webhook_settings),
        ),
    )

    assert response.status_code == 302
    assert WebhookSettings.objects.get(pk=tenant.webhook_settings.pk).tenant == tenant
    assert WebhookSettings.objects.values().get(tenant=other_tenant) == other_settings


def test_admin_keeps_concurrent_first_secret(admin_client, tenant, monkeypatch):
    WebhookSettings.objects.filter(tenant=tenant).update(secret="")
    generated = _set_secret_between_read_and_save(monkeypatch)
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"

    response = admin_client.post(
        change_url, settings_form(tenant, cart_url="https://93.184.215.14/cart"), follow=True
    )

    assert response.status_code == 200
    assert WebhookSettings.objects.get(tenant=tenant).secret == generated[0]
    messages = [str(message) for message in response.context["messages"]]
    assert not any("shown only now" in message for message in messages)


def test_admin_add_without_urls_generates_no_secret(admin_client):
    tenant = TenantFactory(slug="shop-new")

    response = admin_client.post(ADD_URL, settings_form(tenant), follow=True)

    assert response.status_code == 200
    assert WebhookSettings.objects.get(tenant=tenant).secret == ""
    messages = [str(message) for message in response.context["messages"]]
    assert not any("shown only now" in message for message in messages)


def test_admin_secret_status_without_urls(admin_client, tenant):
    WebhookSettings.objects.filter(tenant=tenant).update(
        secret="", products_url="", cart_url="", cart_get_url=""
    )
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"

    response = admin_client.get(change_url)
    saved = admin_client.post(change_url, settings_form(tenant), follow=True)

    assert response.status_code == 200
    assert "Not set yet: one is generated when you save a URL." in response.content.decode()
    # Saving without a URL leaves the row without a secret, as the status text states.
    assert saved.status_code == 200
    assert WebhookSettings.objects.get(tenant=tenant).secret == ""


def test_admin_add_saves_a_safe_url_and_shows_the_secret_once(admin_client):
    tenant = TenantFactory(slug="shop-new")

    response = admin_client.post(
        ADD_URL, settings_form(tenant, products_url="https://93.184.215.14/products"), follow=True
    )

    messages = [str(message) for message in response.context["messages"]]
    saved = WebhookSettings.objects.get(tenant=tenant)
    assert saved.products_url == "https://93.184.215.14/products"
    assert any(saved.secret in message for message in messages)


def test_delivery_list_filters_by_tenant_kind_and_outcome(admin_client, tenant, other_tenant):
    delivery(tenant, kind="cart", outcome="timeout", status_code=None, error_code="timeout")
    delivery(tenant, kind="products")
    delivery(other_tenant, kind="cart", outcome="timeout", status_code=None)

    response = admin_client.get(
        "/admin/webhooks/webhookdelivery/",
        {"tenant__id__exact": tenant.pk, "kind__exact": "cart", "outcome__exact": "timeout"},
    )

    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert [(row.tenant_id, row.kind, row.outcome) for row in rows] == [
        (tenant.pk, "cart", "timeout")
    ]


def test_delivery_log_is_read_only(admin_client, tenant):
    row = delivery(tenant)

    add = admin_client.get("/admin/webhooks/webhookdelivery/add/")
    change = admin_client.post(
        f"/admin/webhooks/webhookdelivery/{row.pk}/change/", {"outcome": "timeout"}
    )
    delete = admin_client.post(f"/admin/webhooks/webhookdelivery/{row.pk}/delete/", {"post": "yes"})

    assert add.status_code == 403
    assert change.status_code == 403
    assert delete.status_code == 403
    row.refresh_from_db()
    assert row.outcome == "success"


def test_delivery_detail_shows_no_secret(admin_client, tenant):
    row = delivery(tenant)

    response = admin_client.get(f"/admin/webhooks/webhookdelivery/{row.pk}/change/")

    assert response.status_code == 200
    assert tenant.webhook_settings.secret not in response.content.decode()


def test_admin_closes_an_open_breaker(admin_client, tenant):
    breaker = CircuitBreaker.objects.create(
        tenant=tenant, kind="cart", state="open", retry_at=timezone.now() + timedelta(hours=1)
    )

    response = admin_client.post(
        "/admin/webhooks/circuitbreaker/",
        {"action": "reset_breakers", "_selected_action": [breaker.pk]},
        follow=True,
    )

    breaker.refresh_from_db()
    assert response.status_code == 200
    assert breaker.state == "closed"
    assert breaker.retry_at is None


def test_breaker_page_cannot_save(admin_client, tenant):
    breaker = CircuitBreaker.objects.create(
        tenant=tenant, kind="cart", state="open", retry_at=timezone.now() + timedelta(hours=1)
    )
    before = CircuitBreaker.objects.values().get(pk=breaker.pk)
    url = f"/admin/webhooks/circuitbreaker/{breaker.pk}/change/"

    page = admin_client.get(url)
    response = admin_client.post(url, {"_save": "Save"})

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert response.status_code == 403
    assert CircuitBreaker.objects.values().get(pk=breaker.pk) == before


def test_view_only_staff_cannot_close_breaker(client, tenant):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(viewer)
    retry_at = timezone.now() + timedelta(hours=1)
    breaker = CircuitBreaker.objects.create(
        tenant=tenant, kind="cart", state="open", retry_at=retry_at
    )

    page = client.get("/admin/webhooks/circuitbreaker/")
    response = client.post(
        "/admin/webhooks/circuitbreaker/",
        {"action": "reset_breakers", "_selected_action": [breaker.pk], "index": 0},
        follow=True,
    )

    assert page.status_code == 200
    assert "reset_breakers" not in page.content.decode()
    assert response.status_code == 200
    assert [str(message) for message in response.context["messages"]] == []
    breaker.refresh_from_db()
    assert breaker.state == "open"
    assert breaker.retry_at == retry_at


def test_error_report_hides_custom_secret(admin_client, tenant, monkeypatch):
    model_admin = admin.site._registry[WebhookSettings]
    save = model_admin.save_model
    reported: list[dict[str, str]] = []

    def save_and_report(request, obj, form, change):
        reported.append(SafeExceptionReporterFilter().get_post_parameters(request))
        save(request, obj, form, change)

    monkeypatch.setattr(model_admin, "save_model", save_and_report)
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"
    secret = "my-own-secret-of-32-characters!!"

    response = admin_client.post(change_url, settings_form(tenant, custom_secret=secret))

    assert response.status_code == 302
    assert WebhookSettings.objects.get(tenant=tenant).secret == secret
    assert reported[0]["custom_secret"] == "********************"
    assert reported[0]["timeout_seconds"] == "5"


def test_admin_rotation_with_overlap_shows_secret_once(admin_client, tenant):
    old_secret = tenant.webhook_settings.secret
    change_url = f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"

    response = admin_client.post(
        "/admin/tenants/webhooksettings/",
        {"action": "rotate_secret_with_overlap", "_selected_action": [tenant.webhook_settings.pk]},
        follow=True,
    )
    later_pages = [
        admin_client.get("/admin/tenants/webhooksettings/"),
        admin_client.get(change_url),
        admin_client.get(change_url.removesuffix("change/") + "history/"),
    ]

    stored = WebhookSettings.objects.get(tenant=tenant)
    messages = [str(message) for message in response.context["messages"]]
    assert stored.secret == old_secret
    assert len(stored.next_secret) == 43
    assert stored.next_secret_promote_at - stored.secret_updated_at == timedelta(hours=24)
    assert messages == [
        f"New signing secret for {tenant} (shown only now): {stored.next_secret}. Both secrets"
        f" sign requests until {stored.next_secret_promote_at:%Y-%m-%d %H:%M} UTC; switch the"
        " merchant's verifier to the new secret before then."
    ]
    for page in later_pages:
        assert page.status_code == 200
        assert stored.next_secret not in page.content.decode()
        assert old_secret not in page.content.decode()
    assert "rotation in progress" in later_pages[1].content.decode()


def test_admin_status_after_overlap_ended(admin_client, tenant):
    webhook_secret_set(webhook_settings=tenant.webhook_settings, overlap=timedelta(hours=1))
    ended_at = timezone.now() - timedelta(minutes=5)
    WebhookSettings.objects.filter(tenant=tenant).update(next_secret_promote_at=ended_at)

    response = admin_client.get(
        f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert (
        f"Set; the rotation&#x27;s overlap ended at {ended_at:%Y-%m-%d %H:%M} UTC, so the new "
        "secret alone signs from the next webhook request on."
    ) in content
    assert "rotation in progress" not in content


def test_admin_overlap_rotation_without_secret(admin_client, tenant):
    WebhookSettings.objects.filter(tenant=tenant).update(secret="")

    response = admin_client.post(
        "/admin/tenants/webhooksettings/",
        {"action": "rotate_secret_with_overlap", "_selected_action": [tenant.webhook_settings.pk]},
        follow=True,
    )

    stored = WebhookSettings.objects.get(tenant=tenant)
    messages = [str(message) for message in response.context["messages"]]
    assert len(stored.secret) == 43
    assert stored.next_secret == ""
    assert stored.next_secret_promote_at is None
    assert messages == [
        f"New signing secret for {tenant} (shown only now): {stored.secret}. It signs requests "
        "alone from now on, because the tenant had no usable secret to overlap with."
    ]


def test_admin_rotation_now_replaces_both_secrets(admin_client, tenant):
    webhook_secret_set(webhook_settings=tenant.webhook_settings, overlap=timedelta(hours=24))
    rotating = WebhookSettings.objects.get(tenant=tenant)

    response = admin_client.post(
        "/admin/tenants/webhooksettings/",
        {
            "action": "rotate_secret_now",
            "_selected_action": [tenant.webhook_settings.pk],
            "confirmed": "yes",
        },
        follow=True,
    )

    stored = WebhookSettings.objects.get(tenant=tenant)
    messages = [str(message) for message in response.context["messages"]]
    assert response.status_code == 200
    assert stored.secret not in (rotating.secret, rotating.next_secret)
    assert stored.next_secret == ""
    assert stored.next_secret_promote_at is None
    assert messages == [f"New signing secret for {tenant} (shown only now): {stored.secret}"]
