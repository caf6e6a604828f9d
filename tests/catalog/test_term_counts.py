"""The per-lexeme document counts that the product table's triggers keep (TermCount)."""

import importlib

import numpy as np
from django.db import connection, transaction

from catalog.models import Product, TermCount
from catalog.schemas import product_input_parse
from catalog.search import SearchMethod, product_search
from catalog.services import (
    product_upsert_many,
    products_delete,
    products_embed_pending,
    term_counts_recount,
)
from tenants.models import Tenant
from tests.catalog.helpers import FixedEmbedder

_COUNTS_FROM_PRODUCTS = """
SELECT tenant_id, entry.lexeme, count(*)
FROM catalog_product, unnest(search_vector) AS entry
WHERE is_active
GROUP BY tenant_id, entry.lexeme
"""


def _stored_counts() -> dict[tuple[int, str], int]:
    return {
        (tenant_id, lexeme): documents
        for tenant_id, lexeme, documents in TermCount.objects.values_list(
            "tenant_id", "lexeme", "documents"
        )
    }


def _counted_counts() -> dict[tuple[int, str], int]:
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS_FROM_PRODUCTS)
        return {(tenant_id, lexeme): documents for tenant_id, lexeme, documents in cursor}


def _counts(tenant: Tenant) -> dict[str, int]:
    """Return ``tenant``'s stored counts, after checking all of them against the products."""
    stored = _stored_counts()
    assert stored == _counted_counts()
    return {
        lexeme: documents
        for (tenant_id, lexeme), documents in stored.items()
        if tenant_id == tenant.pk
    }


def _execute(sql: str, params: list | None = None) -> None:
    """Run a raw SQL statement, as a write that bypasses the catalog services does."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _upsert(tenant: Tenant, *products: dict) -> None:
    product_upsert_many(tenant=tenant, products=[product_input_parse(item) for item in products])


def test_term_counts_follow_renames(tenant):
    _upsert(
        tenant,
        {"sku": "milk", "name": "Milk 2.5%"},
        {"sku": "kefir", "name": "Kefir", "description": "Milk drink"},
    )
    created = _counts(tenant)
    _upsert(tenant, {"sku": "milk", "name": "Yogurt"})

    assert created == {"milk": 2, "2.5": 1, "kefir": 1, "drink": 1}
    assert _counts(tenant) == {"yogurt": 1, "milk": 1, "kefir": 1, "drink": 1}


def test_term_counts_skip_inactive_products(tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"}, {"sku": "bread", "name": "Bread"})
    _upsert(tenant, {"sku": "milk", "name": "Milk", "is_active": False})
    inactive = _counts(tenant)
    _upsert(tenant, {"sku": "milk", "name": "Milk"})

    # A lexeme that no active product contains has no row.
    assert inactive == {"bread": 1}
    assert _counts(tenant) == {"bread": 1, "milk": 1}


def test_term_counts_follow_deletes(tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"}, {"sku": "bread", "name": "Milk bread"})

    products_delete(products=Product.objects.filter(tenant=tenant, sku="bread"))

    assert _counts(tenant) == {"milk": 1}


def test_term_counts_follow_raw_sql(tenant, embedder):
    # Before the counts were kept by triggers, search cached which stems occur, so a product
    # written with raw SQL was not found by its transliteration until the cache expired.
    _upsert(tenant, {"sku": "juice", "name": "Сік яблучний"})
    assert product_search(tenant=tenant, query="uzvar", method=SearchMethod.FULL_TEXT) == []

    _execute("UPDATE catalog_product SET search_title = 'узвар' WHERE tenant_id = %s", [tenant.pk])
    hits = product_search(tenant=tenant, query="uzvar", method=SearchMethod.FULL_TEXT)

    assert _counts(tenant) == {"узвар": 1}
    assert [hit.product.sku for hit in hits] == ["juice"]


def test_term_counts_ignore_embedding_writes(tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"}, {"sku": "bread", "name": "Bread"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT lexeme, xmin::text FROM catalog_termcount ORDER BY lexeme")
        versions = cursor.fetchall()

    products_embed_pending(tenant=tenant, embedder=FixedEmbedder(np.ones(384)))

    assert Product.objects.filter(tenant=tenant, embedding__isnull=True).count() == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT lexeme, xmin::text FROM catalog_termcount ORDER BY lexeme")
        # The same row versions: the embedding write did not rewrite a count.
        assert cursor.fetchall() == versions


def test_term_counts_roll_back(tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"})

    with transaction.atomic():
        _upsert(tenant, {"sku": "milk", "name": "Kefir"}, {"sku": "bread", "name": "Bread"})
        assert _counts(tenant) == {"kefir": 1, "bread": 1}
        transaction.set_rollback(True)

    assert _counts(tenant) == {"milk": 1}


def test_term_counts_per_tenant(tenant, other_tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"})
    _upsert(other_tenant, {"sku": "milk", "name": "Milk"}, {"sku": "tea", "name": "Tea"})

    _upsert(tenant, {"sku": "milk", "name": "Milk", "is_active": False})

    assert _counts(tenant) == {}
    assert _counts(other_tenant) == {"milk": 1, "tea": 1}


def test_term_counts_deleted_with_tenant(tenant, other_tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"})
    _upsert(other_tenant, {"sku": "tea", "name": "Tea"})

    Tenant.objects.filter(pk=tenant.pk).delete()

    assert _stored_counts() == {(other_tenant.pk, "tea"): 1}


def test_term_counts_migration_fill(tenant, other_tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk", "description": "Fresh milk"})
    _upsert(other_tenant, {"sku": "tea", "name": "Tea"})
    expected = _stored_counts()
    migration = importlib.import_module("catalog.migrations.0005_term_counts")

    TermCount.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(migration._FILL)

    assert (
        _stored_counts()
        == expected
        == {
            (tenant.pk, "milk"): 1,
            (tenant.pk, "fresh"): 1,
            (other_tenant.pk, "tea"): 1,
        }
    )


def test_term_counts_follow_id_changes(tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"}, {"sku": "tea", "name": "Tea"})

    _execute(
        "UPDATE catalog_product SET id = id + 1000, search_title = 'kefir'"
        " WHERE tenant_id = %s AND sku = 'milk'",
        [tenant.pk],
    )

    assert _counts(tenant) == {"kefir": 1, "tea": 1}


def test_term_counts_follow_tenant_changes(tenant, other_tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"}, {"sku": "tea", "name": "Tea"})
    _upsert(other_tenant, {"sku": "tea", "name": "Tea"})

    _execute(
        "UPDATE catalog_product SET tenant_id = %s, sku = 'milk-moved'"
        " WHERE tenant_id = %s AND sku = 'milk'",
        [other_tenant.pk, tenant.pk],
    )

    assert _counts(tenant) == {"tea": 1}
    assert _counts(other_tenant) == {"milk": 1, "tea": 1}


def test_term_counts_follow_activation_and_text(tenant):
    _upsert(
        tenant,
        {"sku": "milk", "name": "Milk", "is_active": False},
        {"sku": "tea", "name": "Tea"},
    )

    # One statement activates one product, deactivates the other and renames both.
    _execute(
        "UPDATE catalog_product SET is_active = NOT is_active,"
        " search_title = search_title || ' fresh' WHERE tenant_id = %s",
        [tenant.pk],
    )

    assert _counts(tenant) == {"milk": 1, "fresh": 1}


def test_term_counts_follow_merge(tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"}, {"sku": "tea", "name": "Tea"})

    _execute(
        "MERGE INTO catalog_product AS product"
        " USING (VALUES ('milk'), ('tea')) AS source (sku)"
        " ON product.tenant_id = %s AND product.sku = source.sku"
        " WHEN MATCHED AND product.sku = 'milk' THEN DELETE"
        " WHEN MATCHED THEN UPDATE SET search_title = 'green tea'",
        [tenant.pk],
    )

    assert _counts(tenant) == {"green": 1, "tea": 1}


def test_term_counts_cleared_by_truncate(tenant, other_tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"})
    _upsert(other_tenant, {"sku": "tea", "name": "Tea"})

    with connection.cursor() as cursor:
        # TRUNCATE is rejected while the test's transaction has deferred foreign key checks.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE catalog_product")

    assert _stored_counts() == {}
    assert _counted_counts() == {}


def test_term_counts_recount_repairs_tenant(tenant, other_tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"}, {"sku": "tea", "name": "Green tea"})
    _upsert(other_tenant, {"sku": "tea", "name": "Tea"})
    # Counts left wrong by writes that fired no trigger.
    TermCount.objects.filter(tenant=tenant, lexeme="milk").update(documents=7)
    TermCount.objects.filter(tenant=tenant, lexeme="tea").delete()
    TermCount.objects.create(tenant=tenant, lexeme="kefir", documents=2)
    TermCount.objects.filter(tenant=other_tenant).update(documents=5)

    versions = dict(Tenant.objects.values_list("pk", "catalog_version"))

    counted = term_counts_recount(tenant=tenant)

    assert counted == 3
    # Processes recompute their cached collection statistics at the next search.
    assert dict(Tenant.objects.values_list("pk", "catalog_version")) == {
        tenant.pk: versions[tenant.pk] + 1,
        other_tenant.pk: versions[other_tenant.pk],
    }
    stored = _stored_counts()
    assert {key: value for key, value in stored.items() if key[0] == tenant.pk} == {
        (tenant.pk, "milk"): 1,
        (tenant.pk, "green"): 1,
        (tenant.pk, "tea"): 1,
    }
    # The other tenant's counts are left as they were, wrong ones included.
    assert stored[(other_tenant.pk, "tea")] == 5
