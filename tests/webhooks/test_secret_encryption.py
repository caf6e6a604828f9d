"""Encrypted signing secrets: requests still verify at the reference merchant over HTTP, and
a secret that no key decrypts stops the call before anything is sent."""

import logging
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from merchant.server import start_merchant
from tenants.models import WebhookSettings
from tenants.services import webhook_secret_set
from tests.conversations.shop_data import CATALOG, STOCK
from webhooks.calls import FailureReason, signing_secrets
from webhooks.dispatch import products_fetch
from webhooks.models import CircuitBreaker, WebhookDelivery

pytestmark = pytest.mark.django_db

SKU = CATALOG[0]["sku"]


@pytest.fixture
def local_webhooks(settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.WEBHOOK_RETRY_DELAY_SECONDS = 0
    settings.VIZOCHOK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]


def configure(tenant, url: str) -> WebhookSettings:
    webhook_settings = WebhookSettings.objects.get(tenant=tenant)
    webhook_settings.products_url = url
    webhook_settings.save()
    return webhook_settings


def fetch_from_merchant(tenant, *, merchant_secret: str):
    """Fetch SKU from a reference merchant that verifies signatures with ``merchant_secret``."""
    server = start_merchant(secret=merchant_secret, stock=STOCK, catalog=CATALOG)
    try:
        configure(tenant, server.products_url)
        return products_fetch(tenant=tenant, skus=[SKU], store_id="store-1")
    finally:
        server.shutdown()


def test_merchant_verifies_encrypted_secret(tenant, local_webhooks):
    secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)

    result = fetch_from_merchant(tenant, merchant_secret=secret)

    assert result.failure is None
    assert list(result.available) == [SKU]


def test_merchant_on_next_secret_verifies(tenant, local_webhooks):
    webhook_secret_set(webhook_settings=tenant.webhook_settings)
    next_secret = webhook_secret_set(
        webhook_settings=tenant.webhook_settings, overlap=timedelta(hours=1)
    )

    result = fetch_from_merchant(tenant, merchant_secret=next_secret)

    assert result.failure is None
    assert list(result.available) == [SKU]


def test_promotion_moves_the_encrypted_secret(tenant, local_webhooks):
    webhook_secret_set(webhook_settings=tenant.webhook_settings)
    next_secret = webhook_secret_set(
        webhook_settings=tenant.webhook_settings, overlap=timedelta(hours=1)
    )
    WebhookSettings.objects.filter(tenant=tenant).update(
        next_secret_promote_at=tenant.webhook_settings.next_secret_promote_at - timedelta(hours=2)
    )

    result = fetch_from_merchant(tenant, merchant_secret=next_secret)

    assert result.failure is None
    promoted = WebhookSettings.objects.get(tenant=tenant)
    assert promoted.secret == next_secret
    assert promoted.next_secret == ""
    assert promoted.next_secret_promote_at is None


def test_undecryptable_secret_sends_nothing(tenant, local_webhooks, settings, caplog):
    secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)
    server = start_merchant(secret=secret, stock=STOCK, catalog=CATALOG)
    try:
        configure(tenant, server.products_url)
        settings.VIZOCHOK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

        with caplog.at_level(logging.INFO):
            result = products_fetch(tenant=tenant, skus=[SKU], store_id="store-1")
        received = server.requests
    finally:
        server.shutdown()

    assert result.failure == FailureReason.ERROR
    assert result.available == {}
    assert received == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == WebhookDelivery.Outcome.SECRET_UNDECRYPTABLE
    assert delivery.error_code == "secret_undecryptable"
    assert delivery.attempt == 1
    assert CircuitBreaker.objects.count() == 0
    events = [record.message for record in caplog.records]
    assert "tenants.secret.undecryptable" in events
    assert "webhooks.delivery" in events
    assert secret not in caplog.text


def test_stale_instances_promote_once(tenant, local_webhooks, caplog):
    old_secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)
    rotating = WebhookSettings.objects.get(tenant=tenant)
    next_secret = webhook_secret_set(webhook_settings=rotating, overlap=timedelta(hours=1))
    past = timezone.now() - timedelta(minutes=1)
    WebhookSettings.objects.filter(tenant=tenant).update(next_secret_promote_at=past)
    rotating.next_secret_promote_at = past
    loaded = WebhookSettings.objects.get(tenant=tenant)

    with caplog.at_level(logging.INFO):
        # ``rotating`` contains the next secret as assigned, in plain text, so its conditional
        # update matches no row. ``loaded`` contains the stored value and promotes.
        from_rotating = signing_secrets(webhook_settings=rotating)
        from_loaded = signing_secrets(webhook_settings=loaded)
        again = signing_secrets(webhook_settings=rotating)

    assert from_rotating == (old_secret, next_secret)
    assert from_loaded == (next_secret, None)
    assert again == (next_secret, None)
    events = [record.message for record in caplog.records]
    assert events.count("webhooks.secret.promoted") == 1
    promoted = WebhookSettings.objects.get(tenant=tenant)
    assert promoted.secret == next_secret
    assert promoted.next_secret == ""
    assert promoted.next_secret_promote_at is None
