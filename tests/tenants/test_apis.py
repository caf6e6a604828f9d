import pytest
from rest_framework.test import APIClient

from tenants.models import WebhookSettings
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/admin/webhooks"


def test_get_returns_settings_without_the_secret(tenant, server_client):
    response = server_client.get(URL)

    assert response.status_code == 200
    assert response.json() == {
        "products_url": "",
        "cart_url": "",
        "cart_get_url": "",
        "has_secret": True,
        "timeout_seconds": 5,
    }
    assert tenant.webhook_settings.secret not in response.content.decode()


@pytest.mark.parametrize(
    ("_case", "authorization", "status", "code"),
    [
        ("no key", None, 401, "not_authenticated"),
        ("unknown key", "Bearer sk_live_unknown", 401, "authentication_failed"),
        ("malformed header", "Token abc", 401, "authentication_failed"),
    ],
)
def test_admin_api_requires_a_valid_key(tenant, _case, authorization, status, code):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)

    response = client.patch(URL, {"timeout_seconds": 9}, format="json")

    assert response.status_code == status
    assert response.json()["code"] == code
    assert WebhookSettings.objects.get(tenant=tenant).timeout_seconds == 5


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_scheme_is_case_insensitive(tenant, secret_key, scheme):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {secret_key.raw_key}")

    response = client.patch(URL, {"timeout_seconds": 9}, format="json")

    assert response.status_code == 200
    assert WebhookSettings.objects.get(tenant=tenant).timeout_seconds == 9


def test_public_key_cannot_use_the_admin_api(tenant, chat_client):
    response = chat_client.patch(URL, {"timeout_seconds": 9}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert WebhookSettings.objects.get(tenant=tenant).timeout_seconds == 5


def _stored_settings(tenant) -> dict:
    """Return every column of ``tenant``'s webhook settings, secrets as stored (encrypted)."""
    return WebhookSettings.objects.filter(tenant=tenant).values().get()


def test_patch_changes_only_the_callers_tenant(tenant, other_tenant, server_client, local_webhooks):
    theirs_before = _stored_settings(other_tenant)

    response = server_client.patch(
        URL,
        {"products_url": "http://127.0.0.1:9/products", "timeout_seconds": 3},
        format="json",
    )

    assert response.status_code == 200
    assert response.json() == {"ok": True, "has_secret": True}
    mine = WebhookSettings.objects.get(tenant=tenant)
    assert (mine.products_url, mine.timeout_seconds) == ("http://127.0.0.1:9/products", 3)
    assert _stored_settings(other_tenant) == theirs_before


def test_get_returns_only_the_callers_settings(tenant, other_tenant, server_client, local_webhooks):
    WebhookSettings.objects.filter(tenant=other_tenant).update(
        products_url="http://127.0.0.1:9/b-products",
        cart_url="http://127.0.0.1:9/b-cart",
        cart_get_url="http://127.0.0.1:9/b-cart-get",
        timeout_seconds=17,
    )
    theirs_before = _stored_settings(other_tenant)

    response = server_client.get(URL)

    assert response.status_code == 200
    assert response.json() == {
        "products_url": "",
        "cart_url": "",
        "cart_get_url": "",
        "has_secret": True,
        "timeout_seconds": 5,
    }
    assert other_tenant.webhook_settings.secret not in response.content.decode()
    assert _stored_settings(other_tenant) == theirs_before


NON_PUBLIC = "Webhook URLs must point at public addresses."


@pytest.mark.parametrize(
    ("_case", "url", "message"),
    [
        (
            "plain http",
            "http://shop.example/products",
            "URL scheme 'http' is not allowed. Use a URL that starts with https://.",
        ),
        (
            "loopback",
            "https://127.0.0.1/products",
            f"URL host 127.0.0.1 is a non-public address (loopback). {NON_PUBLIC}",
        ),
        (
            "metadata address",
            "https://169.254.169.254/latest",
            f"URL host 169.254.169.254 is a non-public address (link-local). {NON_PUBLIC}",
        ),
        (
            "private network",
            "https://10.1.2.3/products",
            f"URL host 10.1.2.3 is a non-public address (private). {NON_PUBLIC}",
        ),
        (
            "decimal loopback",
            "https://2130706433/products",
            f"URL host 127.0.0.1 is a non-public address (loopback). {NON_PUBLIC}",
        ),
        (
            "not a url",
            "products",
            "URL has no scheme. Use a URL that starts with https://.",
        ),
        ("no host", "https:///products", "URL has no host."),
        ("port 0", "https://shop.example:0/products", "URL port 0 is not valid."),
        (
            "port too large",
            "https://shop.example:70000/",
            "URL is not valid: Port out of range 0-65535.",
        ),
        (
            "bad domain",
            "https://-shop.example/products",
            "URL host '-shop.example' is not a valid domain name.",
        ),
        (
            "ipv6 zone",
            "https://[fe80::1%25eth0]/products",
            "IPv6 zone identifiers are not allowed in URLs.",
        ),
    ],
)
def test_patch_rejects_unsafe_urls(tenant, server_client, _case, url, message):
    response = server_client.patch(URL, {"cart_url": url}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid webhook URL.",
        "code": "invalid_json",
        "fields": {"cart_url": [message]},
    }
    assert WebhookSettings.objects.get(tenant=tenant).cart_url == ""


def test_patch_with_empty_secret_keeps_the_secret(tenant, server_client):
    old_secret = tenant.webhook_settings.secret

    response = server_client.patch(URL, {"secret": ""}, format="json")

    assert response.status_code == 200
    assert WebhookSettings.objects.get(tenant=tenant).secret == old_secret


def test_patch_installs_a_custom_secret(tenant, server_client):
    response = server_client.patch(
        URL, {"secret": "my-own-secret-of-32-characters!!"}, format="json"
    )

    assert response.status_code == 200
    assert "secret" not in response.json()
    assert WebhookSettings.objects.get(tenant=tenant).secret == "my-own-secret-of-32-characters!!"


def test_patch_secret_ends_running_overlap(tenant, server_client):
    rotated = server_client.post(f"{URL}/rotate-secret", {"overlap_hours": 24}, format="json")

    response = server_client.patch(
        URL, {"secret": "my-own-secret-of-32-characters!!"}, format="json"
    )

    stored = WebhookSettings.objects.get(tenant=tenant)
    assert rotated.status_code == 200
    assert response.status_code == 200
    assert response.json() == {"ok": True, "has_secret": True}
    assert stored.secret == "my-own-secret-of-32-characters!!"
    assert stored.next_secret == ""
    assert stored.next_secret_promote_at is None


def test_patch_rejects_a_short_secret(tenant, server_client):
    old_secret = tenant.webhook_settings.secret

    response = server_client.patch(URL, {"secret": "short"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["secret"]
    assert WebhookSettings.objects.get(tenant=tenant).secret == old_secret


def test_patch_rejects_a_secret_with_a_tab(tenant, server_client):
    old_secret = tenant.webhook_settings.secret

    response = server_client.patch(
        URL, {"secret": "secret-with-a\ttab-in-the-middle", "cart_url": ""}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid webhook secret.",
        "code": "invalid_json",
        "fields": {
            "secret": [
                "The secret contains the control character U+0009. Use a secret on one line, "
                "without line breaks, tabs or other control characters."
            ]
        },
    }
    assert WebhookSettings.objects.get(tenant=tenant).secret == old_secret


@pytest.mark.parametrize(
    ("character", "name"),
    [("\u2028", "line separator U+2028"), ("\u2029", "paragraph separator U+2029")],
)
def test_patch_rejects_unicode_line_separators(tenant, server_client, character, name):
    old_secret = tenant.webhook_settings.secret

    response = server_client.patch(
        URL, {"secret": f"secret-with-a{character}break-in-the-middle"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid webhook secret.",
        "code": "invalid_json",
        "fields": {
            "secret": [
                f"The secret contains the {name}. Use a secret on one line, "
                "without line breaks, tabs or other control characters."
            ]
        },
    }
    assert WebhookSettings.objects.get(tenant=tenant).secret == old_secret


def test_patch_keeps_no_break_space_in_secret(tenant, server_client):
    response = server_client.patch(
        URL, {"secret": "secret-with-a\u00a0no-break-space-inside"}, format="json"
    )

    assert response.status_code == 200
    assert WebhookSettings.objects.get(tenant=tenant).secret == (
        "secret-with-a\u00a0no-break-space-inside"
    )


def test_first_url_generates_a_secret_shown_once(local_webhooks):
    from tenants.models import ApiKey
    from tenants.services import api_key_create

    tenant = TenantFactory(slug="fresh")
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_key_create(tenant=tenant, kind=ApiKey.Kind.SECRET).raw_key}"
    )

    first = client.patch(URL, {"products_url": "http://127.0.0.1:9/p"}, format="json")
    second = client.patch(URL, {"cart_url": "http://127.0.0.1:9/c"}, format="json")

    stored = WebhookSettings.objects.get(tenant=tenant).secret
    assert first.json() == {"ok": True, "has_secret": True, "secret": stored}
    assert second.json() == {"ok": True, "has_secret": True}


@pytest.mark.parametrize(("_case", "value"), [("zero", 0), ("too long", 31), ("text", "five")])
def test_patch_validates_the_timeout(tenant, server_client, _case, value):
    response = server_client.patch(URL, {"timeout_seconds": value}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["timeout_seconds"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("products_url", 5, "Expected a string, got a number."),
        ("cart_url", ["http://127.0.0.1:9/c"], "Expected a string, got an array."),
        ("secret", True, "Expected a string, got a boolean."),
        ("timeout_seconds", "5", "Expected an integer, got a string."),
        ("timeout_seconds", 5.0, "Expected an integer, got a number."),
        ("timeout_seconds", True, "Expected an integer, got a boolean."),
    ],
)
def test_patch_rejects_wrong_json_types(tenant, server_client, field, value, message):
    before = WebhookSettings.objects.values().get(tenant=tenant)

    response = server_client.patch(URL, {field: value}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {field: [message]}
    assert WebhookSettings.objects.values().get(tenant=tenant) == before


@pytest.mark.parametrize(
    ("value", "message"),
    [("2", "Expected a number, got a string."), (False, "Expected a number, got a boolean.")],
)
def test_rotate_secret_rejects_a_string_overlap(tenant, server_client, value, message):
    before = WebhookSettings.objects.values().get(tenant=tenant)

    response = server_client.post(f"{URL}/rotate-secret", {"overlap_hours": value}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"overlap_hours": [message]}
    assert WebhookSettings.objects.values().get(tenant=tenant) == before


def test_rotate_secret_accepts_a_fractional_overlap(tenant, server_client):
    response = server_client.post(f"{URL}/rotate-secret", {"overlap_hours": 1.5}, format="json")

    assert response.status_code == 200
    assert WebhookSettings.objects.get(tenant=tenant).next_secret == response.json()["secret"]


def test_rotate_secret_with_overlap(tenant, server_client, other_tenant):
    old_secret = tenant.webhook_settings.secret
    theirs_before = _stored_settings(other_tenant)

    response = server_client.post(f"{URL}/rotate-secret", {"overlap_hours": 2}, format="json")

    assert response.status_code == 200
    stored = WebhookSettings.objects.get(tenant=tenant)
    assert response.json()["secret"] == stored.next_secret
    assert stored.secret == old_secret
    expected = stored.next_secret_promote_at.isoformat().replace("+00:00", "Z")
    assert response.json()["active_from"] == expected
    assert response.json()["active_from"].endswith("Z")
    assert _stored_settings(other_tenant) == theirs_before


def test_rotate_secret_immediately(tenant, server_client):
    response = server_client.post(f"{URL}/rotate-secret", {"overlap_hours": 0}, format="json")

    stored = WebhookSettings.objects.get(tenant=tenant)
    assert response.json() == {"ok": True, "secret": stored.secret, "active_from": None}
    assert stored.next_secret == ""


def test_patch_rejects_unknown_fields(tenant, server_client):
    response = server_client.patch(
        URL, {"product_url": "https://shop.example/p", "has_secret": False}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["fields"] == {
        "has_secret": ["Unknown field."],
        "product_url": ["Unknown field."],
    }
    assert WebhookSettings.objects.get(tenant=tenant).products_url == ""
