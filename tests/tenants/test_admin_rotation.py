"""The admin action "Rotate the secret now" and its confirmation page."""

import pytest
from django.contrib.auth.models import Permission, User

from tenants.models import WebhookSettings
from tests.factories import TenantFactory, WebhookSettingsFactory

pytestmark = pytest.mark.django_db

CHANGELIST_URL = "/admin/tenants/webhooksettings/"
CONFIRMATION_TEMPLATE = "admin/tenants/webhooksettings/rotate_secret_now_confirmation.html"


def rotate_now(client, *selected: WebhookSettings, confirmed: bool):
    """Post the action as the list page does, or as the confirmation page does."""
    data: dict[str, object] = {
        "action": "rotate_secret_now",
        "_selected_action": [webhook_settings.pk for webhook_settings in selected],
    }
    if confirmed:
        data["confirmed"] = "yes"
    else:
        data["index"] = 0
    return client.post(CHANGELIST_URL, data, follow=confirmed)


def stored_settings() -> list[dict[str, object]]:
    return list(WebhookSettings.objects.order_by("pk").values())


def test_first_post_shows_confirmation(admin_client, tenant, other_tenant):
    before = stored_settings()

    response = rotate_now(
        admin_client, tenant.webhook_settings, other_tenant.webhook_settings, confirmed=False
    )

    content = response.content.decode()
    text = " ".join(content.split())
    assert response.status_code == 200
    assert [template.name for template in response.templates][0] == CONFIRMATION_TEMPLATE
    assert stored_settings() == before
    assert list(response.context["messages"]) == []
    assert "<li>Shop A</li>" in content
    assert "<li>Shop B</li>" in content
    assert (
        "Confirming replaces the signing secret of each tenant below with a new one at once, "
        "with no overlap. From then on every webhook request is signed with the new secret "
        "only, so each merchant must switch its verifier to the new secret at once: until it "
        "does, it rejects the requests."
    ) in text
    for webhook_settings in (tenant.webhook_settings, other_tenant.webhook_settings):
        assert (
            f'<input type="hidden" name="_selected_action" value="{webhook_settings.pk}">'
        ) in content
    assert '<input type="hidden" name="action" value="rotate_secret_now">' in content
    assert '<input type="hidden" name="confirmed" value="yes">' in content
    assert f'<a href="{CHANGELIST_URL}" class="button cancel-link">No, cancel</a>' in content
    for webhook_settings in WebhookSettings.objects.all():
        assert webhook_settings.secret not in content


def test_confirmed_post_rotates_selected(admin_client, tenant, other_tenant):
    third = WebhookSettingsFactory(tenant=TenantFactory(name="Shop C", slug="shop-c"))
    before = {row["tenant_id"]: row for row in stored_settings()}

    response = rotate_now(
        admin_client, tenant.webhook_settings, other_tenant.webhook_settings, confirmed=True
    )
    next_page = admin_client.get(CHANGELIST_URL)

    after = {row["tenant_id"]: row for row in stored_settings()}
    secrets = {
        tenant_id: WebhookSettings.objects.get(tenant_id=tenant_id).secret
        for tenant_id in (tenant.pk, other_tenant.pk)
    }
    messages = [str(message) for message in response.context["messages"]]
    assert response.status_code == 200
    assert response.redirect_chain == [(CHANGELIST_URL, 302)]
    assert after[third.tenant.pk] == before[third.tenant.pk]
    for tenant_id, secret in secrets.items():
        assert len(secret) == 43
        assert after[tenant_id]["secret"] != before[tenant_id]["secret"]
        assert after[tenant_id]["next_secret"] == ""
        assert after[tenant_id]["next_secret_promote_at"] is None
        assert response.content.decode().count(secret) == 1
        assert secret not in next_page.content.decode()
    assert sorted(messages) == [
        f"New signing secret for Shop A (shown only now): {secrets[tenant.pk]}",
        f"New signing secret for Shop B (shown only now): {secrets[other_tenant.pk]}",
    ]


def test_confirmation_escapes_tenant_name(admin_client, tenant):
    tenant.name = "<script>alert(1)</script>"
    tenant.save(update_fields=["name"])

    response = rotate_now(admin_client, tenant.webhook_settings, confirmed=False)

    content = response.content.decode()
    assert "<li>&lt;script&gt;alert(1)&lt;/script&gt;</li>" in content
    assert "<script>alert(1)</script>" not in content


@pytest.mark.parametrize("confirmed", [False, True])
def test_view_only_staff_cannot_rotate(client, tenant, confirmed):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(viewer)
    before = stored_settings()

    response = rotate_now(client, tenant.webhook_settings, confirmed=confirmed)

    assert response.status_code == 200
    assert CONFIRMATION_TEMPLATE not in [template.name for template in response.templates]
    assert list(response.context["messages"]) == []
    assert stored_settings() == before
