"""Writes to the catalog: product upserts and embedding."""

import bisect
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from itertools import islice
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
import psycopg
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, F, Q, QuerySet
from django.db.models.functions import Collate
from pgvector import Vector
from pgvector.psycopg.vector import VectorBinaryDumper
from psycopg.types import TypeInfo

from catalog.embeddings import (
    Embedder,
    EmbeddingError,
    embedding_parallelism,
    embedding_thread_start,
    get_embedder,
    product_embedding_text,
)
from catalog.models import Product, SearchDocument, TermCount
from catalog.schemas import ProductInput
from catalog.selectors import products_pending_embedding
from catalog.text import build_search_body, build_search_title
from tenants.models import Tenant

logger = logging.getLogger(__name__)
_db_logger = logging.getLogger("django.db.backends")

# Fields joined into the embedded text; a change to any of them re-embeds the product.
CONTENT_FIELDS = ("name", "description", "ingredients", "brand", "category_path", "country")

# Rows per INSERT ... ON CONFLICT statement of an upsert.
UPSERT_BATCH_SIZE = 500

# Columns an upsert writes. An existing row whose stored values all equal the new ones is
# "unchanged" and is not written at all, which keeps its updated_at.
_UPSERTED_FIELDS = (
    "name",
    "category_path",
    "brand",
    "description",
    "ingredients",
    "country",
    "unit",
    "quantity_step",
    "min_quantity",
    "weight",
    "volume",
    "image_url",
    "attributes",
    "barcode",
    "is_active",
    "content_hash",
    "search_title",
    "search_body",
)

ProgressCallback = Callable[[int, int], None]


def _batched(items: Iterable[ProductInput], size: int) -> Iterator[list[ProductInput]]:
    # itertools.batched arrived in Python 3.12.
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def product_content_fields_hash(fields: Mapping[str, str]) -> str:
    """Return the SHA-256 of the embedded content fields of one product."""
    payload = json.dumps(
        [(name, fields.get(name) or "") for name in CONTENT_FIELDS], ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class UpsertSummary:
    """Outcome of an upsert.

    ``to_embed`` contains the ids of the uploaded active products whose embedding is missing
    or older than their content, whether or not this upload changed them.
    """

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    to_embed: list[int] = field(default_factory=list)

    def __add__(self, other: "UpsertSummary") -> "UpsertSummary":
        return UpsertSummary(
            created=self.created + other.created,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
            to_embed=self.to_embed + other.to_embed,
        )


def _product_row(product: ProductInput) -> dict[str, Any]:
    """Return the column values an upsert writes for ``product``."""
    row = product.model_dump(exclude={"sku"})
    row["content_hash"] = product_content_fields_hash(product.content_fields())
    row["search_title"] = build_search_title(name=product.name, brand=product.brand)
    row["search_body"] = build_search_body(
        category_path=product.category_path,
        description=product.description,
        ingredients=product.ingredients,
        country=product.country,
    )
    return row


def _catalog_versions_bump(*, tenant_ids: Iterable[int]) -> None:
    """Record that these tenants' searchable products changed.

    Search caches its statistics per catalog version, so every process recomputes them at
    its next search of the tenant. Call it in the transaction that changes the products.
    """
    Tenant.objects.filter(pk__in=list(tenant_ids)).update(catalog_version=F("catalog_version") + 1)


def products_delete(*, products: QuerySet[Product]) -> int:
    """Delete ``products``, of one tenant or several, and return how many were deleted."""
    with transaction.atomic():
        tenant_ids = set(products.values_list("tenant_id", flat=True))
        deleted = products.delete()[1].get(Product._meta.label, 0)
        _catalog_versions_bump(tenant_ids=tenant_ids)
    logger.info(
        "catalog.products.deleted",
        extra={"tenant_ids": sorted(tenant_ids), "deleted_count": deleted},
    )
    return deleted


def _embedding_is_current(stored: Mapping[str, Any], *, content_hash: str) -> bool:
    return bool(stored["has_embedding"]) and stored["embedding_hash"] == content_hash


def _same_json(stored: Any, new: Any) -> bool:
    """Return whether a JSON value read back from a jsonb column equals the value written.

    Python's == treats True as 1 and False as 0, but JSON distinguishes them. jsonb keeps each
    number as a decimal, which reads back as an int when it has no fraction, so 1.5e300
    comes back as an int with 299 zeros. Numbers are therefore compared as decimals.
    """
    if isinstance(stored, bool) or isinstance(new, bool):
        return type(stored) is type(new) and stored == new
    if isinstance(stored, int | float) and isinstance(new, int | float):
        return Decimal(repr(stored)) == Decimal(repr(new))
    if isinstance(stored, dict) and isinstance(new, dict):
        return stored.keys() == new.keys() and all(
            _same_json(stored[key], new[key]) for key in stored
        )
    if isinstance(stored, list) and isinstance(new, list):
        return len(stored) == len(new) and all(map(_same_json, stored, new))
    return type(stored) is type(new) and stored == new


def _is_unchanged(stored: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    """Return whether the stored columns of a product equal the ones an upsert would write."""
    return all(
        _same_json(stored[name], row[name]) if name == "attributes" else stored[name] == row[name]
        for name in _UPSERTED_FIELDS
    )


def _existing_rows(*, tenant: Tenant, skus: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Return the stored upserted columns of ``tenant``'s products with these SKUs, by SKU."""
    rows = (
        Product.objects.filter(tenant=tenant, sku__in=list(skus))
        .annotate(
            has_embedding=ExpressionWrapper(Q(embedding__isnull=False), output_field=BooleanField())
        )
        .values("pk", "sku", "has_embedding", "embedding_hash", *_UPSERTED_FIELDS)
    )
    return {row["sku"]: row for row in rows}


def _lock_tenant_upserts(*, tenant: Tenant) -> None:
    """Wait until no other upsert batch of ``tenant`` is open, and block new ones until commit.

    Without this lock, two uploads of the same new SKUs both read no stored row, and both
    counted the products as created. Only upsert batches take it, and each takes it before
    any row lock, so it adds no lock order that could deadlock with other writes.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"catalog-upsert-tenant-{tenant.pk}"],
        )


def _upsert_batch(*, tenant: Tenant, products: Sequence[ProductInput]) -> UpsertSummary:
    _lock_tenant_upserts(tenant=tenant)
    existing = _existing_rows(tenant=tenant, skus=(product.sku for product in products))
    unchanged = 0
    to_embed: list[int] = []
    to_write: list[tuple[Product, dict[str, Any] | None]] = []

    for product in products:
        row = _product_row(product)
        stored = existing.get(product.sku)
        if stored is not None and _is_unchanged(stored, row):
            unchanged += 1
            current = _embedding_is_current(stored, content_hash=row["content_hash"])
            if product.is_active and not current:
                to_embed.append(stored["pk"])
            continue
        to_write.append((Product(tenant=tenant, sku=product.sku, **row), stored))

    Product.objects.bulk_create(
        [instance for instance, _ in to_write],
        update_conflicts=True,
        unique_fields=["tenant", "sku"],
        update_fields=[*_UPSERTED_FIELDS, "updated_at"],
    )
    if to_write:
        _catalog_versions_bump(tenant_ids=[tenant.pk])

    created = 0
    for instance, stored in to_write:
        if stored is None:
            created += 1
        current = stored is not None and _embedding_is_current(
            stored, content_hash=instance.content_hash
        )
        if instance.is_active and not current:
            to_embed.append(instance.pk)

    return UpsertSummary(
        created=created,
        updated=len(to_write) - created,
        unchanged=unchanged,
        to_embed=to_embed,
    )


def products_in_write_order(products: Sequence[ProductInput]) -> list[ProductInput]:
    """Return ``products`` as ``product_upsert_many`` writes them: by SKU, the last one wins.

    Concurrent uploads of the same SKUs then lock the rows in the same order, so they wait
    for each other instead of deadlocking. New rows get their ids in this order.
    """
    latest_by_sku = {product.sku: product for product in products}
    return [latest_by_sku[sku] for sku in sorted(latest_by_sku)]


def product_upsert_many(
    *,
    tenant: Tenant,
    products: Sequence[ProductInput],
    batch_size: int = UPSERT_BATCH_SIZE,
) -> UpsertSummary:
    """Create or update ``tenant``'s products by SKU, writing only rows that changed.

    Each batch costs two queries (one SELECT, one INSERT ... ON CONFLICT DO UPDATE) and
    commits on its own, so a failure keeps the batches before it. A re-run with the same
    input finishes the job. When a SKU occurs more than once, its last occurrence wins.
    Embeddings are kept as they are: a product whose content changed keeps its old vector
    until ``products_embed_pending`` replaces it.

    Batches of one tenant run one after another, from the read of the stored rows to the
    commit, so concurrent uploads count each product once as created.
    """
    summary = UpsertSummary()
    for batch in _batched(products_in_write_order(products), batch_size):
        with transaction.atomic():
            summary += _upsert_batch(tenant=tenant, products=batch)

    logger.info(
        "catalog.products.upserted",
        extra={
            "tenant_id": tenant.pk,
            # "created" is a reserved LogRecord attribute, hence the _count suffixes.
            "created_count": summary.created,
            "updated_count": summary.updated,
            "unchanged_count": summary.unchanged,
            "to_embed_count": len(summary.to_embed),
        },
    )
    return summary


def term_counts_recount(*, tenant: Tenant) -> int:
    """Count the lexemes of ``tenant``'s active products again, replacing its ``TermCount`` rows.

    The product table's triggers keep the counts on every write. This repairs them after
    writes that fired no trigger (a data-only restore with triggers disabled, for example).
    It locks the tenant's row as the triggers do, so the tenant's product writes that commit
    later add their changes to the new counts. It also bumps the tenant's catalog version,
    so that every process recomputes its cached collection statistics, which the same
    writes left stale. Returns the number of lexemes counted.
    """
    product_table = connection.ops.quote_name(Product._meta.db_table)
    with transaction.atomic():
        list(Tenant.objects.select_for_update(no_key=True).filter(pk=tenant.pk).values("pk"))
        with connection.cursor() as cursor:
            # A concurrent TRUNCATE's trigger deletes every count. Locking the table before
            # deleting any count here makes the two run in turn instead of deadlocking.
            cursor.execute(f"LOCK TABLE {product_table} IN ACCESS SHARE MODE")
        TermCount.objects.filter(tenant=tenant).delete()
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {connection.ops.quote_name(TermCount._meta.db_table)}"
                f" (tenant_id, lexeme, documents)"
                f" SELECT tenant_id, entry.lexeme, count(*)"
                f" FROM {product_table}, unnest(search_vector) AS entry"
                f" WHERE tenant_id = %s AND is_active"
                f" GROUP BY tenant_id, entry.lexeme",
                [tenant.pk],
            )
            counted = cursor.rowcount
        _catalog_versions_bump(tenant_ids=[tenant.pk])
    logger.info(
        "catalog.term_counts.recounted", extra={"tenant_id": tenant.pk, "lexeme_count": counted}
    )
    return counted


def search_documents_rebuild(*, tenant: Tenant) -> int:
    """Copy the search columns of ``tenant``'s products into ``SearchDocument`` again.

    The product table's row triggers keep the copy on every write. This repairs it after
    writes that fired no trigger, as ``term_counts_recount`` repairs the counts. It locks
    the product table against writes of every tenant while it runs, because a write waiting
    for the tenant's row while holding a copied row would otherwise deadlock with it. The
    lock mode also makes two rebuilds run in turn: a rebuild that deleted the documents
    after another had copied them would then add duplicates of the other's copies. A
    product that left the tenant with no trigger fired is copied again with its new tenant.
    Returns the number of products copied.
    """
    product_table = connection.ops.quote_name(Product._meta.db_table)
    document_table = connection.ops.quote_name(SearchDocument._meta.db_table)
    # The copied columns have the same names in both tables.
    columns = ", ".join(
        connection.ops.quote_name(field.column or field.attname)
        for field in SearchDocument._meta.concrete_fields
        if not field.primary_key
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {product_table} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(
            f"DELETE FROM {document_table} WHERE tenant_id = %s"
            f" OR product_id IN (SELECT id FROM {product_table} WHERE tenant_id = %s)"
            f" RETURNING product_id",
            [tenant.pk, tenant.pk],
        )
        # A deleted document may belong to a product now of another tenant, which is copied
        # again too.
        deleted = [product_id for (product_id,) in cursor.fetchall()]
        cursor.execute(
            f"INSERT INTO {document_table} (product_id, {columns})"
            f" SELECT id, {columns} FROM {product_table} WHERE tenant_id = %s OR id = ANY(%s)",
            [tenant.pk, deleted],
        )
        copied = cursor.rowcount
    logger.info(
        "catalog.search_documents.rebuilt",
        extra={"tenant_id": tenant.pk, "document_count": copied},
    )
    return copied


def _search_text(product: Product) -> tuple[str, str]:
    """Return the ``search_title`` and ``search_body`` that ``catalog.text`` gives ``product``."""
    title = build_search_title(name=product.name, brand=product.brand)
    body = build_search_body(
        category_path=product.category_path,
        description=product.description,
        ingredients=product.ingredients,
        country=product.country,
    )
    return title, body


def products_rebuild_search_text(*, tenant: Tenant, batch_size: int = UPSERT_BATCH_SIZE) -> int:
    """Recompute the full-text documents of ``tenant``'s products and return how many changed.

    The stored ``search_title`` and ``search_body`` come from ``catalog.text`` as it was
    when each product was saved. After a change to the normalisation or the stemmer, the
    stored documents no longer meet the query words, so this rewrites the ones that differ.
    Embeddings are untouched. Each batch commits on its own.

    A first pass finds the stale products without locking them. Each batch then locks its
    rows in SKU order, as uploads do, so the two wait for each other instead of deadlocking,
    and computes the documents again from the locked rows, so a name that an upload changed
    meanwhile is not overwritten with a document of the old name.
    """
    products = Product.objects.filter(tenant=tenant).only(
        "pk", "name", "brand", "category_path", "description", "ingredients", "country",
        "search_title", "search_body",
    )  # fmt: skip
    stale_ids = [
        product.pk
        for product in products.order_by("pk").iterator(chunk_size=batch_size)
        if _search_text(product) != (product.search_title, product.search_body)
    ]
    changed = 0
    for start in range(0, len(stale_ids), batch_size):
        with transaction.atomic():
            locked = products.filter(pk__in=stale_ids[start : start + batch_size]).order_by(
                Collate("sku", "C")
            )
            stale: list[Product] = []
            for product in locked.select_for_update(no_key=True):
                title, body = _search_text(product)
                if (title, body) != (product.search_title, product.search_body):
                    product.search_title, product.search_body = title, body
                    stale.append(product)
            if stale:
                Product.objects.bulk_update(stale, ["search_title", "search_body"])
                _catalog_versions_bump(tenant_ids=[tenant.pk])
            changed += len(stale)
    logger.info(
        "catalog.products.search_text_rebuilt",
        extra={"tenant_id": tenant.pk, "changed_count": changed},
    )
    return changed


# A batch is read, embedded and written at different times, and an upload or another run
# may change its products in between. The content_hash condition skips a product whose
# content changed since the batch was read. It stays pending, so the next run embeds its new
# content. The last condition skips a product whose current vector another run wrote
# meanwhile, so that no vector is written twice.
_WRITE_EMBEDDINGS_SQL = """
UPDATE {table} AS product
SET embedding = batch.embedding,
    embedding_hash = batch.content_hash,
    embedding_model = %(model_name)s
FROM unnest(%(ids)s::bigint[], %(content_hashes)s::text[], %(embeddings)b::vector[])
    AS batch (id, content_hash, embedding)
WHERE product.id = batch.id
  AND product.tenant_id = %(tenant_id)s
  AND product.content_hash = batch.content_hash
  AND (
    product.embedding IS NULL
    OR product.embedding_hash <> batch.content_hash
    OR product.embedding_model <> %(model_name)s
  )
"""


# Uploads lock the rows they update in SKU order (products_in_write_order), and a batch of
# embeddings is read in id order. An embedding UPDATE that locked its rows in id order could
# hold one row an upload needs while waiting for another that the upload holds, which
# PostgreSQL ends as a deadlock by failing one of the two. So each batch first locks its rows
# in the uploads' order. The "C" collation compares UTF-8 bytes, which sorts like Python's
# str comparison, by code point.
_LOCK_ROWS_IN_SKU_ORDER_SQL = """
SELECT 1 FROM {table}
WHERE id = ANY(%s) AND tenant_id = %s
ORDER BY sku COLLATE "C"
FOR NO KEY UPDATE
"""


def _lock_rows_in_sku_order(*, tenant: Tenant, product_ids: list[int]) -> None:
    """Lock ``tenant``'s products of ``product_ids`` in SKU order until the transaction ends."""
    table = connection.ops.quote_name(Product._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_ROWS_IN_SKU_ORDER_SQL.format(table=table), [product_ids, tenant.pk])


@dataclass(frozen=True)
class _VectorType:
    """The vector type of one database connection, and a dumper that sends it in binary."""

    info: TypeInfo
    dumper: type[VectorBinaryDumper]


# Keyed by psycopg connection, because the type's OID belongs to one database.
_vector_types: "WeakKeyDictionary[psycopg.Connection[Any], _VectorType]" = WeakKeyDictionary()


def _binary_vector_cursor() -> psycopg.Cursor[Any]:
    """Return a cursor on Django's connection that sends vectors in PostgreSQL's binary format.

    Django's cursors bind parameters as text. A batch of 32 vectors as text took about 6 ms
    of Python to format and was about 240 KB for PostgreSQL to parse, both on the cores
    that embed the next batch. In binary it takes well under 1 ms. The cursor bypasses
    Django's cursor wrapper, so callers log their statements themselves, and hooks added
    with ``connection.execute_wrapper`` do not see them.
    """
    connection.ensure_connection()
    raw_connection = connection.connection
    vector_type = _vector_types.get(raw_connection)
    if vector_type is None:
        info = TypeInfo.fetch(raw_connection, "vector")
        if info is None:
            raise psycopg.ProgrammingError("The vector type is missing: run the migrations.")
        dumper = type("VectorDumper", (VectorBinaryDumper,), {"oid": info.oid})
        vector_type = _VectorType(info=info, dumper=dumper)
        _vector_types[raw_connection] = vector_type
    cursor = psycopg.Cursor(raw_connection)
    vector_type.info.register(cursor)
    cursor.adapters.register_dumper(Vector, vector_type.dumper)
    return cursor


def _write_embeddings(
    *, tenant: Tenant, rows: Sequence[Mapping[str, Any]], vectors: Any, model_name: str
) -> int:
    """Store one batch of vectors in one statement; return the number of rows written."""
    sql = _WRITE_EMBEDDINGS_SQL.format(table=connection.ops.quote_name(Product._meta.db_table))
    params: dict[str, Any] = {
        "model_name": model_name,
        "ids": [row["pk"] for row in rows],
        "content_hashes": [row["content_hash"] for row in rows],
        "embeddings": [Vector(vector) for vector in vectors],
        "tenant_id": tenant.pk,
    }
    # wrap_database_errors turns psycopg's errors into Django's, as connection.cursor() does.
    started = time.monotonic()
    try:
        with connection.wrap_database_errors, _binary_vector_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount
    finally:
        if connection.queries_logged:
            _log_statement(sql=sql, product_ids=params["ids"], started=started)


def _log_statement(*, sql: str, product_ids: list[int], started: float) -> None:
    """Log a statement of the binary cursor as Django's debug cursor logs its own.

    The entry contains the SQL with its placeholders and the product ids, not the vectors.
    """
    duration = time.monotonic() - started
    connection.queries_log.append({"sql": sql, "time": f"{duration:.3f}"})
    _db_logger.debug(
        "(%.3f) %s; args=%s; alias=%s",
        duration,
        sql,
        product_ids,
        connection.alias,
        extra={"duration": duration, "sql": sql, "params": product_ids, "alias": connection.alias},
    )


class EmbeddingStopped(Exception):
    """A stop of ``products_embed_pending`` because its ``should_stop`` returned True.

    Every batch that had started embedding was written first.
    """

    def __init__(self, *, processed: int, total: int, embedded: int) -> None:
        super().__init__(f"Stopped after {processed} of {total} products.")
        self.processed = processed
        self.total = total
        self.embedded = embedded


@dataclass(frozen=True)
class _BatchInFlight:
    """A batch of pending rows whose vectors an embedding thread is computing."""

    rows: list[dict[str, Any]]
    vectors: Future[tuple[np.ndarray, float]]
    started: float


# How often a run waiting for another embedding run of its tenant checks the lock again.
EMBEDDING_LOCK_POLL_SECONDS = 1.0


def _embedding_lock_key(tenant: Tenant) -> str:
    return f"catalog-embed-tenant-{tenant.pk}"


def _try_embedding_lock(tenant: Tenant) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [_embedding_lock_key(tenant)]
        )
        return bool(cursor.fetchone()[0])


class _EmbeddingLock(StrEnum):
    HELD = "held"
    # ``should_stop`` returned True while the run waited.
    STOPPED = "stopped"
    # The run waited ``lock_wait_seconds`` and goes on without the lock.
    GIVEN_UP = "given_up"


@contextmanager
def _tenant_embedding_lock(
    *, tenant: Tenant, should_stop: Callable[[], bool] | None, lock_wait_seconds: float | None
) -> Iterator[_EmbeddingLock]:
    """Hold the lock that lets one embedding run of ``tenant`` at a time.

    The lock belongs to the database session, not to a transaction, because a run commits
    once per batch. It is released on exit, and by PostgreSQL when the session ends, so a
    crashed run frees it. While another run holds it, ``should_stop`` is checked every
    ``EMBEDDING_LOCK_POLL_SECONDS``; a run that waits longer than ``lock_wait_seconds``
    (None: no limit) goes on without the lock.
    """
    started = time.monotonic()
    waiting_logged = False
    while not _try_embedding_lock(tenant):
        if not waiting_logged:
            logger.info("catalog.embedding.waiting", extra={"tenant_id": tenant.pk})
            waiting_logged = True
        if should_stop is not None and should_stop():
            yield _EmbeddingLock.STOPPED
            return
        waited = time.monotonic() - started
        if lock_wait_seconds is not None and waited >= lock_wait_seconds:
            logger.warning(
                "catalog.embedding.lock_given_up",
                extra={"tenant_id": tenant.pk, "waited_ms": round(waited * 1000)},
            )
            yield _EmbeddingLock.GIVEN_UP
            return
        time.sleep(EMBEDDING_LOCK_POLL_SECONDS)
    # Inside a caller's transaction, an error of the run aborts it, and no unlock can run
    # until it is rolled back to this savepoint. None outside a transaction.
    savepoint_id = transaction.savepoint()
    try:
        yield _EmbeddingLock.HELD
    finally:
        _release_embedding_lock(tenant, savepoint_id=savepoint_id)


def _release_embedding_lock(tenant: Tenant, *, savepoint_id: str | None) -> None:
    """Release ``tenant``'s embedding lock, or end the session when the unlock fails.

    In a transaction that an error of the run aborted, the run's writes are rolled back to
    ``savepoint_id`` first, which the caller would have to do anyway, so that the unlock can
    run and the caller's transaction stays usable. When the unlock still fails, the session
    is gone, or the caller's transaction was aborted before the run, and the connection is
    closed: a persistent connection would otherwise keep the lock, and the tenant's other
    runs would wait for it.
    """
    try:
        _unlock_embedding_lock(tenant)
    except DatabaseError as exc:
        if savepoint_id is None:
            _embedding_session_close(tenant, exc)
            return
        try:
            transaction.savepoint_rollback(savepoint_id)
            _unlock_embedding_lock(tenant)
        except DatabaseError as retry_exc:
            _embedding_session_close(tenant, retry_exc)
        return
    if savepoint_id is not None:
        transaction.savepoint_commit(savepoint_id)


def _unlock_embedding_lock(tenant: Tenant) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [_embedding_lock_key(tenant)]
        )


def _embedding_session_close(tenant: Tenant, exc: DatabaseError) -> None:
    logger.warning(
        "catalog.embedding.unlock_failed",
        extra={"tenant_id": tenant.pk, "error": str(exc).strip()},
    )
    connection.close()


def _embed_timed(embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, float]:
    """Return the vectors of ``texts`` and the seconds they took. Runs on an embedding thread."""
    started = time.monotonic()
    vectors = embedder.embed_passages(texts)
    return vectors, time.monotonic() - started


def products_embed_pending(
    *,
    tenant: Tenant,
    batch_size: int | None = None,
    on_progress: ProgressCallback | None = None,
    embedder: Embedder | None = None,
    product_ids: Sequence[int] | None = None,
    after_id: int = 0,
    on_batch_written: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    lock_wait_seconds: float | None = None,
) -> int:
    """Embed ``tenant``'s products whose embedding is missing or stale; return how many.

    Products are embedded in batches of ``batch_size`` (default
    ``settings.EMBEDDING_BATCH_SIZE``), and each batch is written in one statement and
    committed, so a re-run after a crash continues where the last run stopped. Each product
    is tried at most once per call. ``on_progress(done, total)`` is called once before the
    first batch and after every batch, with the number of products processed so far.
    An ``EmbeddingError`` is raised after the batches before it were saved.

    The work is pipelined: embedding threads compute the vectors of the next batches while
    this thread writes the batch before them and reads the batch after them, so the
    database work hides behind the embedding. ``embedding_parallelism(embedder)`` batches
    embed at once, one per thread. Only this thread uses the database connection, and the
    batches are written in the order of their ids.

    ``product_ids`` limits the run to these products, and ``after_id`` to products with a
    greater id. ``on_batch_written(written, last_id)`` runs in the transaction that writes
    each batch, with the highest product id of the batch, so whatever it records commits
    with the vectors or not at all. ``should_stop()`` is called before each batch starts
    embedding; once it returns True, the batches already embedding are written and
    ``EmbeddingStopped`` is raised.

    One run per tenant embeds at a time: a second run, from a worker or a command, waits
    for the first and then finds its products embedded, so no product is embedded twice. A
    waiting run checks ``should_stop`` too, and raises ``EmbeddingStopped`` with nothing
    processed once it returns True. After ``lock_wait_seconds`` (None: no limit) it stops
    waiting and embeds anyway: the lock of a session that PostgreSQL has not yet found dead
    would otherwise hold the tenant's embedding back.
    """
    embedder = embedder or get_embedder()
    batch_size = batch_size or settings.EMBEDDING_BATCH_SIZE
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    with _tenant_embedding_lock(
        tenant=tenant, should_stop=should_stop, lock_wait_seconds=lock_wait_seconds
    ) as lock:
        if lock == _EmbeddingLock.STOPPED:
            _, _, total = _pending_products(
                tenant=tenant,
                model_name=embedder.model_name,
                product_ids=product_ids,
                after_id=after_id,
            )
            raise EmbeddingStopped(processed=0, total=total, embedded=0)
        return _embed_pending_locked(
            tenant=tenant,
            batch_size=batch_size,
            on_progress=on_progress,
            embedder=embedder,
            product_ids=product_ids,
            after_id=after_id,
            on_batch_written=on_batch_written,
            should_stop=should_stop,
        )


def _pending_products(
    *, tenant: Tenant, model_name: str, product_ids: Sequence[int] | None, after_id: int
) -> tuple[QuerySet[Product], "_ProductIdList | None", int]:
    """Return the run's pending products, the id list that limits them, and their count."""
    pending = products_pending_embedding(tenant=tenant, model_name=model_name)
    if after_id:
        pending = pending.filter(pk__gt=after_id)
    id_list = None if product_ids is None else _ProductIdList(product_ids, after_id=after_id)
    total = pending.count() if id_list is None else id_list.count(pending)
    return pending, id_list, total


def _embed_pending_locked(
    *,
    tenant: Tenant,
    batch_size: int,
    on_progress: ProgressCallback | None,
    embedder: Embedder,
    product_ids: Sequence[int] | None,
    after_id: int,
    on_batch_written: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> int:
    pending, id_list, total = _pending_products(
        tenant=tenant, model_name=embedder.model_name, product_ids=product_ids, after_id=after_id
    )
    started = time.monotonic()
    logger.info(
        "catalog.embedding.started",
        extra={"tenant_id": tenant.pk, "model": embedder.model_name, "pending": total},
    )
    if on_progress is not None:
        on_progress(0, total)

    def read_batch(after_pk: int) -> list[dict[str, Any]]:
        if id_list is not None:
            return id_list.read_batch(pending, after_pk=after_pk, size=batch_size)
        return list(
            pending.filter(pk__gt=after_pk)
            .order_by("pk")
            .values("pk", "content_hash", *CONTENT_FIELDS)[:batch_size]
        )

    processed = embedded = 0
    depth = embedding_parallelism(embedder)
    # Leaving the block after an error waits for the batches still embedding, whose vectors
    # are dropped, so that no embedding outlives the call.
    with ThreadPoolExecutor(
        max_workers=depth,
        thread_name_prefix="catalog-embed",
        initializer=embedding_thread_start,
        initargs=(embedder,),
    ) as pool:
        in_flight: deque[_BatchInFlight] = deque()
        rows = read_batch(0)
        stopping = False

        def start_batches() -> None:
            """Start embedding the next batches until ``depth`` of them are in flight."""
            nonlocal rows, stopping
            while rows and not stopping and len(in_flight) < depth:
                stopping = should_stop is not None and should_stop()
                if stopping:
                    return
                texts = [product_embedding_text(row) for row in rows]
                in_flight.append(
                    _BatchInFlight(
                        rows=rows,
                        vectors=pool.submit(_embed_timed, embedder, texts),
                        started=time.monotonic(),
                    )
                )
                rows = read_batch(rows[-1]["pk"])

        start_batches()
        while in_flight:
            # One step: wait for the oldest batch's vectors, start the next batch so that
            # `depth` batches embed while this thread writes the oldest one.
            oldest = in_flight.popleft()
            vectors, embed_seconds, wait_seconds = _batch_vectors(
                tenant=tenant, batch=oldest, embedder=embedder, done=embedded
            )
            start_batches()
            written = _write_batch(
                tenant=tenant,
                batch=oldest,
                vectors=vectors,
                model_name=embedder.model_name,
                on_batch_written=on_batch_written,
                embed_seconds=embed_seconds,
                wait_seconds=wait_seconds,
            )
            processed += len(oldest.rows)
            embedded += written
            if on_progress is not None:
                on_progress(processed, total)
        if stopping:
            logger.info(
                "catalog.embedding.stopped",
                extra={
                    "tenant_id": tenant.pk,
                    "model": embedder.model_name,
                    "processed": processed,
                    "embedded": embedded,
                    "pending": total - processed,
                },
            )
            raise EmbeddingStopped(processed=processed, total=total, embedded=embedded)

    logger.info(
        "catalog.embedding.finished",
        extra={
            "tenant_id": tenant.pk,
            "model": embedder.model_name,
            "embedded": embedded,
            "skipped": processed - embedded,
            "duration_ms": round((time.monotonic() - started) * 1000),
        },
    )
    return embedded


class _ProductIdList:
    """The sorted ids that limit an embedding run, which batches read a window at a time.

    A job's list can hold every product of a large tenant. A filter by the whole list sends
    it with every query: with 100,000 ids, reading one batch of 32 took about 2 s on a
    shared 2-core machine, 1.7 s of it in Django compiling the ids. A window of ids per
    query keeps each query small, whatever the length of the list.
    """

    # Ids per query. Several per batch, because products embedded or deactivated since the
    # job was saved are no longer pending and leave gaps.
    WINDOW = 256

    def __init__(self, product_ids: Sequence[int], *, after_id: int) -> None:
        self.ids = sorted({pk for pk in product_ids if pk > after_id})

    def _windows(self, after_pk: int) -> Iterator[list[int]]:
        start = bisect.bisect_right(self.ids, after_pk)
        for window_start in range(start, len(self.ids), self.WINDOW):
            yield self.ids[window_start : window_start + self.WINDOW]

    def count(self, pending: QuerySet[Product]) -> int:
        return sum(pending.filter(pk__in=window).count() for window in self._windows(0))

    def read_batch(
        self, pending: QuerySet[Product], *, after_pk: int, size: int
    ) -> list[dict[str, Any]]:
        """Return the next ``size`` pending products with an id of the list above ``after_pk``."""
        rows: list[dict[str, Any]] = []
        for window in self._windows(after_pk):
            rows.extend(
                pending.filter(pk__in=window)
                .order_by("pk")
                .values("pk", "content_hash", *CONTENT_FIELDS)[: size - len(rows)]
            )
            if len(rows) == size:
                break
        return rows


def _batch_vectors(
    *, tenant: Tenant, batch: _BatchInFlight, embedder: Embedder, done: int
) -> tuple[np.ndarray, float, float]:
    """Wait for ``batch``'s vectors, and return them, the seconds they took and the wait.

    An embedding failure is logged and re-raised.
    """
    wait_started = time.monotonic()
    try:
        vectors, embed_seconds = batch.vectors.result()
    except EmbeddingError:
        logger.warning(
            "catalog.embedding.failed",
            extra={
                "tenant_id": tenant.pk,
                "model": embedder.model_name,
                "batch_size": len(batch.rows),
                "first_product_id": batch.rows[0]["pk"],
                "embedded_before_failure": done,
            },
        )
        raise
    return vectors, embed_seconds, time.monotonic() - wait_started


def _write_batch(
    *,
    tenant: Tenant,
    batch: _BatchInFlight,
    vectors: Any,
    model_name: str,
    on_batch_written: Callable[[int, int], None] | None,
    embed_seconds: float,
    wait_seconds: float,
) -> int:
    write_started = time.monotonic()
    with transaction.atomic():
        _lock_rows_in_sku_order(tenant=tenant, product_ids=[row["pk"] for row in batch.rows])
        written = _write_embeddings(
            tenant=tenant, rows=batch.rows, vectors=vectors, model_name=model_name
        )
        if on_batch_written is not None:
            on_batch_written(written, batch.rows[-1]["pk"])
    finished = time.monotonic()
    logger.info(
        "catalog.embedding.batch",
        extra={
            "tenant_id": tenant.pk,
            "model": model_name,
            "batch_size": len(batch.rows),
            "written": written,
            # From the start of the batch's embedding to the commit of its vectors.
            "duration_ms": round((finished - batch.started) * 1000),
            "embed_ms": round(embed_seconds * 1000),
            # Time this thread waited for the vectors: near zero when the database side is
            # the slower one.
            "wait_ms": round(wait_seconds * 1000),
            "write_ms": round((finished - write_started) * 1000),
        },
    )
    return written
