"""Term counts and search documents under concurrent uploads, each thread on its own
database connection.

These tests commit their data (``transaction=True``), because the threads' connections
cannot see a test transaction's rows.
"""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import OperationalError, connection, connections, transaction

from catalog.schemas import product_input_parse
from catalog.services import product_upsert_many, term_counts_recount
from tests.catalog.test_search_documents import _documents, _expected
from tests.catalog.test_term_counts import _counts, _upsert

pytestmark = pytest.mark.django_db(transaction=True)

_WORDS = ["milk", "tea", "bread", "kefir", "juice", "water", "salt", "rice"]


def _on_own_connection(function: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            function()
        finally:
            connections.close_all()

    return run


def _upload_rounds(tenant, *, offset: int) -> None:
    """Upload overlapping SKUs in 5 rounds, in batches of 4, renaming and deactivating some."""
    for round_number in range(5):
        products = []
        for index in range(20):
            position = index + offset + round_number
            products.append(
                {
                    "sku": f"sku-{index}",
                    "name": f"{_WORDS[position % 8]} {_WORDS[(position * 3 + 1) % 8]}",
                    "is_active": position % 5 != 0,
                }
            )
        product_upsert_many(
            tenant=tenant,
            products=[product_input_parse(item) for item in products],
            batch_size=4,
        )


def test_concurrent_uploads_keep_counts_and_documents(tenant, other_tenant):
    owners = [tenant, tenant, tenant, other_tenant, other_tenant]

    with ThreadPoolExecutor(max_workers=len(owners)) as pool:
        futures = [
            pool.submit(_on_own_connection(lambda o=owner, n=number: _upload_rounds(o, offset=n)))
            for number, owner in enumerate(owners)
        ]
        # result() re-raises a thread's error, such as a detected deadlock.
        results = [future.result(timeout=60) for future in futures]

    assert results == [None] * len(owners)
    # _counts compares every stored count with a count over the products.
    assert sum(_counts(tenant).values()) > 0
    assert sum(_counts(other_tenant).values()) > 0
    # The search documents, written by row triggers in the same statements, match too.
    assert len(_documents()) == 40
    assert _documents() == _expected()


def test_uploads_wait_only_for_same_tenant(tenant, other_tenant):
    written = threading.Event()
    release = threading.Event()

    def hold_open_upload() -> None:
        with transaction.atomic():
            _upsert(tenant, {"sku": "milk", "name": "Milk"})
            written.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=_on_own_connection(hold_open_upload))
    holder.start()
    try:
        assert written.wait(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
        # Another tenant's upload does not wait for the open transaction.
        _upsert(other_tenant, {"sku": "tea", "name": "Tea"})
        # The same tenant's upload of another SKU waits for the tenant's row, locked by the
        # open transaction's count update, so it runs into the lock timeout.
        with pytest.raises(OperationalError, match="lock timeout"):
            _upsert(tenant, {"sku": "bread", "name": "Bread"})
    finally:
        release.set()
        holder.join(timeout=30)
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = 0")
    _upsert(tenant, {"sku": "bread", "name": "Bread"})

    assert _counts(tenant) == {"milk": 1, "bread": 1}
    assert _counts(other_tenant) == {"tea": 1}


def _wait_for_lock_wait() -> None:
    """Wait until some connection to the test database waits for a lock."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] > 0:
                return
        time.sleep(0.05)
    raise AssertionError("no connection waited for a lock within 30 s")


def test_recount_waits_for_truncate(tenant):
    _upsert(tenant, {"sku": "milk", "name": "Milk"})
    table_locked = threading.Event()
    recount_waiting = threading.Event()

    def truncate_while_recount_waits() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("LOCK TABLE catalog_product IN ACCESS EXCLUSIVE MODE")
            table_locked.set()
            assert recount_waiting.wait(timeout=30)
            # The TRUNCATE trigger deletes every count, which waits for any count row
            # that the recount has already deleted.
            cursor.execute("TRUNCATE catalog_product")

    counted: list[int] = []

    def recount() -> None:
        counted.append(term_counts_recount(tenant=tenant))

    with ThreadPoolExecutor(max_workers=2) as pool:
        truncated = pool.submit(_on_own_connection(truncate_while_recount_waits))
        assert table_locked.wait(timeout=30)
        recounted = pool.submit(_on_own_connection(recount))
        _wait_for_lock_wait()
        recount_waiting.set()
        # result() re-raises a detected deadlock.
        truncate_result = truncated.result(timeout=60)
        recount_result = recounted.result(timeout=60)

    assert truncate_result is None
    assert recount_result is None
    # The recount ran after the TRUNCATE and found no product.
    assert counted == [0]
    assert _counts(tenant) == {}
