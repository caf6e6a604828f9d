"""Tenants added and changed in the Django admin."""

import pytest

from tenants.models import Tenant

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


def test_admin_change_keeps_user_token_secret(admin_client, tenant):
    tenant.user_token_secret = "s" * 43
    tenant.save(update_fields=["user_token_secret"])
    change_url = f"/admin/tenants/tenant/{tenant.pk}/change/"
    data = tenant_form(
        name="Shop A renamed",
        slug=tenant.slug,
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
