"""Fixtures shared by the whole suite: tenants, keys and API clients."""

import pytest
from rest_framework.test import APIClient

from tenants.models import ApiKey
from tenants.services import IssuedApiKey, api_key_create
from tests.factories import TenantFactory, WebhookSettingsFactory


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
