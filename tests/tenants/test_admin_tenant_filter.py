"""The tenant filter and tenant slug search of every changelist of tenant-owned rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.db import models

from catalog.models import CatalogJob
from tenants import admin as tenants_admin
from tenants.models import ApiKey, Tenant, WebhookSettings
from tenants.services import api_key_create
from tests.factories import ConversationFactory, ProductFactory, TenantFactory
from webhooks.models import CircuitBreaker, WebhookDelivery, WebhookKind

pytestmark = pytest.mark.django_db


def _api_key(tenant: Tenant) -> models.Model:
    return ApiKey.objects.get(pk=api_key_create(tenant=tenant, kind=ApiKey.Kind.PUBLIC).api_key.pk)


def _delivery(tenant: Tenant) -> models.Model:
    return WebhookDelivery.objects.create(
        tenant=tenant,
        kind=WebhookKind.PRODUCTS,
        call_id=uuid.uuid4(),
        delivery_id=uuid.uuid4(),
        url="https://shop.example/products",
        attempt=1,
        status_code=200,
        outcome="success",
        duration_ms=12,
    )


# Changelist URL and a function that adds one row of the given tenant. Webhook settings
# exist already: the tenant fixtures create them.
CHANGELISTS: dict[str, tuple[str, Callable[[Tenant], models.Model]]] = {
    "api keys": ("/admin/tenants/apikey/", _api_key),
    "webhook settings": (
        "/admin/tenants/webhooksettings/",
        lambda tenant: WebhookSettings.objects.get(tenant=tenant),
    ),
    "products": ("/admin/catalog/product/", lambda tenant: ProductFactory(tenant=tenant)),
    "catalog jobs": (
        "/admin/catalog/catalogjob/",
        lambda tenant: CatalogJob.objects.create(tenant=tenant, source=CatalogJob.Source.API),
    ),
    "webhook deliveries": ("/admin/webhooks/webhookdelivery/", _delivery),
    "circuit breakers": (
        "/admin/webhooks/circuitbreaker/",
        lambda tenant: CircuitBreaker.objects.create(tenant=tenant, kind=WebhookKind.CART),
    ),
    "conversations": (
        "/admin/conversations/conversation/",
        lambda tenant: ConversationFactory(tenant=tenant),
    ),
}


def listed_pks(response) -> list[int]:
    assert response.status_code == 200
    return sorted(row.pk for row in response.context["cl"].result_list)


def tenant_filter_choices(response) -> list[str]:
    [tenant_filter] = [
        spec
        for spec in response.context["cl"].filter_specs
        if isinstance(spec, tenants_admin.TenantListFilter)
    ]
    return [choice["display"] for choice in tenant_filter.choices(response.context["cl"])]


@pytest.mark.parametrize("name", CHANGELISTS)
def test_tenant_filter_narrows_list(admin_client, tenant, other_tenant, name):
    url, add_row = CHANGELISTS[name]
    own = add_row(tenant)
    other = add_row(other_tenant)

    everything = admin_client.get(url)
    filtered = admin_client.get(url, {"tenant__id__exact": tenant.pk})

    assert listed_pks(everything) == sorted([own.pk, other.pk])
    assert listed_pks(filtered) == [own.pk]
    assert tenant_filter_choices(everything) == ["All", "Shop A", "Shop B"]


@pytest.mark.parametrize("name", CHANGELISTS)
def test_search_by_exact_tenant_slug(admin_client, tenant, other_tenant, name):
    url, add_row = CHANGELISTS[name]
    own = add_row(tenant)
    add_row(other_tenant)

    found = admin_client.get(url, {"q": "shop-a"})
    partial = admin_client.get(url, {"q": "hop-a"})

    assert listed_pks(found) == [own.pk]
    assert listed_pks(partial) == []


def test_tenant_filter_lists_only_selected_past_limit(
    admin_client, tenant, other_tenant, monkeypatch
):
    monkeypatch.setattr(tenants_admin, "MAX_LISTED_TENANTS", 2)
    TenantFactory(name="Shop C", slug="shop-c")
    url = "/admin/conversations/conversation/"
    own = ConversationFactory(tenant=tenant)
    other = ConversationFactory(tenant=other_tenant)

    unfiltered = admin_client.get(url)
    filtered = admin_client.get(url, {"tenant__id__exact": tenant.pk})

    # A filter without choices is left out of the sidebar.
    assert not any(
        isinstance(spec, tenants_admin.TenantListFilter)
        for spec in unfiltered.context["cl"].filter_specs
    )
    assert listed_pks(unfiltered) == sorted([own.pk, other.pk])
    assert tenant_filter_choices(filtered) == ["All", "Shop A"]
    assert listed_pks(filtered) == [own.pk]


@pytest.mark.parametrize("value", ["abc", "1.5", "99999999999999999999", "٣"])
def test_tenant_filter_past_limit_ignores_invalid_pk(admin_client, tenant, monkeypatch, value):
    monkeypatch.setattr(tenants_admin, "MAX_LISTED_TENANTS", 0)
    conversation = ConversationFactory(tenant=tenant)

    response = admin_client.get("/admin/conversations/conversation/", {"tenant__id__exact": value})

    # Django's changelist ignores a tenant id that is no integer, with or without the limit.
    assert listed_pks(response) == [conversation.pk]
    assert not any(
        isinstance(spec, tenants_admin.TenantListFilter)
        for spec in response.context["cl"].filter_specs
    )
