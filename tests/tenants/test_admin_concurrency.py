"""Concurrent creation of one tenant slug or one tenant's webhook settings, and concurrent
saves of one tenant.

The first save runs on its own connection and commits once the second one waits for it.

These tests commit their data (``transaction=True``), because the thread's connection
cannot see a test transaction's rows.
"""

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, connections, transaction

from tenants import services
from tenants.models import AssistantSettings, Tenant, WebhookSettings
from tests.tenants.test_admin import ADD_URL, tenant_form
from tests.tenants.test_admin_stale_pages import TENANT_CHANGED, open_tenant_page
from tests.webhooks.test_admin import settings_form
from vizochok.exceptions import InvalidInput

pytestmark = pytest.mark.django_db(transaction=True)


def _other_session_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def _first_save(lock: Callable[[], None], insert: Callable[[], None]) -> threading.Thread:
    """Start a thread that locks, inserts, and commits once another session waits for it."""
    inserted = threading.Event()

    def run() -> None:
        try:
            with transaction.atomic():
                lock()
                insert()
                inserted.set()
                deadline = time.monotonic() + 10
                while not _other_session_waits_for_a_lock() and time.monotonic() < deadline:
                    time.sleep(0.02)
        finally:
            inserted.set()
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert inserted.wait(10)
    return thread


def test_double_submit_of_tenant_slug(admin_client):
    thread = _first_save(
        lambda: services.tenant_slug_lock(slug="race"),
        lambda: Tenant.objects.create(name="First", slug="race"),
    )

    response = admin_client.post(ADD_URL, tenant_form(name="Second", slug="race"))
    thread.join()

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "slug": ["Tenant with this Slug already exists."]
    }
    assert list(Tenant.objects.values_list("name", flat=True)) == ["First"]


def test_double_submit_of_webhook_settings(admin_client):
    tenant = Tenant.objects.create(name="Shop", slug="shop")
    thread = _first_save(
        lambda: services.webhook_settings_create_lock(tenant_id=tenant.pk),
        lambda: WebhookSettings.objects.create(tenant=tenant, timeout_seconds=7),
    )

    response = admin_client.post(
        "/admin/tenants/webhooksettings/add/", settings_form(tenant, timeout_seconds=9)
    )
    thread.join()

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "tenant": ["Webhook settings with this Tenant already exists."]
    }
    assert list(WebhookSettings.objects.values_list("timeout_seconds", flat=True)) == [7]


def test_tenant_create_waits_for_slug():
    thread = _first_save(
        lambda: services.tenant_slug_lock(slug="race"),
        lambda: Tenant.objects.create(name="First", slug="race"),
    )

    with pytest.raises(InvalidInput) as raised:
        services.tenant_create(name="Second", slug="race")
    thread.join()

    assert raised.value.extra["fields"] == {"slug": ["Tenant with this Slug already exists."]}
    assert list(Tenant.objects.values_list("name", flat=True)) == ["First"]


def test_simultaneous_tenant_saves(admin_client):
    tenant = Tenant.objects.create(name="Shop", slug="shop")
    AssistantSettings.objects.create(tenant=tenant)
    opened = open_tenant_page(admin_client, tenant)
    locked = Tenant.objects.select_for_update().filter(pk=tenant.pk)
    thread = _first_save(
        lambda: list(locked),
        lambda: Tenant.objects.filter(pk=tenant.pk).update(is_active=False),
    )

    response = admin_client.post(f"/admin/tenants/tenant/{tenant.pk}/change/", opened)
    thread.join()

    stored = Tenant.objects.get(pk=tenant.pk)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"__all__": [TENANT_CHANGED]}
    assert stored.is_active is False
