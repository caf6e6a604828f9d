"""Webhook and user token secrets encrypted at rest: storage, keys, re-encryption, failures."""

import time
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from rest_framework.test import APIClient

from conversations.identity import user_token_sign
from conversations.models import Conversation
from tenants.encryption import ENCRYPTED_PREFIX, StoredSecret, decrypt, secret_is_readable
from tenants.models import ApiKey, Tenant, WebhookSettings
from tenants.services import api_key_create, user_token_secret_set, webhook_secret_set
from tests.tenants.test_admin import page_version
from vizochok.exceptions import InvalidInput
from webhooks.models import WebhookDelivery

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
UNKNOWN_KEY = Fernet.generate_key().decode()


def raw_column(table: str, column: str, row_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [row_id])
        return cursor.fetchone()[0]


@pytest.fixture
def old_key(settings):
    settings.VIZOCHOK_ENCRYPTION_KEYS = [OLD_KEY]


@pytest.mark.django_db
def test_rows_hold_no_plain_secret(tenant):
    webhook_secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)
    next_secret = webhook_secret_set(
        webhook_settings=tenant.webhook_settings, overlap=timedelta(hours=1)
    )
    user_secret = user_token_secret_set(tenant=tenant)

    stored = {
        "secret": raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk),
        "next_secret": raw_column(
            "tenants_webhooksettings", "next_secret", tenant.webhook_settings.pk
        ),
        "user_token_secret": raw_column("tenants_tenant", "user_token_secret", tenant.pk),
    }
    for name, plain in [
        ("secret", webhook_secret),
        ("next_secret", next_secret),
        ("user_token_secret", user_secret),
    ]:
        assert stored[name].startswith(ENCRYPTED_PREFIX), name
        assert plain not in stored[name], name
    reloaded = WebhookSettings.objects.get(pk=tenant.webhook_settings.pk)
    assert reloaded.secret == webhook_secret
    assert reloaded.next_secret == next_secret
    assert Tenant.objects.get(pk=tenant.pk).user_token_secret == user_secret


@pytest.mark.django_db
def test_plain_value_from_before_is_read(tenant):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE tenants_tenant SET user_token_secret = %s WHERE id = %s",
            ["legacy-plain-secret-0123456789", tenant.pk],
        )

    assert Tenant.objects.get(pk=tenant.pk).user_token_secret == "legacy-plain-secret-0123456789"


@pytest.mark.django_db
def test_reencrypt_command_after_key_rotation(tenant, settings, old_key, capsys):
    webhook_secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)
    user_secret = user_token_secret_set(tenant=tenant)
    before = raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk)
    updated_at = Tenant.objects.get(pk=tenant.pk).updated_at
    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    call_command("reencrypt_secrets", "--dry-run")

    assert capsys.readouterr().out == "Would re-encrypt 2 secrets; 0 already use the first key.\n"
    assert raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk) == before

    call_command("reencrypt_secrets")

    assert capsys.readouterr().out == "Re-encrypted 2 secrets; 0 already use the first key.\n"
    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY]
    assert WebhookSettings.objects.get(pk=tenant.webhook_settings.pk).secret == webhook_secret
    tenant_after = Tenant.objects.get(pk=tenant.pk)
    assert tenant_after.user_token_secret == user_secret
    assert tenant_after.updated_at == updated_at
    call_command("reencrypt_secrets")
    assert capsys.readouterr().out == "Re-encrypted 0 secrets; 2 already use the first key.\n"


@pytest.mark.django_db
def test_reencrypt_command_counts_one_secret(tenant, settings, old_key, capsys):
    webhook_secret_set(webhook_settings=tenant.webhook_settings)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    call_command("reencrypt_secrets")
    capsys.readouterr()
    settings.VIZOCHOK_ENCRYPTION_KEYS = [OLD_KEY, NEW_KEY]
    user_token_secret_set(tenant=tenant)

    call_command("reencrypt_secrets", "--dry-run")

    assert capsys.readouterr().out == "Would re-encrypt 1 secret; 1 already uses the first key.\n"


@pytest.mark.django_db
def test_reencrypt_leaves_undecryptable_values(tenant, settings, old_key, capsys):
    webhook_secret_set(webhook_settings=tenant.webhook_settings)
    before = raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [UNKNOWN_KEY]

    with pytest.raises(SystemExit) as exit_info:
        call_command("reencrypt_secrets")

    assert exit_info.value.code == 1
    output = capsys.readouterr()
    assert output.out == "Re-encrypted 0 secrets; 0 already use the first key.\n"
    assert output.err == (
        "1 secret cannot be decrypted with any configured key and was left unchanged (see "
        "the tenants.secret.undecryptable log lines). Add the key that encrypted it to "
        "VIZOCHOK_ENCRYPTION_KEYS (or, while that is unset, the old DJANGO_SECRET_KEY to "
        "DJANGO_SECRET_KEY_FALLBACKS), or set new secrets for those tenants with "
        "rotate_webhook_secret --overlap-hours 0 and the admin action 'Generate a new user "
        "token secret'.\n"
    )
    assert raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk) == before


@pytest.mark.django_db
def test_undecryptable_user_token_secret(tenant, public_key, settings, old_key, caplog):
    secret = user_token_secret_set(tenant=tenant)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [UNKNOWN_KEY]

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {public_key.raw_key}")
    token = user_token_sign(secret=secret, user_id="u-1", expires_at=int(time.time()) + 600)

    response = client.post(
        "/api/v1/conversations",
        {"store_id": "store-1", "user_id": "u-1", "user_token": token},
        format="json",
    )

    assert response.status_code == 503
    assert response.json() == {
        "detail": "A stored secret cannot be decrypted with the configured keys.",
        "code": "secret_undecryptable",
    }
    assert Conversation.objects.count() == 0
    events = [record.message for record in caplog.records]
    assert "tenants.secret.undecryptable" in events
    assert secret not in caplog.text
    assert OLD_KEY not in caplog.text


@pytest.mark.django_db
def test_undecryptable_secret_in_the_admin(tenant, admin_client, settings, old_key):
    webhook_secret_set(webhook_settings=tenant.webhook_settings)
    user_token_secret_set(tenant=tenant)
    stored = raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [UNKNOWN_KEY]

    webhook_page = admin_client.get(
        f"/admin/tenants/webhooksettings/{tenant.webhook_settings.pk}/change/"
    )
    tenant_page = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")
    list_page = admin_client.get("/admin/tenants/webhooksettings/")

    assert webhook_page.status_code == 200
    assert (
        "Set, but the current secret cannot be decrypted with any key in "
        "VIZOCHOK_ENCRYPTION_KEYS, so webhook calls fail with secret_undecryptable."
    ) in webhook_page.content.decode()
    assert tenant_page.status_code == 200
    assert (
        "Set, but it cannot be decrypted with any key in VIZOCHOK_ENCRYPTION_KEYS"
        in tenant_page.content.decode()
    )
    assert list_page.status_code == 200
    assert raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk) == stored


@pytest.mark.django_db
def test_rotation_replaces_an_undecryptable_secret(tenant, settings, old_key):
    webhook_secret_set(webhook_settings=tenant.webhook_settings)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY]

    new_secret = webhook_secret_set(
        webhook_settings=WebhookSettings.objects.get(pk=tenant.webhook_settings.pk),
        overlap=timedelta(hours=24),
    )

    reloaded = WebhookSettings.objects.get(pk=tenant.webhook_settings.pk)
    assert reloaded.secret == new_secret
    assert reloaded.next_secret == ""
    assert reloaded.next_secret_promote_at is None


@pytest.mark.django_db
def test_rotation_drops_an_undecryptable_next_secret(tenant, old_key):
    current_secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)
    lost_secret = ENCRYPTED_PREFIX + Fernet(UNKNOWN_KEY).encrypt(b"n" * 43).decode()
    WebhookSettings.objects.filter(pk=tenant.webhook_settings.pk).update(
        next_secret=StoredSecret(lost_secret),
        next_secret_promote_at=timezone.now() + timedelta(hours=1),
    )

    before = timezone.now()
    new_secret = webhook_secret_set(
        webhook_settings=WebhookSettings.objects.get(pk=tenant.webhook_settings.pk),
        overlap=timedelta(hours=24),
    )

    reloaded = WebhookSettings.objects.get(pk=tenant.webhook_settings.pk)
    assert reloaded.secret == current_secret
    assert reloaded.next_secret == new_secret
    assert reloaded.next_secret_promote_at >= before + timedelta(hours=24)
    assert reloaded.next_secret_promote_at <= timezone.now() + timedelta(hours=24)


@pytest.mark.django_db
def test_undecryptable_secret_in_the_admin_api(tenant, secret_key, settings, old_key):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    webhook_settings = tenant.webhook_settings
    webhook_settings.products_url = "http://127.0.0.1:9/products"
    webhook_settings.save()
    webhook_secret_set(webhook_settings=webhook_settings)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [UNKNOWN_KEY]

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key.raw_key}")

    settings_response = client.get("/api/v1/admin/webhooks")
    test_response = client.post("/api/v1/admin/webhooks/test", {"kind": "products"}, format="json")

    assert settings_response.status_code == 200
    assert settings_response.json()["has_secret"] is True
    assert test_response.status_code == 200
    body = test_response.json()
    assert body["ok"] is False
    assert body["error_code"] == "secret_undecryptable"
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == WebhookDelivery.Outcome.SECRET_UNDECRYPTABLE
    assert delivery.error_code == "secret_undecryptable"
    assert delivery.status_code is None


def test_malformed_encryption_key_is_rejected(monkeypatch):
    from vizochok import settings as settings_module

    monkeypatch.setenv("VIZOCHOK_ENCRYPTION_KEYS", f"{OLD_KEY},not-a-key")

    with pytest.raises(ImproperlyConfigured) as error:
        settings_module._encryption_keys()

    assert str(error.value).startswith(
        "VIZOCHOK_ENCRYPTION_KEYS: key 2 of 2 is not a valid Fernet key"
    )
    assert "not-a-key" not in str(error.value)


def test_default_keys_follow_the_django_keys(monkeypatch):
    from vizochok import settings as settings_module

    monkeypatch.delenv("VIZOCHOK_ENCRYPTION_KEYS", raising=False)
    monkeypatch.setattr(settings_module, "SECRET_KEY", "current-django-key")
    monkeypatch.setattr(settings_module, "SECRET_KEY_FALLBACKS", ["old-django-key"])

    keys = settings_module._encryption_keys()

    assert keys == [
        settings_module._derived_encryption_key("current-django-key"),
        settings_module._derived_encryption_key("old-django-key"),
    ]
    assert keys[0] != keys[1]
    Fernet(keys[0])


@pytest.mark.django_db(transaction=True)
def test_migration_encrypts_and_decrypts_old_rows(settings):
    settings.VIZOCHOK_ENCRYPTION_KEYS = [OLD_KEY]
    executor = MigrationExecutor(connection)
    before = [("tenants", "0004_widget_allowed_origins")]
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    old_tenant = old_apps.get_model("tenants", "Tenant").objects.create(
        name="Old", slug="old", user_token_secret="plain-user-token-secret-01234567890"
    )
    old_settings = old_apps.get_model("tenants", "WebhookSettings").objects.create(
        tenant=old_tenant,
        secret="plain-webhook-secret-0123456789",
        next_secret="plain-next-secret-0123456789",
    )
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

        for table, column, row_id, plain in [
            ("tenants_tenant", "user_token_secret", old_tenant.pk, "plain-user-token"),
            ("tenants_webhooksettings", "secret", old_settings.pk, "plain-webhook"),
            ("tenants_webhooksettings", "next_secret", old_settings.pk, "plain-next"),
        ]:
            stored = raw_column(table, column, row_id)
            assert stored.startswith(ENCRYPTED_PREFIX), column
            assert plain not in stored, column
        assert WebhookSettings.objects.get(pk=old_settings.pk).secret == (
            "plain-webhook-secret-0123456789"
        )

        executor = MigrationExecutor(connection)
        executor.migrate(before)

        assert raw_column("tenants_tenant", "user_token_secret", old_tenant.pk) == (
            "plain-user-token-secret-01234567890"
        )
        assert raw_column("tenants_webhooksettings", "secret", old_settings.pk) == (
            "plain-webhook-secret-0123456789"
        )
        assert raw_column("tenants_webhooksettings", "next_secret", old_settings.pk) == (
            "plain-next-secret-0123456789"
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)


@pytest.mark.django_db(transaction=True)
def test_reverse_migration_stops_on_undecryptable_secret(settings):
    settings.VIZOCHOK_ENCRYPTION_KEYS = [OLD_KEY]
    tenant = Tenant.objects.create(name="Old", slug="old")
    user_token_secret_set(tenant=tenant)
    stored = raw_column("tenants_tenant", "user_token_secret", tenant.pk)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()

    try:
        with pytest.raises(CommandError) as raised:
            call_command("migrate", "tenants", "0004_widget_allowed_origins", verbosity=0)
        applied = MigrationRecorder(connection).applied_migrations()
    finally:
        # The migrations after 0005 were reversed, each in its own transaction, before 0005
        # stopped. The later tests need the latest schema again.
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)

    assert str(raised.value) == (
        f"tenants_tenant.user_token_secret of row {tenant.pk} cannot be decrypted with any "
        "key in VIZOCHOK_ENCRYPTION_KEYS. Add the key that encrypted it and migrate again. "
        "Nothing was changed."
    )
    assert raw_column("tenants_tenant", "user_token_secret", tenant.pk) == stored
    assert ("tenants", "0005_encrypt_secrets") in applied


@pytest.mark.django_db
def test_full_save_keeps_a_newer_secret(tenant, settings, old_key):
    user_token_secret_set(tenant=tenant)
    stale = Tenant.objects.get(pk=tenant.pk)
    new_secret = user_token_secret_set(tenant=Tenant.objects.get(pk=tenant.pk))
    stored = raw_column("tenants_tenant", "user_token_secret", tenant.pk)

    stale.name = "Renamed"
    stale.save()

    assert raw_column("tenants_tenant", "user_token_secret", tenant.pk) == stored
    reloaded = Tenant.objects.get(pk=tenant.pk)
    assert reloaded.name == "Renamed"
    assert reloaded.user_token_secret == new_secret


@pytest.mark.django_db
def test_full_save_after_reencryption(tenant, settings, old_key):
    webhook_secret_set(webhook_settings=tenant.webhook_settings)
    user_secret = user_token_secret_set(tenant=tenant)
    stale = Tenant.objects.get(pk=tenant.pk)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    call_command("reencrypt_secrets")
    reencrypted = raw_column("tenants_tenant", "user_token_secret", tenant.pk)

    stale.name = "Renamed"
    stale.save()

    assert raw_column("tenants_tenant", "user_token_secret", tenant.pk) == reencrypted
    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY]
    assert Tenant.objects.get(pk=tenant.pk).user_token_secret == user_secret


@pytest.mark.django_db
def test_full_save_of_undecryptable_row(tenant, settings, old_key, caplog):
    user_token_secret_set(tenant=tenant)
    webhook_secret_set(webhook_settings=tenant.webhook_settings)
    stored_user = raw_column("tenants_tenant", "user_token_secret", tenant.pk)
    stored_webhook = raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [UNKNOWN_KEY]

    loaded = Tenant.objects.get(pk=tenant.pk)
    loaded.name = "Renamed"
    loaded.save()
    webhook_settings = WebhookSettings.objects.get(pk=tenant.webhook_settings.pk)
    webhook_settings.timeout_seconds = 9
    webhook_settings.save()

    assert Tenant.objects.get(pk=tenant.pk).name == "Renamed"
    assert WebhookSettings.objects.get(pk=tenant.webhook_settings.pk).timeout_seconds == 9
    assert raw_column("tenants_tenant", "user_token_secret", tenant.pk) == stored_user
    assert (
        raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk)
        == stored_webhook
    )
    assert "tenants.secret.undecryptable" not in caplog.text


@pytest.mark.django_db
def test_admin_api_secret_replaces_undecryptable(tenant, secret_key, settings, old_key):
    webhook_secret_set(webhook_settings=tenant.webhook_settings)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [UNKNOWN_KEY]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key.raw_key}")
    new_secret = "merchant-chosen-secret-0123456789"

    response = client.patch(
        "/api/v1/admin/webhooks", {"secret": new_secret, "timeout_seconds": 7}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"ok": True, "has_secret": True}
    reloaded = WebhookSettings.objects.get(pk=tenant.webhook_settings.pk)
    assert reloaded.secret == new_secret
    assert reloaded.next_secret == ""
    assert reloaded.timeout_seconds == 7


@pytest.mark.django_db
def test_dumpdata_and_loaddata_keep_ciphertext(tenant, settings, old_key, tmp_path):
    webhook_secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)
    user_secret = user_token_secret_set(tenant=tenant)
    stored_user = raw_column("tenants_tenant", "user_token_secret", tenant.pk)
    stored_webhook = raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk)
    dump = tmp_path / "tenants.json"

    call_command("dumpdata", "tenants.tenant", "tenants.webhooksettings", output=str(dump))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tenants_tenant SET user_token_secret = ''")
        cursor.execute("UPDATE tenants_webhooksettings SET secret = ''")
    call_command("loaddata", str(dump), verbosity=0)

    text = dump.read_text()
    assert webhook_secret not in text
    assert user_secret not in text
    assert stored_user in text
    assert stored_webhook in text
    # loaddata saves through the attribute, so each secret is encrypted once more, not twice.
    loaded_user = raw_column("tenants_tenant", "user_token_secret", tenant.pk)
    loaded_webhook = raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk)
    assert loaded_user.startswith(ENCRYPTED_PREFIX)
    assert loaded_webhook.startswith(ENCRYPTED_PREFIX)
    assert decrypt(loaded_user) == user_secret
    assert decrypt(loaded_webhook) == webhook_secret
    assert Tenant.objects.get(pk=tenant.pk).user_token_secret == user_secret
    assert WebhookSettings.objects.get(pk=tenant.webhook_settings.pk).secret == webhook_secret


@pytest.mark.django_db
def test_switch_from_derived_to_explicit_key(tenant, settings, capsys):
    from vizochok import settings as settings_module

    derived_key = settings_module._derived_encryption_key("current-django-key")
    settings.VIZOCHOK_ENCRYPTION_KEYS = [derived_key]
    webhook_secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)
    user_secret = user_token_secret_set(tenant=tenant)

    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY]
    assert not secret_is_readable(Tenant.objects.get(pk=tenant.pk), "user_token_secret")

    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY, derived_key]
    call_command("reencrypt_secrets")

    assert capsys.readouterr().out == "Re-encrypted 2 secrets; 0 already use the first key.\n"
    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY]
    assert WebhookSettings.objects.get(pk=tenant.webhook_settings.pk).secret == webhook_secret
    assert Tenant.objects.get(pk=tenant.pk).user_token_secret == user_secret


@pytest.mark.django_db
def test_admin_edits_tenant_with_undecryptable_secret(tenant, admin_client, settings, old_key):
    user_token_secret_set(tenant=tenant)
    stored = raw_column("tenants_tenant", "user_token_secret", tenant.pk)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [UNKNOWN_KEY]
    form = {
        "name": "Renamed",
        "slug": tenant.slug,
        "is_active": "on",
        "version": page_version(tenant),
        "assistant_settings-TOTAL_FORMS": 0,
        "assistant_settings-INITIAL_FORMS": 0,
        "assistant_settings-MIN_NUM_FORMS": 0,
        "assistant_settings-MAX_NUM_FORMS": 1,
    }

    response = admin_client.post(f"/admin/tenants/tenant/{tenant.pk}/change/", form)

    assert response.status_code == 302
    assert Tenant.objects.get(pk=tenant.pk).name == "Renamed"
    assert raw_column("tenants_tenant", "user_token_secret", tenant.pk) == stored


@pytest.mark.django_db
def test_custom_secret_with_the_prefix_is_rejected(tenant, old_key):
    webhook_secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)
    stored = raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk)

    with pytest.raises(InvalidInput) as raised:
        webhook_secret_set(
            webhook_settings=tenant.webhook_settings, secret=f"{ENCRYPTED_PREFIX}{'x' * 30}"
        )

    assert raised.value.extra["fields"] == {"secret": ["A secret must not start with 'enc:v1:'."]}
    assert raw_column("tenants_webhooksettings", "secret", tenant.webhook_settings.pk) == stored
    assert WebhookSettings.objects.get(pk=tenant.webhook_settings.pk).secret == webhook_secret


@pytest.mark.django_db
def test_refresh_drops_cached_relations(tenant):
    loaded = Tenant.objects.prefetch_related("api_keys").get(pk=tenant.pk)
    cached_settings = loaded.webhook_settings
    WebhookSettings.objects.filter(pk=cached_settings.pk).update(timeout_seconds=17)
    api_key_create(tenant=tenant, kind=ApiKey.Kind.SECRET)

    loaded.refresh_from_db()

    assert loaded.webhook_settings is not cached_settings
    assert loaded.webhook_settings.timeout_seconds == 17
    assert loaded.api_keys.count() == 1
    assert len(loaded.api_keys.all()) == 1


def test_documented_key_print_command(settings, capsys):
    # The command of docs/deployment.md that prints the keys before they become explicit.
    settings.VIZOCHOK_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    code = 'from django.conf import settings; print(",".join(settings.VIZOCHOK_ENCRYPTION_KEYS))'

    call_command("shell", "--no-imports", "-c", code)
    assert capsys.readouterr().out == f"{NEW_KEY},{OLD_KEY}\n"

    # Without --no-imports, Django 5.2 prints its import banner into the same output.
    call_command("shell", "-c", code)
    with_banner = capsys.readouterr().out
    assert with_banner.endswith(f"\n{NEW_KEY},{OLD_KEY}\n")
    assert "objects imported automatically" in with_banner
