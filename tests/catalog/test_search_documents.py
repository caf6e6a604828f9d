"""The narrow copy of the product rows that the lexical stage reads (SearchDocument)."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from catalog.models import Product, SearchDocument
from catalog.schemas import product_input_parse
from catalog.services import product_upsert_many, products_delete, search_documents_rebuild
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

COPIED = [
    "tenant_id",
    "is_active",
    "category_path",
    "search_vector",
    "search_title_words",
    "search_body_words",
    "search_title",
]
PRODUCTS = [
    {"sku": "milk-1", "name": "Молоко Галичина 2,5%", "category_path": "Молочні > Молоко"},
    {"sku": "milk-2", "name": "Milk Lactel", "description": "UHT milk", "is_active": False},
    {"sku": "bread-1", "name": "Хліб житній", "category_path": "Хліб"},
]


def _upsert(tenant, items=PRODUCTS) -> None:
    product_upsert_many(tenant=tenant, products=[product_input_parse(item) for item in items])


def _expected() -> dict[int, tuple]:
    return {row[0]: row[1:] for row in Product.objects.values_list("pk", *COPIED)}


def _documents() -> dict[int, tuple]:
    return {row[0]: row[1:] for row in SearchDocument.objects.values_list("product_id", *COPIED)}


def _execute(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_documents_follow_upserts(tenant, other_tenant):
    _upsert(tenant)
    _upsert(other_tenant, PRODUCTS[:1])
    first = _documents()

    _upsert(
        tenant,
        [
            {**PRODUCTS[0], "name": "Молоко Яготинське 3,2%", "category_path": "Молоко"},
            {**PRODUCTS[1], "is_active": True},
            PRODUCTS[2],
        ],
    )

    assert len(first) == 4
    assert _documents() == _expected()
    assert _documents() != first


def test_embedding_write_leaves_documents_alone(tenant):
    _upsert(tenant)
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM catalog_searchdocument ORDER BY product_id")
        before = cursor.fetchall()

    Product.objects.filter(tenant=tenant).update(embedding=[0.1] * 384, embedding_model="m")

    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM catalog_searchdocument ORDER BY product_id")
        assert cursor.fetchall() == before
    assert _documents() == _expected()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE catalog_product SET search_title = 'kefir', is_active = NOT is_active",
        "UPDATE catalog_product SET id = id + 1000000",
        "UPDATE catalog_product SET category_path = 'Other'",
        "UPDATE catalog_product SET tenant_id = %(other)s WHERE sku = 'milk-1'",
    ],
)
def test_documents_follow_raw_updates(tenant, other_tenant, statement):
    _upsert(tenant)

    _execute(statement, {"other": other_tenant.pk})

    assert len(_documents()) == 3
    assert _documents() == _expected()


def test_documents_follow_deletes(tenant, other_tenant):
    _upsert(tenant)
    _upsert(other_tenant)

    products_delete(products=Product.objects.filter(tenant=tenant, sku="milk-1"))
    _execute("DELETE FROM catalog_product WHERE sku = 'bread-1'")
    Tenant.objects.filter(pk=other_tenant.pk).delete()

    assert list(_documents()) == list(Product.objects.values_list("pk", flat=True))
    assert _documents() == _expected()
    assert len(_documents()) == 1


def test_truncate_empties_documents(tenant):
    _upsert(tenant)

    # TRUNCATE is rejected while the test's transaction has deferred foreign key checks.
    _execute("SET CONSTRAINTS ALL IMMEDIATE")
    _execute("TRUNCATE catalog_product")

    assert _documents() == {}


def test_rebuild_repairs_documents_of_one_tenant(tenant, other_tenant):
    _upsert(tenant)
    _upsert(other_tenant)
    correct = _documents()
    # Writes with the triggers disabled, as a data-only restore makes them. ALTER TABLE is
    # rejected while the test's transaction has deferred foreign key checks.
    _execute("SET CONSTRAINTS ALL IMMEDIATE")
    _execute("ALTER TABLE catalog_product DISABLE TRIGGER USER")
    _execute("UPDATE catalog_product SET category_path = 'Stale', is_active = true")
    _execute("DELETE FROM catalog_product WHERE sku = 'bread-1' AND tenant_id = %s", [tenant.pk])
    _execute("ALTER TABLE catalog_product ENABLE TRIGGER USER")
    other_documents = {
        product_id: row for product_id, row in _documents().items() if row[0] == other_tenant.pk
    }

    copied = search_documents_rebuild(tenant=tenant)

    assert copied == 2
    repaired = {product_id: row for product_id, row in _documents().items() if row[0] == tenant.pk}
    assert repaired == {
        product_id: row for product_id, row in _expected().items() if row[0] == tenant.pk
    }
    # The other tenant's documents are as the disabled triggers left them.
    assert {
        product_id: row for product_id, row in _documents().items() if row[0] == other_tenant.pk
    } == other_documents
    assert other_documents == {
        product_id: row for product_id, row in correct.items() if row[0] == other_tenant.pk
    }


def test_rebuild_keeps_moved_product(tenant, other_tenant):
    _upsert(tenant)
    # A product moved to the other tenant with the triggers disabled keeps a document that
    # names the first tenant.
    _execute("SET CONSTRAINTS ALL IMMEDIATE")
    _execute("ALTER TABLE catalog_product DISABLE TRIGGER USER")
    _execute("UPDATE catalog_product SET tenant_id = %s WHERE sku = 'milk-1'", [other_tenant.pk])
    _execute("ALTER TABLE catalog_product ENABLE TRIGGER USER")
    moved = Product.objects.get(sku="milk-1").pk
    assert _documents()[moved][0] == tenant.pk

    copied = search_documents_rebuild(tenant=tenant)

    # The moved product's document now names the other tenant, rather than being gone.
    assert copied == 3
    assert _documents() == _expected()
    assert _documents()[moved][0] == other_tenant.pk


def test_migration_drops_product_index_last():
    # DROP INDEX locks the product table against reads until the migration commits, so
    # anything after it, such as the copy, would keep searches waiting.
    sql = StringIO()
    call_command("sqlmigrate", "catalog", "0007", stdout=sql)
    lines = [line for line in sql.getvalue().splitlines() if line.strip()]
    drop = lines.index('DROP INDEX IF EXISTS "product_search_vector_gin";')

    # Only the new table's tenant index, which Django creates at the end, comes after it.
    assert lines[drop + 1 :] == [
        'CREATE INDEX "catalog_searchdocument_tenant_id_36ce4a20"'
        ' ON "catalog_searchdocument" ("tenant_id");',
        "COMMIT;",
    ]


def test_trigram_migration_drops_product_index_last():
    sql = StringIO()
    call_command("sqlmigrate", "catalog", "0009", stdout=sql)
    lines = [line for line in sql.getvalue().splitlines() if line.strip()]
    drop = lines.index('DROP INDEX IF EXISTS "product_search_title_trgm";')

    assert lines[drop + 1 :] == ["COMMIT;"]


def test_title_migration_only_adds_the_column():
    # Adding the column locks the table against reads until the migration commits, so the
    # migration does nothing else.
    sql = StringIO()
    call_command("sqlmigrate", "catalog", "0008", stdout=sql)
    statements = [
        line for line in sql.getvalue().splitlines() if line.strip() and not line.startswith("--")
    ]

    assert statements == [
        "BEGIN;",
        'ALTER TABLE "catalog_searchdocument" ADD COLUMN "search_title" text DEFAULT \'\' NOT NULL;',
        "COMMIT;",
    ]
