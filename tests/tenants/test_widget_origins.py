"""The tenant setting widget_allowed_origins: the admin API and the Django admin."""

import pytest

from tenants.models import MAX_WIDGET_ALLOWED_ORIGINS, Tenant
from tests.tenants.test_admin import page_version

pytestmark = pytest.mark.django_db

URL = "/api/v1/admin/widget"


def stored_origins(tenant: Tenant) -> list[str]:
    return Tenant.objects.get(pk=tenant.pk).widget_allowed_origins


def test_api_get_returns_an_empty_list_by_default(server_client):
    response = server_client.get(URL)

    assert response.status_code == 200
    assert response.json() == {"widget_allowed_origins": []}


def test_api_patch_stores_normalized_origins(server_client, tenant):
    origins = ["HTTPS://Shop.Example:443/", "http://localhost:3000", "https://shop.example"]

    response = server_client.patch(URL, {"widget_allowed_origins": origins}, format="json")

    expected = ["https://shop.example", "http://localhost:3000"]
    assert response.status_code == 200
    assert response.json() == {"ok": True, "widget_allowed_origins": expected}
    assert stored_origins(tenant) == expected
    assert server_client.get(URL).json() == {"widget_allowed_origins": expected}


def test_api_empty_list_allows_all(server_client, tenant):
    tenant.widget_allowed_origins = ["https://shop.example"]
    tenant.save(update_fields=["widget_allowed_origins"])

    response = server_client.patch(URL, {"widget_allowed_origins": []}, format="json")

    assert response.status_code == 200
    assert stored_origins(tenant) == []


@pytest.mark.parametrize(
    ("_case", "body", "fields"),
    [
        (
            "path",
            {"widget_allowed_origins": ["https://shop.example", "https://shop.example/widget"]},
            {
                "widget_allowed_origins": [
                    "'https://shop.example/widget' has a path. Enter only scheme://host[:port]."
                ]
            },
        ),
        (
            "too many",
            {
                "widget_allowed_origins": [
                    f"https://shop{index}.example"
                    for index in range(MAX_WIDGET_ALLOWED_ORIGINS + 1)
                ]
            },
            {"widget_allowed_origins": ["Enter at most 50 origins, got 51."]},
        ),
        (
            "not a list",
            {"widget_allowed_origins": "https://shop.example"},
            {"widget_allowed_origins": ['Expected a list of items but got type "str".']},
        ),
        (
            "not a string",
            {"widget_allowed_origins": [443]},
            {"widget_allowed_origins": {"0": ["Expected a string, got a number."]}},
        ),
        ("missing", {}, {"widget_allowed_origins": ["This field is required."]}),
        (
            "unknown field",
            {"widget_allowed_origins": [], "allowed_origins": []},
            {"allowed_origins": ["Unknown field."]},
        ),
    ],
)
def test_api_patch_rejects_invalid_origins(server_client, tenant, _case, body, fields):
    tenant.widget_allowed_origins = ["https://kept.example"]
    tenant.save(update_fields=["widget_allowed_origins"])

    response = server_client.patch(URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert response.json()["fields"] == fields
    assert stored_origins(tenant) == ["https://kept.example"]


def test_api_duplicates_do_not_count_against_the_maximum(server_client, tenant):
    origins = [f"https://shop{index}.example" for index in range(MAX_WIDGET_ALLOWED_ORIGINS)]

    response = server_client.patch(
        URL, {"widget_allowed_origins": origins + origins}, format="json"
    )

    assert response.status_code == 200
    assert stored_origins(tenant) == origins


def test_api_public_key_cannot_read_or_change_origins(chat_client, tenant):
    get_response = chat_client.get(URL)
    patch_response = chat_client.patch(
        URL, {"widget_allowed_origins": ["https://evil.example"]}, format="json"
    )

    assert get_response.status_code == 403
    assert patch_response.status_code == 403
    assert patch_response.json()["code"] == "permission_denied"
    assert stored_origins(tenant) == []


def test_api_key_scoped_to_tenant(server_client, other_server_client, tenant, other_tenant):
    tenant.widget_allowed_origins = ["https://a.example"]
    tenant.save(update_fields=["widget_allowed_origins"])

    other_get = other_server_client.get(URL)
    other_patch = other_server_client.patch(
        URL, {"widget_allowed_origins": ["https://b.example"]}, format="json"
    )

    assert other_get.json() == {"widget_allowed_origins": []}
    assert other_patch.status_code == 200
    assert stored_origins(other_tenant) == ["https://b.example"]
    assert stored_origins(tenant) == ["https://a.example"]
    assert server_client.get(URL).json() == {"widget_allowed_origins": ["https://a.example"]}


# The Django admin


def change_form(tenant: Tenant, origins: str) -> dict[str, object]:
    return {
        "name": tenant.name,
        "slug": tenant.slug,
        "is_active": "on",
        "widget_allowed_origins": origins,
        "version": page_version(tenant),
        "assistant_settings-TOTAL_FORMS": 0,
        "assistant_settings-INITIAL_FORMS": 0,
        "assistant_settings-MIN_NUM_FORMS": 0,
        "assistant_settings-MAX_NUM_FORMS": 1,
    }


def test_admin_stores_normalized_origins(admin_client, tenant):
    origins = (
        "HTTPS://Shop.Example:443\r\n\r\n  http://localhost:3000  \r\nhttps://shop.example/\r\n"
    )

    response = admin_client.post(
        f"/admin/tenants/tenant/{tenant.pk}/change/", change_form(tenant, origins)
    )

    assert response.status_code == 302
    assert stored_origins(tenant) == ["https://shop.example", "http://localhost:3000"]


def test_admin_shows_one_origin_per_line(admin_client, tenant):
    tenant.widget_allowed_origins = ["https://shop.example", "http://localhost:3000"]
    tenant.save(update_fields=["widget_allowed_origins"])

    response = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")

    assert response.status_code == 200
    field = response.context["adminform"].form["widget_allowed_origins"]
    assert field.value() == "https://shop.example\nhttp://localhost:3000"
    assert ">\nhttps://shop.example\nhttp://localhost:3000</textarea>" in response.content.decode()


@pytest.mark.parametrize(
    ("origins", "error"),
    [
        (
            "https://shop.example\nshop.example",
            "'shop.example' must start with http:// or https://.",
        ),
        (
            "\n".join(f"https://shop{index}.example" for index in range(51)),
            "Enter at most 50 origins, got 51.",
        ),
    ],
)
def test_admin_rejects_invalid_origins(admin_client, tenant, origins, error):
    tenant.widget_allowed_origins = ["https://kept.example"]
    tenant.save(update_fields=["widget_allowed_origins"])

    response = admin_client.post(
        f"/admin/tenants/tenant/{tenant.pk}/change/", change_form(tenant, origins)
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"widget_allowed_origins": [error]}
    assert stored_origins(tenant) == ["https://kept.example"]
