"""Product upserts with content hashing, and embedding of pending products."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from django.db import DataError, OperationalError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from catalog.embeddings import EmbeddingError, product_embedding_text
from catalog.models import Product
from catalog.schemas import product_input_parse
from catalog.selectors import products_pending_embedding
from catalog.services import (
    UpsertSummary,
    product_content_fields_hash,
    product_upsert_many,
    products_delete,
    products_embed_pending,
    products_rebuild_search_text,
)
from tests.catalog.helpers import CountingEmbedder, FailingEmbedder, FixedEmbedder
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def _inputs(*items: dict) -> list:
    return [product_input_parse(item) for item in items]


MILK = {
    "sku": "milk-1",
    "name": "Молоко Яготинське 2,6% 900 г",
    "brand": "Яготинське",
    "category_path": "Молочні продукти > Молоко",
    "unit": "pcs",
    "weight": 900,
}
KEFIR = {"sku": "kefir-1", "name": "Кефір Галичина 2,5% 0,9 кг", "brand": "Галичина"}
BREAD = {"sku": "bread-1", "name": "Хліб Київхліб пшеничний 500 г", "brand": "Київхліб"}


def _statements(context: CaptureQueriesContext) -> list[str]:
    """The captured SQL without the savepoint bookkeeping of transaction.atomic."""
    return [
        query["sql"].split()[0]
        for query in context.captured_queries
        if "SAVEPOINT" not in query["sql"]
    ]


def test_content_hash_depends_on_content_fields_only():
    base = {"name": "Молоко", "brand": "Галичина", "description": ""}

    assert product_content_fields_hash(base) == product_content_fields_hash(
        {**base, "description": None, "unit": "kg"}
    )
    assert product_content_fields_hash(base) != product_content_fields_hash(
        {**base, "brand": "Яготинське"}
    )
    assert product_content_fields_hash(base) != product_content_fields_hash(
        {"name": "Галичина", "brand": "Молоко"}
    )


def test_upsert_creates_products(tenant):
    with CaptureQueriesContext(connection) as context:
        summary = product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR, BREAD))

    products = {product.sku: product for product in Product.objects.filter(tenant=tenant)}
    assert summary.created == 3
    assert summary.updated == 0
    assert summary.unchanged == 0
    assert sorted(summary.to_embed) == sorted(product.pk for product in products.values())
    # The first SELECT takes the lock of the tenant's upserts, the second reads the stored
    # rows, and the UPDATE increments the tenant's catalog version.
    assert _statements(context) == ["SELECT", "SELECT", "INSERT", "UPDATE"]
    milk = products["milk-1"]
    assert milk.name == "Молоко Яготинське 2,6% 900 г"
    assert milk.weight == 900.0
    assert milk.content_hash == product_content_fields_hash(_inputs(MILK)[0].content_fields())
    assert milk.search_title == "молок яготинськ 2.6 % 900 г"
    assert milk.search_body == "молочн продукт молок"
    assert milk.embedding is None


def test_upsert_identical_input_writes_nothing(tenant, embedder):
    product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR))
    products_embed_pending(tenant=tenant, embedder=embedder)
    before = {row["sku"]: row for row in Product.objects.filter(tenant=tenant).values()}
    rerun_embedder = CountingEmbedder(embedder.inner)

    with CaptureQueriesContext(connection) as context:
        summary = product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR))
    embedded = products_embed_pending(tenant=tenant, embedder=rerun_embedder)

    after = {row["sku"]: row for row in Product.objects.filter(tenant=tenant).values()}
    assert summary == UpsertSummary(created=0, updated=0, unchanged=2, to_embed=[])
    # The lock of the tenant's upserts and the read of the stored rows.
    assert _statements(context) == ["SELECT", "SELECT"]
    assert embedded == 0
    assert rerun_embedder.passage_calls == 0
    for sku in ("milk-1", "kefir-1"):
        assert after[sku]["updated_at"] == before[sku]["updated_at"]
        assert np.array_equal(after[sku]["embedding"], before[sku]["embedding"])
        assert after[sku]["embedding_hash"] == before[sku]["embedding_hash"]


def test_upsert_unchanged_unembedded_is_pending(tenant):
    product_upsert_many(tenant=tenant, products=_inputs(MILK))

    summary = product_upsert_many(tenant=tenant, products=_inputs(MILK))

    milk = Product.objects.get(tenant=tenant, sku="milk-1")
    assert summary == UpsertSummary(created=0, updated=0, unchanged=1, to_embed=[milk.pk])


def test_upsert_metadata_change_is_not_reembedded(tenant, embedder):
    product_upsert_many(tenant=tenant, products=_inputs(MILK))
    products_embed_pending(tenant=tenant, embedder=embedder)
    before = Product.objects.get(tenant=tenant, sku="milk-1")
    changed = {**MILK, "unit": "l", "image_url": "https://cdn.example.com/milk.jpg"}
    rerun_embedder = CountingEmbedder(embedder.inner)

    summary = product_upsert_many(tenant=tenant, products=_inputs(changed))
    embedded = products_embed_pending(tenant=tenant, embedder=rerun_embedder)

    after = Product.objects.get(tenant=tenant, sku="milk-1")
    assert summary == UpsertSummary(created=0, updated=1, unchanged=0, to_embed=[])
    assert embedded == 0
    assert rerun_embedder.passage_calls == 0
    assert after.unit == "l"
    assert after.image_url == "https://cdn.example.com/milk.jpg"
    assert after.updated_at > before.updated_at
    assert after.created_at == before.created_at
    assert after.content_hash == before.content_hash
    assert np.array_equal(after.embedding, before.embedding)


def test_upsert_content_change_is_reembedded(tenant, embedder):
    product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR))
    products_embed_pending(tenant=tenant, embedder=embedder)
    old_milk = Product.objects.get(tenant=tenant, sku="milk-1")
    changed = {**MILK, "description": "Пастеризоване."}
    rerun_embedder = CountingEmbedder(embedder.inner)

    summary = product_upsert_many(tenant=tenant, products=_inputs(changed, KEFIR))
    stale_milk = Product.objects.get(tenant=tenant, sku="milk-1")
    embedded = products_embed_pending(tenant=tenant, embedder=rerun_embedder)

    new_milk = Product.objects.get(tenant=tenant, sku="milk-1")
    assert summary == UpsertSummary(created=0, updated=1, unchanged=1, to_embed=[old_milk.pk])
    assert np.array_equal(stale_milk.embedding, old_milk.embedding)
    assert stale_milk.needs_embedding is True
    assert embedded == 1
    assert rerun_embedder.passages == [
        "Молоко Яготинське 2,6% 900 г\n"
        "Brand: Яготинське\n"
        "Category: Молочні продукти > Молоко\n"
        "Description: Пастеризоване."
    ]
    assert new_milk.embedding_hash == new_milk.content_hash
    assert new_milk.needs_embedding is False
    assert not np.array_equal(new_milk.embedding, old_milk.embedding)


def test_upsert_last_duplicate_sku_wins(tenant):
    summary = product_upsert_many(
        tenant=tenant, products=_inputs(MILK, {**MILK, "name": "Молоко 3,2%"})
    )

    assert summary.created == 1
    assert Product.objects.get(tenant=tenant, sku="milk-1").name == "Молоко 3,2%"


def test_upsert_batches_statements(tenant):
    products = _inputs(*({"sku": f"sku-{index}", "name": f"Товар {index}"} for index in range(5)))

    with CaptureQueriesContext(connection) as context:
        summary = product_upsert_many(tenant=tenant, products=products, batch_size=2)

    assert summary.created == 5
    # Per batch: the lock of the tenant's upserts, the stored rows, the upsert, the version.
    assert _statements(context) == ["SELECT", "SELECT", "INSERT", "UPDATE"] * 3


@pytest.mark.django_db(transaction=True)
def test_upsert_locks_rows_in_sku_order(tenant):
    """Two uploads of the same SKUs in opposite orders deadlocked: each locked its first row
    and waited for the other's. Rows are written in SKU order, so an upload that waits for
    a row has already locked every row with a smaller SKU and none with a larger one.
    """
    product_upsert_many(tenant=tenant, products=_inputs(KEFIR, MILK))
    table = Product._meta.db_table
    upsert_pids: list[int] = []
    upsert_errors: list[Exception] = []

    def upsert_milk_first():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                upsert_pids.append(cursor.fetchone()[0])
            changed = _inputs({**MILK, "name": "Молоко 3,2%"}, {**KEFIR, "name": "Кефір 1%"})
            product_upsert_many(tenant=tenant, products=changed)
        except Exception as error:
            upsert_errors.append(error)
        finally:
            connections.close_all()

    upsert = threading.Thread(target=upsert_milk_first)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE tenant_id = %s AND sku = 'milk-1' FOR UPDATE",
            [tenant.pk],
        )
        upsert.start()
        waiting = _is_waiting_for_lock(cursor, upsert_pids)
        try:
            with transaction.atomic():
                cursor.execute(
                    f"SELECT id FROM {table} WHERE tenant_id = %s AND sku = 'kefir-1' "
                    "FOR UPDATE NOWAIT",
                    [tenant.pk],
                )
            kefir_locked_by_upsert = False
        except OperationalError:
            kefir_locked_by_upsert = True
    upsert.join(timeout=10)

    assert waiting
    assert kefir_locked_by_upsert
    assert upsert_errors == []
    assert Product.objects.get(tenant=tenant, sku="milk-1").name == "Молоко 3,2%"
    assert Product.objects.get(tenant=tenant, sku="kefir-1").name == "Кефір 1%"


@pytest.mark.django_db(transaction=True)
def test_concurrent_upserts_count_created_once(tenant):
    """Two uploads of the same new SKUs at the same time both read no stored row, and both
    counted the products as created. The second upload now reads after the first commits.
    """
    second_pids: list[int] = []
    second_summaries: list[UpsertSummary] = []
    second_errors: list[Exception] = []

    def upsert_second():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                second_pids.append(cursor.fetchone()[0])
            changed = _inputs({**MILK, "name": "Молоко 3,2%"}, {**KEFIR, "name": "Кефір 1%"})
            second_summaries.append(product_upsert_many(tenant=tenant, products=changed))
        except Exception as error:
            second_errors.append(error)
        finally:
            connections.close_all()

    second = threading.Thread(target=upsert_second)
    with transaction.atomic(), connection.cursor() as cursor:
        first_summary = product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR))
        second.start()
        second_waited = _is_waiting_for_lock(cursor, second_pids)
    second.join(timeout=30)

    assert second_waited
    assert second_errors == []
    assert (first_summary.created, first_summary.updated) == (2, 0)
    assert len(second_summaries) == 1
    assert (second_summaries[0].created, second_summaries[0].updated) == (0, 2)
    assert Product.objects.get(tenant=tenant, sku="milk-1").name == "Молоко 3,2%"
    assert Product.objects.get(tenant=tenant, sku="kefir-1").name == "Кефір 1%"


def _is_waiting_for_lock(cursor, pids: list[int]) -> bool:
    """Return whether a backend of ``pids`` waits for a lock within 30 seconds.

    Callers poll inside a transaction, which reads pg_stat_activity from a snapshot taken at
    its first read, so each poll clears the snapshot first. Without that, a first poll before
    the backend waited kept returning False on a busy machine.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.01)
        # Inside a transaction, PostgreSQL returns the pg_stat_activity rows of its first
        # read until this call, so a backend that starts waiting later would never show.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) AND wait_event_type = 'Lock'",
            [pids],
        )
        if cursor.fetchone()[0] == 1:
            return True
    return False


@dataclass
class _LockOrder:
    """What a writer did while this test held the lock of kefir-1, first in SKU order."""

    waited_for_kefir: bool = False
    locked_milk_first: bool = False
    errors: list[Exception] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)


def _milk_then_kefir(tenant) -> None:
    """Create milk-1, then kefir-1: milk-1 gets the smaller id, kefir-1 comes first by SKU."""
    product_upsert_many(tenant=tenant, products=_inputs(MILK))
    product_upsert_many(tenant=tenant, products=_inputs(KEFIR))


def _run_while_kefir_locked(
    tenant, write: Callable[[], Any], *, while_waiting: str = ""
) -> _LockOrder:
    """Run ``write`` on a thread while this connection holds kefir-1's row lock.

    Call ``_milk_then_kefir`` first. A writer that locks in SKU order waits for kefir-1
    before it locks milk-1. ``while_waiting`` is an UPDATE run under the lock, as an upload
    would, before it is released.
    """
    table = Product._meta.db_table
    order = _LockOrder()
    writer_pids: list[int] = []

    def run():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                writer_pids.append(cursor.fetchone()[0])
            order.results.append(write())
        except Exception as error:
            order.errors.append(error)
        finally:
            connections.close_all()

    writer = threading.Thread(target=run)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE tenant_id = %s AND sku = 'kefir-1' FOR UPDATE",
            [tenant.pk],
        )
        writer.start()
        order.waited_for_kefir = _is_waiting_for_lock(cursor, writer_pids)
        try:
            with transaction.atomic():
                cursor.execute(
                    f"SELECT id FROM {table} WHERE tenant_id = %s AND sku = 'milk-1' "
                    "FOR UPDATE NOWAIT",
                    [tenant.pk],
                )
        except OperationalError:
            order.locked_milk_first = True
        if while_waiting:
            cursor.execute(while_waiting.format(table=table), [tenant.pk])
    writer.join(timeout=30)
    return order


@pytest.mark.django_db(transaction=True)
def test_embedding_write_locks_sku_order(tenant, embedder):
    """An embedding write that locked its batch in id order deadlocked with an upload, which
    locks the same rows in SKU order, and PostgreSQL failed one of them. A batch now waits
    for its row with the smallest SKU before it locks any other row.
    """
    _milk_then_kefir(tenant)

    order = _run_while_kefir_locked(
        tenant, lambda: products_embed_pending(tenant=tenant, embedder=embedder)
    )

    assert order.waited_for_kefir
    assert not order.locked_milk_first
    assert order.errors == []
    assert products_pending_embedding(tenant=tenant, model_name=embedder.model_name).count() == 0


@pytest.mark.django_db(transaction=True)
def test_search_text_rebuild_locks_sku_order(tenant):
    """The rebuild locks its rows in SKU order, as uploads do, and computes each document
    from the row it locked, so a name changed while it waited keeps its own document.
    """
    _milk_then_kefir(tenant)
    Product.objects.filter(tenant=tenant).update(search_title="stale", search_body="stale")

    # An upload renames the kefir and writes its document while the rebuild waits.
    order = _run_while_kefir_locked(
        tenant,
        lambda: products_rebuild_search_text(tenant=tenant),
        while_waiting="UPDATE {table} SET name = 'Ряжанка', search_title = 'ряжанк галичин',"
        " search_body = '' WHERE tenant_id = %s AND sku = 'kefir-1'",
    )

    assert order.waited_for_kefir
    assert not order.locked_milk_first
    assert order.errors == []
    assert order.results == [1]
    assert Product.objects.get(tenant=tenant, sku="kefir-1").search_title == "ряжанк галичин"
    assert Product.objects.get(tenant=tenant, sku="milk-1").search_title != "stale"


def test_upsert_is_scoped_to_tenant(tenant, other_tenant):
    ProductFactory(tenant=other_tenant, sku="milk-1", name="Молоко іншого магазину")

    summary = product_upsert_many(tenant=tenant, products=_inputs(MILK))

    assert summary.created == 1
    assert Product.objects.get(tenant=other_tenant, sku="milk-1").name == "Молоко іншого магазину"


def test_upsert_inactive_product_is_not_pending(tenant):
    summary = product_upsert_many(tenant=tenant, products=_inputs({**MILK, "is_active": False}))

    assert summary == UpsertSummary(created=1, updated=0, unchanged=0, to_embed=[])


def test_upsert_inserts_columns_as_arrays(tenant):
    products = _inputs(
        {"sku": "oats", "name": "Oat flakes", "attributes": {"organic": True}},
        {"sku": "rice", "name": "Rice", "quantity_step": "0.5", "unit": "kg"},
    )

    with CaptureQueriesContext(connection) as context:
        product_upsert_many(tenant=tenant, products=products)

    # One array per column, not one placeholder per value (see CatalogConfig.ready).
    inserts = [
        query["sql"] for query in context.captured_queries if query["sql"].startswith("INSERT")
    ]
    assert len(inserts) == 1
    assert "FROM UNNEST(" in inserts[0]
    assert "::vector[]" in inserts[0]
    stored = {product.sku: product for product in Product.objects.filter(tenant=tenant)}
    assert stored["oats"].attributes == {"organic": True}
    assert stored["oats"].embedding is None
    assert stored["rice"].quantity_step == Decimal("0.500")


def test_bulk_create_stores_vectors_through_arrays(tenant):
    first = np.linspace(-1, 1, 384, dtype=np.float32)

    Product.objects.bulk_create(
        [
            Product(tenant=tenant, sku="with-vector", name="A", embedding=first),
            Product(tenant=tenant, sku="without-vector", name="B"),
        ]
    )

    stored = dict(Product.objects.filter(tenant=tenant).values_list("sku", "embedding"))
    assert np.allclose(stored["with-vector"], first)
    assert stored["without-vector"] is None


def test_upsert_stores_decimal_quantities(tenant):
    product_upsert_many(
        tenant=tenant,
        products=_inputs({**KEFIR, "unit": "kg", "quantity_step": "0.1", "min_quantity": 0.2}),
    )

    kefir = Product.objects.get(tenant=tenant, sku="kefir-1")
    assert kefir.quantity_step == Decimal("0.100")
    assert kefir.min_quantity == Decimal("0.200")

    summary = product_upsert_many(
        tenant=tenant,
        products=_inputs({**KEFIR, "unit": "kg", "quantity_step": "0.1", "min_quantity": 0.2}),
    )
    assert summary.unchanged == 1


def test_upsert_writes_boolean_attribute_change(tenant):
    # Python's == treats True as 1 and False as 0, but JSON distinguishes them.
    product_upsert_many(
        tenant=tenant, products=_inputs({**MILK, "attributes": {"organic": 1, "tags": [0]}})
    )

    summary = product_upsert_many(
        tenant=tenant,
        products=_inputs({**MILK, "attributes": {"organic": True, "tags": [False]}}),
    )

    milk = Product.objects.get(tenant=tenant, sku="milk-1")
    assert summary == UpsertSummary(created=0, updated=1, unchanged=0, to_embed=[milk.pk])
    assert milk.attributes["organic"] is True
    assert milk.attributes["tags"][0] is False


@pytest.mark.parametrize(
    "attributes",
    [
        {"fat": 2.5, "pack": {"count": 10}},
        {"energy": 1.5e300},
        {"code": 12345678901234567890.5},
        {"huge": 10**400},
        {"flags": [True, False, None, "1"]},
    ],
    ids=["plain", "float_exponent", "float_over_int64", "huge_int", "list"],
)
def test_upsert_same_attributes_unchanged(tenant, attributes):
    product_upsert_many(tenant=tenant, products=_inputs({**MILK, "attributes": attributes}))

    summary = product_upsert_many(
        tenant=tenant, products=_inputs({**MILK, "attributes": attributes})
    )

    assert (summary.created, summary.updated, summary.unchanged) == (0, 0, 1)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"energy": 1.5e300}, {"energy": 1.6e300}),
        ({"huge": 10**400}, {"huge": 1.5}),
        ({"fat": 2.5}, {"fat": "2.5"}),
        ({"fat": 2.5}, {"fat": 2.5, "pack": 1}),
        ({"tags": [1, 2]}, {"tags": [1, 2, 3]}),
    ],
    ids=["float", "huge_int_to_float", "number_to_string", "new_key", "longer_list"],
)
def test_upsert_changed_attributes_updated(tenant, before, after):
    product_upsert_many(tenant=tenant, products=_inputs({**MILK, "attributes": before}))

    summary = product_upsert_many(tenant=tenant, products=_inputs({**MILK, "attributes": after}))

    milk = Product.objects.get(tenant=tenant, sku="milk-1")
    assert (summary.created, summary.updated, summary.unchanged) == (0, 1, 0)
    assert milk.attributes.keys() == after.keys()


def test_embed_pending_one_statement_per_batch(tenant, embedder):
    product_upsert_many(
        tenant=tenant,
        products=_inputs(
            *({"sku": f"sku-{index}", "name": f"Товар {index}"} for index in range(5))
        ),
    )
    progress = []

    with CaptureQueriesContext(connection) as context:
        embedded = products_embed_pending(
            tenant=tenant,
            batch_size=2,
            embedder=embedder,
            on_progress=lambda done, total: progress.append((done, total)),
        )

    assert embedded == 5
    assert embedder.passage_calls == 3
    assert progress == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert [statement for statement in _statements(context) if statement == "UPDATE"] == [
        "UPDATE"
    ] * 3
    assert products_pending_embedding(tenant=tenant, model_name=embedder.model_name).count() == 0
    stored = Product.objects.get(tenant=tenant, sku="sku-0")
    assert stored.embedding_model == embedder.model_name
    assert np.allclose(stored.embedding, embedder.inner.embed_passages(["Товар 0"])[0], atol=1e-6)


def test_embed_pending_resumes_after_failure(tenant, embedder):
    product_upsert_many(
        tenant=tenant,
        products=_inputs(
            *({"sku": f"sku-{index}", "name": f"Товар {index}"} for index in range(5))
        ),
    )
    failing = FailingEmbedder(embedder, fail_after=1)

    with pytest.raises(EmbeddingError):
        products_embed_pending(tenant=tenant, batch_size=2, embedder=failing)
    done_after_failure = Product.objects.filter(tenant=tenant, embedding__isnull=False).count()
    resumed = products_embed_pending(tenant=tenant, batch_size=2, embedder=embedder)

    assert done_after_failure == 2
    assert resumed == 3
    assert embedder.passages == ["Товар 0", "Товар 1", "Товар 2", "Товар 3", "Товар 4"]


def test_embed_pending_reembeds_other_model(tenant, embedder):
    product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR))
    products_embed_pending(tenant=tenant, embedder=FixedEmbedder(np.ones(384), "old-model"))

    embedded = products_embed_pending(tenant=tenant, embedder=embedder)

    assert embedded == 2
    assert set(Product.objects.filter(tenant=tenant).values_list("embedding_model", flat=True)) == {
        embedder.model_name
    }


# The embedder runs on a thread of its own, with its own database connection, so the change
# it makes must be committed to be seen, like a change made by another process.
@pytest.mark.django_db(transaction=True)
def test_embed_pending_skips_changed_product(tenant, embedder):
    product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR))

    class ChangingEmbedder(CountingEmbedder):
        def embed_passages(self, texts):
            try:
                product_upsert_many(
                    tenant=tenant, products=_inputs({**MILK, "name": "Молоко 3,2%"})
                )
            finally:
                connection.close()
            return super().embed_passages(texts)

    changing = ChangingEmbedder(embedder.inner)
    embedded = products_embed_pending(tenant=tenant, embedder=changing)

    milk = Product.objects.get(tenant=tenant, sku="milk-1")
    assert embedded == 1
    assert milk.embedding is None
    assert list(
        products_pending_embedding(tenant=tenant, model_name=embedder.model_name).values_list(
            "sku", flat=True
        )
    ) == ["milk-1"]


def test_embed_pending_ignores_inactive_and_other_tenants(tenant, other_tenant, embedder):
    product_upsert_many(tenant=tenant, products=_inputs(MILK, {**KEFIR, "is_active": False}))
    product_upsert_many(tenant=other_tenant, products=_inputs(BREAD))

    embedded = products_embed_pending(tenant=tenant, embedder=embedder)

    assert embedded == 1
    assert embedder.passages == [product_embedding_text(_inputs(MILK)[0].content_fields())]
    assert Product.objects.get(tenant=other_tenant, sku="bread-1").embedding is None


def test_embed_pending_logs_batches(tenant, embedder, caplog):
    product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR, BREAD))
    caplog.set_level("INFO", logger="catalog.services")

    products_embed_pending(tenant=tenant, batch_size=2, embedder=embedder)

    batches = [record for record in caplog.records if record.msg == "catalog.embedding.batch"]
    assert [(record.tenant_id, record.batch_size, record.written) for record in batches] == [
        (tenant.pk, 2, 2),
        (tenant.pk, 1, 1),
    ]
    assert all(record.model == embedder.model_name for record in batches)
    assert all(
        isinstance(getattr(record, name), int)
        for record in batches
        for name in ("duration_ms", "embed_ms", "wait_ms", "write_ms")
    )


def _catalog_version(tenant) -> int:
    tenant.refresh_from_db(fields=["catalog_version"])
    return tenant.catalog_version


def test_catalog_version_counts_changes(tenant):
    product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR))
    after_create = _catalog_version(tenant)
    product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR))
    after_unchanged = _catalog_version(tenant)
    product_upsert_many(tenant=tenant, products=_inputs({**KEFIR, "is_active": False}))
    after_deactivation = _catalog_version(tenant)

    assert after_create == 1
    assert after_unchanged == 1
    assert after_deactivation == 2


def test_products_delete_counts_change(tenant, other_tenant):
    product_upsert_many(tenant=tenant, products=_inputs(MILK, KEFIR))
    product_upsert_many(tenant=other_tenant, products=_inputs(BREAD))

    deleted = products_delete(products=Product.objects.filter(tenant=tenant, sku="milk-1"))

    assert deleted == 1
    assert list(Product.objects.filter(tenant=tenant).values_list("sku", flat=True)) == ["kefir-1"]
    assert _catalog_version(tenant) == 2
    assert _catalog_version(other_tenant) == 1
    assert Product.objects.filter(tenant=other_tenant).count() == 1


def test_embed_pending_logs_failed_write(tenant, embedder, caplog):
    product_upsert_many(tenant=tenant, products=_inputs(MILK))
    nan_embedder = FixedEmbedder(np.full(384, np.nan), model_name=embedder.model_name)
    caplog.set_level("DEBUG", logger="django.db.backends")

    with CaptureQueriesContext(connection) as context, pytest.raises(DataError):
        products_embed_pending(tenant=tenant, embedder=nan_embedder)

    updates = [query for query in context.captured_queries if query["sql"].startswith("\nUPDATE")]
    assert len(updates) == 1
    milk = Product.objects.get(tenant=tenant, sku="milk-1")
    records = [
        record for record in caplog.records if getattr(record, "sql", None) == updates[0]["sql"]
    ]
    assert [record.params for record in records] == [[milk.pk]]
    assert milk.embedding is None
