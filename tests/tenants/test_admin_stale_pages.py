"""Admin change pages that were opened before another save of the same row."""

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.db import transaction

from tenants.admin import WebhookSettingsForm
from tenants.models import AssistantSettings, Tenant, WebhookSettings
from tenants.services import user_token_secret_set, webhook_secret_set
from tests.tenants.test_admin import ADD_URL, ai_settings_form, page_version, tenant_form
from tests.webhooks.test_admin import settings_form

pytestmark = pytest.mark.django_db

TENANT_CHANGED = (
    "This tenant was changed after you opened this page, so nothing was saved. Reload the "
    "page to see the current values, then make your changes again."
)
AI_SETTINGS_CHANGED = (
    "The AI settings of this tenant were changed after you opened this page, so nothing was "
    "saved. Reload the page to see the current values, then make your changes again."
)
WEBHOOK_SETTINGS_CHANGED = (
    "These webhook settings were changed after you opened this page, so nothing was saved. "
    "Reload the page to see the current values, then make your changes again."
)


def tenant_url(tenant: Tenant) -> str:
    return f"/admin/tenants/tenant/{tenant.pk}/change/"


def webhook_settings_url(tenant: Tenant) -> str:
    return f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"


def shown_values(form, prefix: str = "") -> dict[str, object]:
    """Return the values that ``form`` shows, as a browser posts them back unchanged."""
    return {
        f"{prefix}{name}": form[name].value()
        for name in form.fields
        if form[name].value() not in (None, [])
    }


def open_tenant_page(client, tenant: Tenant) -> dict[str, object]:
    """Open the tenant's change page and return the form data that it posts unchanged."""
    page = client.get(tenant_url(tenant))
    assert page.status_code == 200
    inline_formset = page.context["inline_admin_formsets"][0].formset
    return {
        **shown_values(page.context["adminform"].form),
        **shown_values(inline_formset.management_form, "assistant_settings-"),
        **shown_values(inline_formset.forms[0], "assistant_settings-0-"),
    }


def open_webhook_settings_page(client, tenant: Tenant) -> dict[str, object]:
    page = client.get(webhook_settings_url(tenant))
    assert page.status_code == 200
    return shown_values(page.context["adminform"].form)


def test_pages_carry_the_version(admin_client, tenant):
    tenant_page = admin_client.get(tenant_url(tenant)).content.decode()
    webhook_page = admin_client.get(webhook_settings_url(tenant)).content.decode()

    assistant_settings = AssistantSettings.objects.get(tenant=tenant)
    assert len(page_version(tenant)) == 64
    assert (
        f'<input type="hidden" name="version" value="{page_version(tenant)}" id="id_version">'
    ) in tenant_page
    assert (
        '<input type="hidden" name="assistant_settings-0-version" '
        f'value="{page_version(assistant_settings)}" id="id_assistant_settings-0-version">'
    ) in tenant_page
    assert (
        '<input type="hidden" name="version" '
        f'value="{page_version(tenant.webhook_settings)}" id="id_version">'
    ) in webhook_page


def test_stale_tenant_save_is_rejected(admin_client, client, django_user_model, tenant):
    operator_b = django_user_model.objects.create_superuser("operator-b", password="pw")
    client.force_login(operator_b)
    opened_by_b = open_tenant_page(client, tenant)
    deactivated = {**open_tenant_page(admin_client, tenant)}
    del deactivated["is_active"]

    saved_by_a = admin_client.post(tenant_url(tenant), deactivated)
    saved_by_b = client.post(tenant_url(tenant), {**opened_by_b, "name": "Shop A renamed"})

    stored = Tenant.objects.get(pk=tenant.pk)
    assert saved_by_a.status_code == 302
    assert saved_by_b.status_code == 200
    assert saved_by_b.context["adminform"].form.errors == {"__all__": [TENANT_CHANGED]}
    assert TENANT_CHANGED in saved_by_b.content.decode()
    assert stored.is_active is False
    assert stored.name == "Shop A"
    assert LogEntry.objects.filter(user=operator_b).count() == 0


def test_stale_ai_settings_save_is_rejected(admin_client, client, django_user_model, tenant):
    client.force_login(django_user_model.objects.create_superuser("operator-b", password="pw"))
    opened_by_b = open_tenant_page(client, tenant)

    saved_by_a = admin_client.post(
        tenant_url(tenant),
        {**open_tenant_page(admin_client, tenant), "assistant_settings-0-temperature": "0.90"},
    )
    tenant_after_a = Tenant.objects.values().get(pk=tenant.pk)
    saved_by_b = client.post(
        tenant_url(tenant),
        {
            **opened_by_b,
            "name": "Shop A renamed",
            "assistant_settings-0-rate_limit_messages": 3,
        },
    )

    assistant_settings = AssistantSettings.objects.get(tenant=tenant)
    inline_form = saved_by_b.context["inline_admin_formsets"][0].formset.forms[0]
    assert saved_by_a.status_code == 302
    assert saved_by_b.status_code == 200
    assert inline_form.non_field_errors() == [AI_SETTINGS_CHANGED]
    assert saved_by_b.context["adminform"].form.errors == {}
    assert assistant_settings.temperature == Decimal("0.90")
    assert assistant_settings.rate_limit_messages == 10
    assert Tenant.objects.values().get(pk=tenant.pk) == tenant_after_a


def test_stale_webhook_settings_save_is_rejected(admin_client, tenant):
    opened_by_b = open_webhook_settings_page(admin_client, tenant)
    saved_by_a = admin_client.post(
        webhook_settings_url(tenant),
        {**open_webhook_settings_page(admin_client, tenant), "cart_url": "https://93.184.215.14/a"},
    )
    settings_after_a = WebhookSettings.objects.values().get(tenant=tenant)

    saved_by_b = admin_client.post(
        webhook_settings_url(tenant),
        {
            **opened_by_b,
            "products_url": "https://93.184.215.14/b",
            "custom_secret": "my-own-secret-of-32-characters!!",
        },
    )

    assert saved_by_a.status_code == 302
    assert settings_after_a["cart_url"] == "https://93.184.215.14/a"
    assert saved_by_b.status_code == 200
    assert saved_by_b.context["adminform"].form.errors == {"__all__": [WEBHOOK_SETTINGS_CHANGED]}
    assert WebhookSettings.objects.values().get(tenant=tenant) == settings_after_a


def test_change_page_without_version_is_rejected(admin_client, tenant):
    form = {**ai_settings_form(tenant), "name": "Shop A renamed"}
    del form["version"]

    response = admin_client.post(tenant_url(tenant), form)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"__all__": [TENANT_CHANGED]}
    assert Tenant.objects.get(pk=tenant.pk).name == "Shop A"


def test_fresh_saves_are_saved(admin_client, tenant):
    first = admin_client.post(
        tenant_url(tenant),
        {**open_tenant_page(admin_client, tenant), "assistant_settings-0-temperature": "0.50"},
    )
    second = admin_client.post(
        tenant_url(tenant), {**open_tenant_page(admin_client, tenant), "name": "Shop A renamed"}
    )
    webhook_save = admin_client.post(
        webhook_settings_url(tenant),
        {**open_webhook_settings_page(admin_client, tenant), "timeout_seconds": 9},
    )

    stored = Tenant.objects.get(pk=tenant.pk)
    assert first.status_code == 302
    assert second.status_code == 302
    assert webhook_save.status_code == 302
    assert stored.name == "Shop A renamed"
    assert stored.is_active is True
    assert stored.assistant_settings.temperature == Decimal("0.50")
    assert WebhookSettings.objects.get(tenant=tenant).timeout_seconds == 9


def test_secret_changes_keep_the_page_current(admin_client, tenant):
    opened_tenant_page = open_tenant_page(admin_client, tenant)
    opened_webhook_page = open_webhook_settings_page(admin_client, tenant)
    user_token_secret = user_token_secret_set(tenant=tenant)
    webhook_secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)

    tenant_save = admin_client.post(
        tenant_url(tenant), {**opened_tenant_page, "name": "Shop A renamed"}
    )
    webhook_save = admin_client.post(
        webhook_settings_url(tenant), {**opened_webhook_page, "timeout_seconds": 9}
    )

    stored = Tenant.objects.get(pk=tenant.pk)
    assert tenant_save.status_code == 302
    assert webhook_save.status_code == 302
    assert stored.name == "Shop A renamed"
    assert stored.user_token_secret == user_token_secret
    assert WebhookSettings.objects.get(tenant=tenant).timeout_seconds == 9
    assert WebhookSettings.objects.get(tenant=tenant).secret == webhook_secret


def test_add_pages_need_no_version(admin_client):
    add_page = admin_client.get(ADD_URL)
    tenant_added = admin_client.post(ADD_URL, tenant_form())
    tenant = Tenant.objects.get(slug="shop-c")
    webhook_settings_added = admin_client.post(
        "/admin/tenants/webhooksettings/add/",
        settings_form(tenant, cart_url="https://93.184.215.14/cart"),
    )

    assert add_page.status_code == 200
    assert add_page.context["adminform"].form["version"].value() is None
    assert tenant_added.status_code == 302
    assert webhook_settings_added.status_code == 302
    assert WebhookSettings.objects.get(tenant=tenant).cart_url == "https://93.184.215.14/cart"


def test_api_saves_need_no_version(admin_client, server_client, tenant):
    opened = open_tenant_page(admin_client, tenant)
    opened_webhook_page = open_webhook_settings_page(admin_client, tenant)

    widget = server_client.patch(
        "/api/v1/admin/widget",
        {"widget_allowed_origins": ["https://shop.example.com"]},
        format="json",
    )
    assistant = server_client.patch("/api/v1/admin/assistant", {"temperature": 0.7}, format="json")
    webhooks = server_client.patch("/api/v1/admin/webhooks", {"timeout_seconds": 9}, format="json")
    stale_tenant_save = admin_client.post(tenant_url(tenant), {**opened, "name": "Renamed"})
    stale_webhook_save = admin_client.post(
        webhook_settings_url(tenant), {**opened_webhook_page, "timeout_seconds": 7}
    )

    stored = Tenant.objects.get(pk=tenant.pk)
    assert widget.status_code == 200
    assert assistant.status_code == 200
    assert webhooks.status_code == 200
    assert stored.widget_allowed_origins == ["https://shop.example.com"]
    assert stored.assistant_settings.temperature == Decimal("0.70")
    assert WebhookSettings.objects.get(tenant=tenant).timeout_seconds == 9
    assert stale_tenant_save.status_code == 200
    assert stale_tenant_save.context["adminform"].form.errors == {"__all__": [TENANT_CHANGED]}
    assert stale_webhook_save.status_code == 200
    assert stored.name == "Shop A"


def test_save_of_deleted_row_without_version_is_rejected(tenant):
    webhook_settings = WebhookSettings.objects.get(tenant=tenant)
    data = {
        "products_url": webhook_settings.products_url,
        "cart_url": webhook_settings.cart_url,
        "cart_get_url": webhook_settings.cart_get_url,
        "timeout_seconds": webhook_settings.timeout_seconds,
        "version": "",
    }
    WebhookSettings.objects.filter(pk=webhook_settings.pk).delete()

    with transaction.atomic():
        form = WebhookSettingsForm(data=data, instance=webhook_settings)
        form.fields["tenant"].disabled = True
        valid = form.is_valid()

    assert not valid
    assert form.errors == {"__all__": [WEBHOOK_SETTINGS_CHANGED]}
    assert not WebhookSettings.objects.filter(tenant=tenant).exists()
