"""The pipelined embedding loop: a batch is written while the next one is embedded.

Each test checks one guarantee that the overlap must keep. Batches are written in id order.
A failure leaves whole batches written and the rest pending. A product that is changed or
embedded elsewhere after its batch was read is not overwritten. A crashed or stopped run
resumes without embedding any product twice.
"""

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.db import DataError, OperationalError, connection, transaction

from catalog import services
from catalog.embeddings import EmbeddingError, product_embedding_text
from catalog.jobs import CatalogJobInterrupted, catalog_job_run, catalog_job_submit
from catalog.models import CatalogJob, Product
from catalog.schemas import product_input_parse
from catalog.selectors import products_pending_embedding
from catalog.services import EmbeddingStopped, product_upsert_many, products_embed_pending
from tenants.models import Tenant
from tests.catalog.helpers import CountingEmbedder, FailingEmbedder

pytestmark = pytest.mark.django_db

ITEMS = [{"sku": f"tea-{number}", "name": f"Чай зелений {number}"} for number in range(1, 8)]


class SimulatedCrash(BaseException):
    """A stand-in for the process dying, which the code under test does not catch."""


def _upsert(tenant, items=ITEMS) -> list[int]:
    """Upsert ``items``; return the ids of the new products in id order."""
    summary = product_upsert_many(
        tenant=tenant, products=[product_input_parse(item) for item in items]
    )
    return sorted(summary.to_embed)


def _text(item) -> str:
    return product_embedding_text(item)


def _embedding_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("catalog-embed")]


class OverlapEmbedder(CountingEmbedder):
    """Embeds batch N+1 only once batch N is written, which a sequential loop never does.

    A loop that wrote batch N before it started batch N+1 would leave the wait to time out.
    """

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.batch_written = threading.Event()
        self.overlapped: list[bool] = []

    def record_written(self, written: int) -> None:
        self.batch_written.set()

    def embed_passages(self, texts):
        if self.passage_calls:
            self.overlapped.append(self.batch_written.wait(timeout=10))
            self.batch_written.clear()
        return super().embed_passages(texts)


def test_next_batch_embeds_during_write(tenant, embedder):
    ids = _upsert(tenant)
    overlap = OverlapEmbedder(embedder.inner)
    written: list[int] = []

    def on_batch_written(count: int, _last_id: int) -> None:
        written.append(count)
        overlap.record_written(count)

    embedded = products_embed_pending(
        tenant=tenant, batch_size=3, embedder=overlap, on_batch_written=on_batch_written
    )

    assert embedded == 7
    assert overlap.overlapped == [True, True]
    assert written == [3, 3, 1]
    # Batches are read, embedded and written in id order.
    assert overlap.passages == [_text(item) for item in ITEMS]
    stored = Product.objects.filter(pk__in=ids).values_list("embedding_hash", "content_hash")
    assert all(embedding_hash == content_hash for embedding_hash, content_hash in stored)
    assert _embedding_threads() == []


def test_embedding_failure_keeps_whole_batches(tenant, embedder):
    # given: the third batch fails while the second is being written
    _upsert(tenant)
    written: list[int] = []

    # when
    with pytest.raises(EmbeddingError):
        products_embed_pending(
            tenant=tenant,
            batch_size=2,
            embedder=FailingEmbedder(embedder, fail_after=2),
            on_batch_written=lambda count, _last_id: written.append(count),
        )

    # then: the first two batches are stored, the rest is pending
    pending = products_pending_embedding(tenant=tenant, model_name=embedder.model_name)
    assert written == [2, 2]
    assert sorted(pending.values_list("sku", flat=True)) == ["tea-5", "tea-6", "tea-7"]
    assert Product.objects.filter(tenant=tenant, embedding__isnull=False).count() == 4
    assert _embedding_threads() == []


def test_write_failure_rolls_back_batch(tenant, embedder):
    # given: the database write of the second batch fails while the third is embedding
    _upsert(tenant)
    committed: list[int] = []

    def on_batch_written(count: int, _last_id: int) -> None:
        if committed:
            raise RuntimeError("The database went away.")
        committed.append(count)

    # when
    with pytest.raises(RuntimeError, match="database went away"):
        products_embed_pending(
            tenant=tenant, batch_size=2, embedder=embedder, on_batch_written=on_batch_written
        )
    calls_when_raised = embedder.passage_calls

    # then: only the first batch is stored, and no embedding outlives the call
    assert committed == [2]
    assert embedder.passage_calls == calls_when_raised == 3
    assert _embedding_threads() == []
    assert list(
        Product.objects.filter(tenant=tenant, embedding__isnull=False)
        .order_by("pk")
        .values_list("sku", flat=True)
    ) == ["tea-1", "tea-2"]

    # when: a re-run
    embedder.passages.clear()
    resumed = products_embed_pending(tenant=tenant, batch_size=2, embedder=embedder)

    # then: it embeds the five others, each once
    assert resumed == 5
    assert embedder.passages == [_text(item) for item in ITEMS[2:]]


def test_changed_product_is_not_written(tenant, embedder):
    # given: when the first batch is written, the second one was read and is embedding
    _upsert(tenant, ITEMS[:3])
    changed = {**ITEMS[1], "name": "Чай чорний 2"}

    def on_progress(done: int, total: int) -> None:
        if done == 1:
            _upsert(tenant, [changed])

    # when
    embedded = products_embed_pending(
        tenant=tenant, batch_size=1, embedder=embedder, on_progress=on_progress
    )

    # then: the vector of the old content is dropped and the product stays pending
    assert embedded == 2
    assert embedder.passages == [_text(item) for item in ITEMS[:3]]
    assert Product.objects.get(tenant=tenant, sku="tea-2").embedding is None
    embedder.passages.clear()
    assert products_embed_pending(tenant=tenant, embedder=embedder) == 1
    assert embedder.passages == [_text(changed)]


def test_product_embedded_meanwhile_is_skipped(tenant, embedder):
    # given: another run embeds the second product after the first run read it
    ids = _upsert(tenant, ITEMS[:3])
    written: list[int] = []
    other_run: list[int] = []

    def on_progress(done: int, total: int) -> None:
        if done == 1:
            other_run.append(
                products_embed_pending(tenant=tenant, embedder=embedder, product_ids=[ids[1]])
            )

    # when
    embedded = products_embed_pending(
        tenant=tenant,
        batch_size=1,
        embedder=embedder,
        on_progress=on_progress,
        on_batch_written=lambda count, _last_id: written.append(count),
    )

    # then: each product is written once over both runs
    assert other_run == [1]
    assert written == [1, 0, 1]
    assert embedded == 2
    assert products_pending_embedding(tenant=tenant, model_name=embedder.model_name).count() == 0


def test_stop_writes_batch_in_flight(tenant, embedder):
    _upsert(tenant)
    checks = iter([False, False, True])

    with pytest.raises(EmbeddingStopped, match="Stopped after 4 of 7 products.") as stopped:
        products_embed_pending(
            tenant=tenant, batch_size=2, embedder=embedder, should_stop=lambda: next(checks)
        )

    assert (stopped.value.processed, stopped.value.embedded) == (4, 4)
    assert embedder.passages == [_text(item) for item in ITEMS[:4]]
    assert Product.objects.filter(tenant=tenant, embedding__isnull=False).count() == 4


def _submit_items(tenant) -> CatalogJob:
    """Submit an API job for every product of ITEMS."""
    return catalog_job_submit(
        tenant=tenant,
        products=[product_input_parse(item) for item in ITEMS],
        total=len(ITEMS),
        errors=[],
        source=CatalogJob.Source.API,
    )


def test_crashed_job_resumes_without_repeats(tenant, embedder, settings):
    # given: a worker dies while it embeds the third batch of a job
    settings.EMBEDDING_BATCH_SIZE = 2
    job = _submit_items(tenant)

    class DyingEmbedder(CountingEmbedder):
        def embed_passages(self, texts):
            if self.passage_calls == 2:
                raise SimulatedCrash
            return super().embed_passages(texts)

    with pytest.raises(SimulatedCrash):
        catalog_job_run(job_pk=job.pk, embedder=DyingEmbedder(embedder.inner))
    crashed = CatalogJob.objects.get(pk=job.pk)

    # when: the queue runs the job again
    result = catalog_job_run(job_pk=job.pk, embedder=embedder)

    # then: the counter committed with the vectors, and the re-run embedded only the rest
    assert (crashed.status, crashed.embedded) == (CatalogJob.Status.EMBEDDING, 4)
    assert (result.status, result.embedded, result.to_embed) == (
        CatalogJob.Status.COMPLETE,
        7,
        7,
    )
    assert embedder.passages == [_text(item) for item in ITEMS[4:]]


def test_resumed_job_leaves_changed_product_to_its_job(tenant, embedder, settings):
    # given: a worker dies after the first batch of a job, and an upload then changes the
    # name of a product of that batch
    settings.EMBEDDING_BATCH_SIZE = 2
    job = _submit_items(tenant)

    class DyingEmbedder(CountingEmbedder):
        def embed_passages(self, texts):
            if self.passage_calls == 1:
                raise SimulatedCrash
            return super().embed_passages(texts)

    with pytest.raises(SimulatedCrash):
        catalog_job_run(job_pk=job.pk, embedder=DyingEmbedder(embedder.inner))
    renamed = {**ITEMS[0], "name": "Чай зелений 1 новий"}
    change = catalog_job_submit(
        tenant=tenant,
        products=[product_input_parse(renamed)],
        total=1,
        errors=[],
        source=CatalogJob.Source.API,
    )

    # when: the queue runs the crashed job again, then the upload's job
    result = catalog_job_run(job_pk=job.pk, embedder=embedder)
    change_result = catalog_job_run(job_pk=change.pk, embedder=embedder)

    # then: each job counts each of its products once, and every product is current
    assert (result.status, result.embedded, result.to_embed) == (
        CatalogJob.Status.COMPLETE,
        7,
        7,
    )
    assert (change_result.status, change_result.embedded, change_result.to_embed) == (
        CatalogJob.Status.COMPLETE,
        1,
        1,
    )
    assert embedder.passages == [_text(item) for item in ITEMS[2:]] + [_text(renamed)]
    assert products_pending_embedding(tenant=tenant, model_name=embedder.model_name).count() == 0


def test_stopped_job_embeds_each_once(tenant, embedder, settings):
    settings.EMBEDDING_BATCH_SIZE = 3
    job = _submit_items(tenant)
    checks = iter([False, True])

    with pytest.raises(CatalogJobInterrupted, match="Stopped after 3 of 7 products."):
        catalog_job_run(job_pk=job.pk, embedder=embedder, should_stop=lambda: next(checks))
    result = catalog_job_run(job_pk=job.pk, embedder=embedder)

    assert (result.status, result.embedded) == (CatalogJob.Status.COMPLETE, 7)
    assert Counter(embedder.passages) == Counter(_text(item) for item in ITEMS)


class ParallelEmbedder(CountingEmbedder):
    """Embeds two batches at once, and records the threads it prepared.

    The first two calls wait for each other, so a loop that embedded one batch at a time
    would leave the wait to time out.
    """

    parallel_batches = 2

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.prepared_threads: list[str] = []
        self.together: list[bool] = []
        self._first_two = threading.Barrier(2)
        self._lock = threading.Lock()
        self._calls = 0

    def prepare_thread(self) -> None:
        self.prepared_threads.append(threading.current_thread().name)

    def embed_passages(self, texts):
        with self._lock:
            call = self._calls
            self._calls += 1
        if call < 2:
            try:
                self._first_two.wait(timeout=10)
                self.together.append(True)
            except threading.BrokenBarrierError:
                self.together.append(False)
        # The counting and the shared cache of the parent are not thread-safe.
        with self._lock:
            return super().embed_passages(texts)


def test_parallel_batches_embed_at_once(tenant, embedder):
    _upsert(tenant)
    parallel = ParallelEmbedder(embedder.inner)
    written: list[int] = []

    embedded = products_embed_pending(
        tenant=tenant,
        batch_size=2,
        embedder=parallel,
        on_batch_written=lambda count, _last_id: written.append(count),
    )

    assert embedded == 7
    assert written == [2, 2, 2, 1]
    assert parallel.together == [True, True]
    assert len(set(parallel.prepared_threads)) == 2
    assert all(name.startswith("catalog-embed") for name in parallel.prepared_threads)
    assert sorted(parallel.passages) == sorted(_text(item) for item in ITEMS)
    assert products_pending_embedding(tenant=tenant, model_name=parallel.model_name).count() == 0
    assert _embedding_threads() == []


def test_stop_writes_parallel_batches(tenant, embedder):
    _upsert(tenant)
    parallel = ParallelEmbedder(embedder.inner)
    checks = iter([False, False, True])

    with pytest.raises(EmbeddingStopped, match="Stopped after 4 of 7 products.") as stopped:
        products_embed_pending(
            tenant=tenant, batch_size=2, embedder=parallel, should_stop=lambda: next(checks)
        )

    # Both batches that were embedding when the stop came are written, and no third starts.
    assert (stopped.value.processed, stopped.value.embedded) == (4, 4)
    assert sorted(parallel.passages) == sorted(_text(item) for item in ITEMS[:4])
    assert Product.objects.filter(tenant=tenant, embedding__isnull=False).count() == 4


class ParallelFailingEmbedder(CountingEmbedder):
    """Embeds two batches at once, and fails passage call ``failing_call`` (counted from 0)."""

    parallel_batches = 2

    def __init__(self, inner, *, failing_call: int | None = None) -> None:
        super().__init__(inner)
        self.failing_call = failing_call
        self.started_texts: list[list[str]] = []
        self._lock = threading.Lock()

    def embed_passages(self, texts):
        with self._lock:
            call = len(self.started_texts)
            self.started_texts.append(list(texts))
        if call == self.failing_call:
            raise EmbeddingError("The embedding test server is down.")
        with self._lock:
            return super().embed_passages(texts)


def test_second_parallel_batch_failure_keeps_first(tenant, embedder):
    _upsert(tenant)
    failing = ParallelFailingEmbedder(embedder.inner, failing_call=1)
    written: list[int] = []

    with pytest.raises(EmbeddingError, match="The embedding test server is down."):
        products_embed_pending(
            tenant=tenant,
            batch_size=2,
            embedder=failing,
            on_batch_written=lambda count, _last_id: written.append(count),
        )

    pending = products_pending_embedding(tenant=tenant, model_name=embedder.model_name)
    assert written == [2]
    assert sorted(pending.values_list("sku", flat=True)) == [f"tea-{n}" for n in range(3, 8)]
    assert Product.objects.filter(tenant=tenant, embedding__isnull=False).count() == 2
    # The third batch started while the first was written, and its vectors are dropped.
    assert failing.started_texts == [
        [_text(item) for item in ITEMS[start : start + 2]] for start in (0, 2, 4)
    ]
    assert _embedding_threads() == []


def test_write_failure_waits_for_parallel_batches(tenant, embedder):
    _upsert(tenant)
    parallel = ParallelFailingEmbedder(embedder.inner)
    progress: list[tuple[int, int]] = []

    def on_batch_written(count: int, _last_id: int) -> None:
        raise RuntimeError("The database went away.")

    with pytest.raises(RuntimeError, match="The database went away."):
        products_embed_pending(
            tenant=tenant,
            batch_size=2,
            embedder=parallel,
            on_batch_written=on_batch_written,
            on_progress=lambda done, total: progress.append((done, total)),
        )

    assert progress == [(0, 7)]
    assert Product.objects.filter(tenant=tenant, embedding__isnull=False).count() == 0
    # The second and third batches were embedding during the failed write, and both
    # finished before the call returned.
    assert len(parallel.started_texts) == 3
    assert parallel.passage_calls == 3
    assert _embedding_threads() == []


def test_parallel_batches_report_progress(tenant, embedder):
    _upsert(tenant)
    parallel = ParallelFailingEmbedder(embedder.inner)
    progress: list[tuple[int, int]] = []
    written: list[int] = []

    embedded = products_embed_pending(
        tenant=tenant,
        batch_size=2,
        embedder=parallel,
        on_batch_written=lambda count, _last_id: written.append(count),
        on_progress=lambda done, total: progress.append((done, total)),
    )

    assert embedded == 7
    assert written == [2, 2, 2, 1]
    assert progress == [(0, 7), (2, 7), (4, 7), (6, 7), (7, 7)]
    assert parallel.passages == [_text(item) for item in ITEMS]
    assert _embedding_threads() == []


@contextmanager
def _embedding_run_elsewhere(tenant) -> Iterator[psycopg.Connection]:
    """Hold ``tenant``'s embedding lock from another session, as a second run would."""
    other = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    try:
        other.execute(
            "SELECT pg_advisory_lock(hashtextextended(%s, 0))",
            [f"catalog-embed-tenant-{tenant.pk}"],
        )
        yield other
    finally:
        other.close()


@pytest.fixture
def quick_lock_polls(monkeypatch):
    monkeypatch.setattr(services, "EMBEDDING_LOCK_POLL_SECONDS", 0.01)


def test_run_waits_for_other_run_of_tenant(tenant, embedder, quick_lock_polls, caplog):
    _upsert(tenant)
    checks: list[str] = []

    with _embedding_run_elsewhere(tenant) as other:

        def should_stop() -> bool:
            if not checks:
                # The other run ends while this one waits.
                other.execute(
                    "SELECT pg_advisory_unlock(hashtextextended(%s, 0))",
                    [f"catalog-embed-tenant-{tenant.pk}"],
                )
            checks.append("checked")
            return False

        with caplog.at_level("INFO", logger="catalog.services"):
            embedded = products_embed_pending(
                tenant=tenant, batch_size=10, embedder=embedder, should_stop=should_stop
            )

    assert embedded == 7
    assert embedder.passages == [_text(item) for item in ITEMS]
    waiting = [record for record in caplog.records if record.msg == "catalog.embedding.waiting"]
    assert [record.tenant_id for record in waiting] == [tenant.pk]


def test_waiting_run_stops_without_embedding(tenant, embedder, quick_lock_polls):
    _upsert(tenant)

    with (
        _embedding_run_elsewhere(tenant),
        pytest.raises(EmbeddingStopped, match="Stopped after 0 of 7 products.") as stopped,
    ):
        products_embed_pending(
            tenant=tenant, batch_size=2, embedder=embedder, should_stop=lambda: True
        )

    assert (stopped.value.processed, stopped.value.embedded) == (0, 0)
    assert embedder.passages == []
    assert Product.objects.filter(tenant=tenant, embedding__isnull=False).count() == 0


def test_run_gives_up_waiting_after_limit(tenant, embedder, quick_lock_polls, caplog):
    _upsert(tenant)

    with _embedding_run_elsewhere(tenant), caplog.at_level("INFO", logger="catalog.services"):
        embedded = products_embed_pending(
            tenant=tenant, batch_size=10, embedder=embedder, lock_wait_seconds=0.05
        )

    assert embedded == 7
    given_up = [
        record for record in caplog.records if record.msg == "catalog.embedding.lock_given_up"
    ]
    assert [(record.levelname, record.tenant_id) for record in given_up] == [("WARNING", tenant.pk)]
    assert given_up[0].waited_ms >= 50


def test_other_tenants_run_does_not_block(tenant, other_tenant, embedder, quick_lock_polls):
    _upsert(tenant)
    # A run that waited would check twice and stop; a run that starts at once checks once,
    # before its only batch.
    checks = iter([False, True])

    with _embedding_run_elsewhere(other_tenant):
        embedded = products_embed_pending(
            tenant=tenant, batch_size=10, embedder=embedder, should_stop=lambda: next(checks)
        )

    assert embedded == 7


def _tenant_lock_free(tenant) -> bool:
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        row = other.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
            [f"catalog-embed-tenant-{tenant.pk}"],
        ).fetchone()
    return row == (True,)


def test_run_releases_tenant_lock(tenant, embedder):
    _upsert(tenant)

    assert products_embed_pending(tenant=tenant, batch_size=10, embedder=embedder) == 7

    assert _tenant_lock_free(tenant)


def test_failed_run_releases_tenant_lock(tenant, embedder):
    _upsert(tenant)

    with pytest.raises(EmbeddingError):
        products_embed_pending(tenant=tenant, batch_size=10, embedder=FailingEmbedder(embedder))

    assert _tenant_lock_free(tenant)


def test_aborted_transaction_releases_tenant_lock(tenant, embedder, caplog):
    _upsert(tenant)

    def abort_transaction(done: int, total: int) -> None:
        # The test's transaction has no savepoint of its own here, so the error aborts it
        # up to the savepoint that the run took with its lock.
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")

    with (
        caplog.at_level("INFO", logger="catalog.services"),
        pytest.raises(DataError, match="division by zero"),
    ):
        products_embed_pending(
            tenant=tenant, batch_size=10, embedder=embedder, on_progress=abort_transaction
        )

    assert _tenant_lock_free(tenant)
    assert embedder.passages == []
    assert [r.msg for r in caplog.records if r.msg == "catalog.embedding.unlock_failed"] == []
    # The transaction is usable again, and the connection stayed open.
    assert Product.objects.filter(tenant=tenant).count() == len(ITEMS)


@pytest.mark.django_db(transaction=True)
def test_lost_session_closes_connection(tenant, embedder, caplog):
    _upsert(tenant)
    backend_pid = connection.cursor().connection.info.backend_pid

    def end_session(done: int, total: int) -> None:
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    with (
        caplog.at_level("INFO", logger="catalog.services"),
        pytest.raises(OperationalError),
    ):
        products_embed_pending(
            tenant=tenant, batch_size=10, embedder=embedder, on_progress=end_session
        )

    assert _tenant_lock_free(tenant)
    assert connection.connection is None
    unlock_failed = [
        record for record in caplog.records if record.msg == "catalog.embedding.unlock_failed"
    ]
    assert [(record.levelname, record.tenant_id) for record in unlock_failed] == [
        ("WARNING", tenant.pk)
    ]


@pytest.mark.django_db(transaction=True)
def test_caught_run_error_keeps_outer_transaction(tenant, embedder, caplog):
    _upsert(tenant)

    def abort_transaction(done: int, total: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")

    with caplog.at_level("INFO", logger="catalog.services"), transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(name="Shop A renamed")
        # The caller's savepoint recovers its transaction from the run's error.
        with pytest.raises(DataError, match="division by zero"), transaction.atomic():
            products_embed_pending(
                tenant=tenant, batch_size=10, embedder=embedder, on_progress=abort_transaction
            )
        assert _tenant_lock_free(tenant)
        assert Tenant.objects.get(pk=tenant.pk).name == "Shop A renamed"

    assert Tenant.objects.get(pk=tenant.pk).name == "Shop A renamed"
    assert embedder.passages == []
    assert [r.msg for r in caplog.records if r.msg == "catalog.embedding.unlock_failed"] == []
