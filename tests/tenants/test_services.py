from datetime import timedelta

import pytest
from django.utils import timezone

from tenants.keys import hash_api_key
from tenants.models import ApiKey, AssistantSettings, Tenant, WebhookSettings
from tenants.selectors import api_key_get_active
from tenants.services import (
    api_key_create,
    api_key_revoke,
    tenant_create,
    webhook_secret_ensure,
    webhook_secret_set,
)
from vizochok.exceptions import InvalidInput

pytestmark = pytest.mark.django_db


def test_tenant_create_issues_keys_and_secret():
    created = tenant_create(name="ATB Kyiv", slug="atb-kyiv")

    tenant = Tenant.objects.get(slug="atb-kyiv")
    assert created.tenant == tenant
    assert created.public_key.raw_key.startswith("pk_live_")
    assert created.secret_key.raw_key.startswith("sk_live_")
    assert created.public_key.api_key.scopes == ["chat"]
    assert created.secret_key.api_key.scopes == ["chat", "catalog"]
    assert AssistantSettings.objects.filter(tenant=tenant).count() == 1
    assert WebhookSettings.objects.get(tenant=tenant).secret == created.webhook_secret
    assert len(created.webhook_secret) >= 43


def test_api_keys_are_stored_only_as_hashes():
    created = tenant_create(name="Shop", slug="shop")

    stored = ApiKey.objects.get(pk=created.public_key.api_key.pk)
    assert stored.key_hash == hash_api_key(created.public_key.raw_key)
    assert created.public_key.raw_key not in {stored.key_hash, stored.prefix, stored.name}
    assert stored.prefix == created.public_key.raw_key[:12]


def test_api_key_lookup_rejects_revoked_and_unknown_keys(tenant):
    issued = api_key_create(tenant=tenant, kind=ApiKey.Kind.PUBLIC)

    assert api_key_get_active(raw_key=issued.raw_key) == issued.api_key
    assert api_key_get_active(raw_key=issued.raw_key + "x") is None
    api_key_revoke(tenant=tenant, api_key_id=issued.api_key.pk)
    assert api_key_get_active(raw_key=issued.raw_key) is None


def test_api_key_lookup_rejects_keys_of_inactive_tenants(tenant):
    issued = api_key_create(tenant=tenant, kind=ApiKey.Kind.SECRET)
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)

    assert api_key_get_active(raw_key=issued.raw_key) is None


def test_api_key_revoke_is_scoped_to_the_tenant(tenant, other_tenant):
    issued = api_key_create(tenant=tenant, kind=ApiKey.Kind.PUBLIC)

    with pytest.raises(ApiKey.DoesNotExist):
        api_key_revoke(tenant=other_tenant, api_key_id=issued.api_key.pk)
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is None


def test_secret_rotation_without_overlap_replaces_the_secret(tenant):
    webhook_settings = tenant.webhook_settings
    old_secret = webhook_settings.secret

    new_secret = webhook_secret_set(webhook_settings=webhook_settings)

    webhook_settings.refresh_from_db()
    assert new_secret != old_secret
    assert webhook_settings.secret == new_secret
    assert webhook_settings.next_secret == ""
    assert webhook_settings.next_secret_promote_at is None


def test_secret_rotation_with_overlap_keeps_both_secrets(tenant):
    webhook_settings = tenant.webhook_settings
    old_secret = webhook_settings.secret
    before = timezone.now()

    new_secret = webhook_secret_set(webhook_settings=webhook_settings, overlap=timedelta(hours=24))

    webhook_settings.refresh_from_db()
    assert webhook_settings.secret == old_secret
    assert webhook_settings.next_secret == new_secret
    assert webhook_settings.next_secret_promote_at >= before + timedelta(hours=24)


@pytest.mark.parametrize(
    ("_case", "secret"),
    [
        ("too short", "short-secret"),
        ("leading space", " " + "x" * 30),
        ("longer than the column", "x" * 201),
        ("NUL character", "x" * 30 + "\x00"),
        ("unpaired surrogate", "x" * 30 + "\udc80"),
    ],
)
def test_custom_secret_is_validated(tenant, _case, secret):
    webhook_settings = tenant.webhook_settings
    old_secret = webhook_settings.secret

    with pytest.raises(InvalidInput) as raised:
        webhook_secret_set(webhook_settings=webhook_settings, secret=secret)

    assert raised.value.extra["fields"] == {
        "secret": [
            "Use 24 to 200 characters of UTF-8 text, without NUL characters or leading or "
            "trailing spaces."
        ]
    }
    webhook_settings.refresh_from_db()
    assert webhook_settings.secret == old_secret


@pytest.mark.parametrize(
    ("_case", "secret", "code_point"),
    [
        ("line break", "first-line-of-the-secret\nsecond-line", "U+000A"),
        ("carriage return", "secret-typed-on-windows\r-and-more", "U+000D"),
        ("tab", "secret-with-a\ttab-in-the-middle", "U+0009"),
        ("C1 control", "secret-with-a\x85next-line-character", "U+0085"),
    ],
)
def test_custom_secret_rejects_control_characters(tenant, _case, secret, code_point):
    webhook_settings = tenant.webhook_settings
    old_secret = webhook_settings.secret

    with pytest.raises(InvalidInput) as raised:
        webhook_secret_set(webhook_settings=webhook_settings, secret=secret)

    assert raised.value.extra["fields"] == {
        "secret": [
            f"The secret contains the control character {code_point}. Use a secret on one "
            "line, without line breaks, tabs or other control characters."
        ]
    }
    webhook_settings.refresh_from_db()
    assert webhook_settings.secret == old_secret
    assert webhook_settings.next_secret == ""


def test_custom_secret_of_200_characters(tenant):
    webhook_settings = tenant.webhook_settings
    secret = "ї" * 200

    webhook_secret_set(webhook_settings=webhook_settings, secret=secret)

    webhook_settings.refresh_from_db()
    assert webhook_settings.secret == secret


def test_rotating_during_an_overlap_completes_the_first_rotation(tenant):
    webhook_settings = tenant.webhook_settings
    first = webhook_secret_set(webhook_settings=webhook_settings, overlap=timedelta(hours=24))

    second = webhook_secret_set(webhook_settings=webhook_settings, overlap=timedelta(hours=24))

    webhook_settings.refresh_from_db()
    assert webhook_settings.secret == first
    assert webhook_settings.next_secret == second


def test_rotating_after_an_overlap_ended_keeps_the_promoted_secret(tenant):
    webhook_settings = tenant.webhook_settings
    first = webhook_secret_set(webhook_settings=webhook_settings, overlap=timedelta(seconds=1))
    webhook_settings.next_secret_promote_at = timezone.now() - timedelta(seconds=1)
    webhook_settings.save()

    second = webhook_secret_set(webhook_settings=webhook_settings, overlap=timedelta(hours=24))

    webhook_settings.refresh_from_db()
    assert webhook_settings.secret == first
    assert webhook_settings.next_secret == second


def test_immediate_rotation_during_an_overlap_drops_both_old_secrets(tenant):
    webhook_settings = tenant.webhook_settings
    old = webhook_settings.secret
    pending = webhook_secret_set(webhook_settings=webhook_settings, overlap=timedelta(hours=24))

    new = webhook_secret_set(webhook_settings=webhook_settings)

    webhook_settings.refresh_from_db()
    assert webhook_settings.secret == new
    assert webhook_settings.next_secret == ""
    assert new not in {old, pending}


def test_stale_rotation_keeps_earlier_rotation(tenant):
    # Two rotations that read the row before either saved, as two concurrent requests do.
    stale = WebhookSettings.objects.get(tenant=tenant)
    first = webhook_secret_set(
        webhook_settings=WebhookSettings.objects.get(tenant=tenant), overlap=timedelta(hours=24)
    )

    second = webhook_secret_set(webhook_settings=stale, overlap=timedelta(hours=24))

    stored = WebhookSettings.objects.get(tenant=tenant)
    assert stored.secret == first
    assert stored.next_secret == second
    assert (stale.secret, stale.next_secret) == (first, second)


def test_stale_rotation_keeps_changed_urls(tenant):
    stale = WebhookSettings.objects.get(tenant=tenant)
    WebhookSettings.objects.filter(tenant=tenant).update(
        products_url="https://93.184.216.34/products", timeout_seconds=9
    )

    webhook_secret_set(webhook_settings=stale, overlap=timedelta(hours=24))

    stored = WebhookSettings.objects.get(tenant=tenant)
    assert stored.products_url == "https://93.184.216.34/products"
    assert stored.timeout_seconds == 9
    assert stored.next_secret != ""


def test_full_save_keeps_catalog_version(tenant):
    stale = Tenant.objects.get(pk=tenant.pk)
    Tenant.objects.filter(pk=tenant.pk).update(catalog_version=7)

    stale.name = "Renamed"
    stale.save()

    tenant.refresh_from_db()
    assert tenant.name == "Renamed"
    assert tenant.catalog_version == 7
    assert stale.catalog_version == 0


def test_secret_ensure_generates_a_missing_secret(tenant):
    WebhookSettings.objects.filter(tenant=tenant).update(secret="")

    secret = webhook_secret_ensure(webhook_settings=WebhookSettings.objects.get(tenant=tenant))

    assert secret is not None
    assert len(secret) >= 24
    assert WebhookSettings.objects.get(tenant=tenant).secret == secret


def test_secret_ensure_keeps_concurrent_secret(tenant):
    WebhookSettings.objects.filter(tenant=tenant).update(secret="")
    stale = WebhookSettings.objects.get(tenant=tenant)
    installed = webhook_secret_set(webhook_settings=WebhookSettings.objects.get(tenant=tenant))

    assert webhook_secret_ensure(webhook_settings=stale) is None
    assert WebhookSettings.objects.get(tenant=tenant).secret == installed
