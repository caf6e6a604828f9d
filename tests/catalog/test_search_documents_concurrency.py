"""Search document rebuilds on concurrent connections.

These tests commit their data (``transaction=True``), because the threads' connections
cannot see a test transaction's rows.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from catalog.models import Product
from catalog.services import search_documents_rebuild
from tests.catalog.test_search_documents import _documents, _expected, _upsert
from tests.catalog.test_term_counts_concurrency import _on_own_connection

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for_lock_waits(count: int) -> None:
    """Wait until ``count`` connections to the test database wait for a lock."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} connections waited for a lock within 30 s")


def test_concurrent_rebuilds_run_in_turn(tenant):
    _upsert(tenant)
    locked = threading.Event()
    release = threading.Event()
    product_id = Product.objects.get(sku="milk-1").pk

    def hold_document() -> None:
        # Locks one document row, so that both rebuilds have started, and the first waits
        # for this row in its DELETE, when the row is released.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM catalog_searchdocument WHERE product_id = %s FOR UPDATE",
                [product_id],
            )
            locked.set()
            assert release.wait(timeout=30)

    copied: list[int] = []

    def rebuild() -> None:
        copied.append(search_documents_rebuild(tenant=tenant))

    with ThreadPoolExecutor(max_workers=3) as pool:
        holder = pool.submit(_on_own_connection(hold_document))
        assert locked.wait(timeout=30)
        rebuilds = [pool.submit(_on_own_connection(rebuild)) for _ in range(2)]
        _wait_for_lock_waits(2)
        release.set()
        holder.result(timeout=60)
        # result() re-raises a rebuild's error, such as a duplicate document.
        results = [future.result(timeout=60) for future in rebuilds]

    assert results == [None, None]
    assert copied == [3, 3]
    assert _documents() == _expected()
