"""Fixtures shared by the whole suite: tenants, keys, API clients and the merchant."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from catalog.search import search_worker_close
from merchant.server import MerchantServer, start_merchant
from tenants.models import ApiKey
from tenants.services import IssuedApiKey, api_key_create
from tests.factories import TenantFactory, WebhookSettingsFactory


@pytest.fixture(autouse=True)
def _search_worker_closed() -> Iterator[None]:
    """Close the search thread's connection after each test that started it.

    A search outside a transaction opens it, and an open connection would stop the test
    database from being dropped.
    """
    yield
    search_worker_close()


@pytest.fixture
def tenant(db):
    tenant = TenantFactory(name="Shop A", slug="shop-a")
    WebhookSettingsFactory(tenant=tenant)
    return tenant


@pytest.fixture
def other_tenant(db):
    tenant = TenantFactory(name="Shop B", slug="shop-b")
    WebhookSettingsFactory(tenant=tenant)
    return tenant


@pytest.fixture
def public_key(tenant) -> IssuedApiKey:
    return api_key_create(tenant=tenant, kind=ApiKey.Kind.PUBLIC)


@pytest.fixture
def secret_key(tenant) -> IssuedApiKey:
    return api_key_create(tenant=tenant, kind=ApiKey.Kind.SECRET)


@pytest.fixture
def other_public_key(other_tenant) -> IssuedApiKey:
    return api_key_create(tenant=other_tenant, kind=ApiKey.Kind.PUBLIC)


@pytest.fixture
def other_secret_key(other_tenant) -> IssuedApiKey:
    return api_key_create(tenant=other_tenant, kind=ApiKey.Kind.SECRET)


def _client_with(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def chat_client(public_key) -> APIClient:
    """An API client authenticated with tenant A's public key."""
    return _client_with(public_key.raw_key)


@pytest.fixture
def server_client(secret_key) -> APIClient:
    """An API client authenticated with tenant A's secret key."""
    return _client_with(secret_key.raw_key)


@pytest.fixture
def other_chat_client(other_public_key) -> APIClient:
    return _client_with(other_public_key.raw_key)


@pytest.fixture
def other_server_client(other_secret_key) -> APIClient:
    return _client_with(other_secret_key.raw_key)


DEMO_DATA = Path(__file__).resolve().parent.parent / "demo" / "data"


@pytest.fixture
def local_webhooks(settings):
    """Allow webhook URLs on 127.0.0.1 over plain HTTP, as the local test servers need."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    return settings


@pytest.fixture
def merchant(tenant, local_webhooks) -> Iterator[MerchantServer]:
    """The reference merchant with the ATB demo prices, wired to tenant A's webhooks."""
    server = start_merchant(
        secret=tenant.webhook_settings.secret,
        stock_path=DEMO_DATA / "atb-stock.json",
        catalog_path=DEMO_DATA / "atb-catalog.jsonl",
    )
    webhook_settings = tenant.webhook_settings
    webhook_settings.products_url = server.products_url
    webhook_settings.cart_url = server.cart_url
    webhook_settings.cart_get_url = server.cart_get_url
    webhook_settings.save()
    yield server
    server.shutdown()
