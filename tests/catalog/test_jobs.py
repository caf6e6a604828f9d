"""Catalog job services run in process: runs, retries, interruptions and recovery."""

import json
from collections import Counter
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from procrastinate import JobContext
from procrastinate.contrib.django import app as queue_app
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.exceptions import JobAborted
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job, Status
from procrastinate.retry import RetryStrategy

from catalog import services, tasks
from catalog.embeddings import EmbeddingError, product_embedding_text
from catalog.jobs import (
    MAX_JOB_ERRORS,
    CatalogJobInterrupted,
    CatalogJobMissing,
    catalog_job_create_reembed,
    catalog_job_enqueue,
    catalog_job_fail,
    catalog_job_run,
    catalog_job_submit,
    catalog_jobs_prune,
    catalog_jobs_requeue_lost,
    catalog_queue_prune_arguments,
)
from catalog.models import CatalogJob, Product
from catalog.schemas import product_input_parse
from catalog.services import products_embed_pending
from tests.catalog.helpers import FailingEmbedder, FixedEmbedder

pytestmark = pytest.mark.django_db

PRODUCTS = [
    {"sku": f"milk-{number}", "name": f"Молоко {number}", "brand": "Галичина"}
    for number in range(1, 6)
]


def _submit(tenant, items=PRODUCTS, errors=()) -> CatalogJob:
    return catalog_job_submit(
        tenant=tenant,
        products=[product_input_parse(item) for item in items],
        total=len(items),
        errors=list(errors),
        source=CatalogJob.Source.API,
    )


def _texts(items) -> list[str]:
    return [product_embedding_text(item) for item in items]


@pytest.fixture
def small_batches(settings):
    settings.EMBEDDING_BATCH_SIZE = 2
    return settings


def test_run_embeds_and_completes(tenant, embedder, small_batches):
    job = _submit(tenant)

    result = catalog_job_run(job_pk=job.pk, embedder=embedder)

    products = Product.objects.filter(tenant=tenant)
    assert result.status == CatalogJob.Status.COMPLETE
    assert (result.to_embed, result.embedded, result.attempts) == (5, 5, 1)
    assert result.product_ids == []
    assert result.started_at <= result.completed_at
    assert embedder.passage_calls == 3
    assert sorted(embedder.passages) == sorted(_texts(PRODUCTS))
    assert all(product.embedding_hash == product.content_hash for product in products)
    assert {product.embedding_model for product in products} == {embedder.model_name}


def test_run_locks_job_row_only(tenant, embedder):
    # FOR UPDATE on the tenant's row would block every insert that references the tenant,
    # such as its chat messages, because foreign key checks take FOR KEY SHARE.
    job = _submit(tenant)

    with CaptureQueriesContext(connection) as context:
        catalog_job_run(job_pk=job.pk, embedder=embedder)

    locking = [query["sql"] for query in context.captured_queries if "FOR UPDATE" in query["sql"]]
    assert len(locking) == 1
    assert locking[0].endswith('FOR UPDATE OF "catalog_catalogjob"')


def test_run_of_finished_job_does_nothing(tenant, embedder):
    job = _submit(tenant)
    catalog_job_run(job_pk=job.pk, embedder=embedder)
    embedder.passages.clear()

    result = catalog_job_run(job_pk=job.pk, embedder=embedder)

    assert result.status == CatalogJob.Status.COMPLETE
    assert result.attempts == 1
    assert embedder.passages == []


def test_run_skips_products_embedded_meanwhile(tenant, embedder):
    # given: two jobs for the same products; the first one embeds them
    first = _submit(tenant)
    second = _submit(tenant)
    catalog_job_run(job_pk=first.pk, embedder=embedder)
    embedder.passages.clear()

    # when
    result = catalog_job_run(job_pk=second.pk, embedder=embedder)

    # then
    assert second.to_embed == 5
    assert result.status == CatalogJob.Status.COMPLETE
    assert result.embedded == 0
    assert embedder.passages == []


def test_run_embeds_latest_content(tenant, embedder):
    # given: a product changes again before the job of its first upload runs
    first = _submit(tenant, [PRODUCTS[0]])
    changed = {**PRODUCTS[0], "description": "Пастеризоване"}
    second = _submit(tenant, [changed])

    # when
    catalog_job_run(job_pk=first.pk, embedder=embedder)
    catalog_job_run(job_pk=second.pk, embedder=embedder)

    # then
    assert embedder.passages == _texts([changed])
    assert CatalogJob.objects.get(pk=first.pk).embedded == 1
    assert CatalogJob.objects.get(pk=second.pk).embedded == 0


def test_failed_attempt_keeps_job_for_retry(tenant, embedder, small_batches):
    job = _submit(tenant)

    with pytest.raises(EmbeddingError):
        catalog_job_run(
            job_pk=job.pk,
            embedder=FailingEmbedder(embedder, fail_after=1),
            is_last_attempt=False,
        )

    job.refresh_from_db()
    assert job.status == CatalogJob.Status.EMBEDDING
    assert job.last_error == "The embedding test server is down."
    assert job.errors == []
    assert job.embedded == 2
    assert job.completed_at is None
    assert Product.objects.filter(tenant=tenant, embedding__isnull=False).count() == 2


def test_failed_last_attempt_fails_job(tenant, embedder, small_batches):
    job = _submit(tenant, errors=["products[9]: sku: This field is required."])
    with pytest.raises(EmbeddingError):
        catalog_job_run(
            job_pk=job.pk,
            embedder=FailingEmbedder(embedder, fail_after=1),
            is_last_attempt=False,
        )

    with pytest.raises(EmbeddingError):
        catalog_job_run(
            job_pk=job.pk, embedder=FailingEmbedder(embedder, fail_after=0), is_last_attempt=True
        )

    job.refresh_from_db()
    assert job.status == CatalogJob.Status.FAILED
    assert job.errors == [
        "products[9]: sku: This field is required.",
        "Embedding failed after 2 attempts: The embedding test server is down. 2 of 5 "
        "products were embedded; upload the others again to embed them.",
    ]
    assert job.last_error == (
        "Embedding failed after 2 attempts: The embedding test server is down."
    )
    assert job.completed_at is not None
    assert job.embedded == 2


def test_unexpected_error_is_reported_without_details(tenant, small_batches):
    job = _submit(tenant)

    class BrokenEmbedder(FixedEmbedder):
        def embed_passages(self, texts):
            raise ZeroDivisionError("division by zero")

    with pytest.raises(ZeroDivisionError):
        catalog_job_run(job_pk=job.pk, embedder=BrokenEmbedder(vector=_unit_vector()))

    job.refresh_from_db()
    assert job.status == CatalogJob.Status.FAILED
    assert job.last_error == (
        "Embedding failed after 1 attempt: Internal error (ZeroDivisionError); the worker log "
        "has the details."
    )


def _unit_vector():
    import numpy as np

    vector = np.zeros(384, dtype=np.float32)
    vector[0] = 1.0
    return vector


def test_interrupted_run_resumes_without_rewriting(tenant, embedder, small_batches):
    # given: a run whose stop check returns True after its first batch
    job = _submit(tenant)
    calls = iter([False, True])
    with pytest.raises(CatalogJobInterrupted, match="Stopped after 2 of 5 products."):
        catalog_job_run(job_pk=job.pk, embedder=embedder, should_stop=lambda: next(calls))
    interrupted = CatalogJob.objects.get(pk=job.pk)

    # when
    result = catalog_job_run(job_pk=job.pk, embedder=embedder)

    # then: each product was embedded once over both runs
    assert (interrupted.status, interrupted.embedded) == (CatalogJob.Status.EMBEDDING, 2)
    assert (result.status, result.embedded, result.attempts) == (CatalogJob.Status.COMPLETE, 5, 2)
    assert Counter(embedder.passages) == Counter(_texts(PRODUCTS))


def test_fail_leaves_finished_job_alone(tenant, embedder):
    job = _submit(tenant)
    catalog_job_run(job_pk=job.pk, embedder=embedder)

    catalog_job_fail(job_pk=job.pk, reason="Too late.")

    job.refresh_from_db()
    assert job.status == CatalogJob.Status.COMPLETE
    assert job.errors == []


def test_errors_are_capped(tenant):
    errors = [f"products[{index}]: sku: This field is required." for index in range(600)]

    job = _submit(tenant, items=[PRODUCTS[0]], errors=errors)

    assert len(job.errors) == MAX_JOB_ERRORS + 1
    assert job.errors[:MAX_JOB_ERRORS] == errors[:MAX_JOB_ERRORS]
    assert job.errors[-1] == "100 more errors were not recorded."


def test_reembed_job_takes_stale_products(tenant, embedder):
    # given: three products embedded by another model, one inactive, one current
    _submit(tenant, PRODUCTS[:3])
    other_model = FixedEmbedder(_unit_vector(), model_name="old-model")
    catalog_job_run(job_pk=_submit(tenant, PRODUCTS[:3]).pk, embedder=other_model)
    _submit(tenant, [{**PRODUCTS[3], "is_active": False}])
    current = _submit(tenant, [PRODUCTS[4]])
    catalog_job_run(job_pk=current.pk, embedder=embedder)

    # when
    job = catalog_job_create_reembed(tenant=tenant, model_name=embedder.model_name)

    # then
    stale = Product.objects.filter(tenant=tenant, sku__in=["milk-1", "milk-2", "milk-3"])
    assert job.source == CatalogJob.Source.REEMBED
    assert job.status == CatalogJob.Status.PENDING
    assert (job.total, job.to_embed) == (3, 3)
    assert job.product_ids == sorted(stale.values_list("pk", flat=True))


def test_reembed_job_with_nothing_stale_is_complete(tenant, embedder):
    catalog_job_run(job_pk=_submit(tenant).pk, embedder=embedder)

    job = catalog_job_create_reembed(tenant=tenant, model_name=embedder.model_name)

    assert job.status == CatalogJob.Status.COMPLETE
    assert job.to_embed == 0


# --- Recovery ---------------------------------------------------------------------------------


def _age(job: CatalogJob, minutes: int) -> None:
    CatalogJob.objects.filter(pk=job.pk).update(
        updated_at=timezone.now() - timedelta(minutes=minutes)
    )


def test_lost_enqueue_is_repaired(tenant):
    # given: a job saved three minutes ago whose enqueue never ran
    job = _submit(tenant)
    _age(job, 3)

    # when
    requeued = catalog_jobs_requeue_lost()

    # then
    queued = ProcrastinateJob.objects.get()
    assert requeued == 1
    assert queued.args == {"job_pk": job.pk}
    assert queued.status == "todo"
    assert CatalogJob.objects.get(pk=job.pk).queue_job_id == queued.id


def test_requeue_skips_queued_recent_and_finished_jobs(tenant, embedder):
    queued = _submit(tenant, [PRODUCTS[0]])
    catalog_job_enqueue(job=queued)
    _age(queued, 3)
    recent = _submit(tenant, [PRODUCTS[1]])
    finished = _submit(tenant, [PRODUCTS[2]])
    catalog_job_run(job_pk=finished.pk, embedder=embedder)
    _age(finished, 3)

    requeued = catalog_jobs_requeue_lost()

    assert requeued == 0
    assert list(ProcrastinateJob.objects.values_list("args", flat=True)) == [{"job_pk": queued.pk}]
    assert CatalogJob.objects.get(pk=recent.pk).status == CatalogJob.Status.PENDING


@override_settings(CATALOG_JOB_MAX_RETRIES=1)
def test_requeue_fails_job_out_of_attempts(tenant, caplog):
    job = _submit(tenant)
    CatalogJob.objects.filter(pk=job.pk).update(
        status=CatalogJob.Status.EMBEDDING, attempts=2, last_error="Connection error."
    )
    _age(job, 3)

    requeued = catalog_jobs_requeue_lost()

    job.refresh_from_db()
    assert requeued == 0
    assert ProcrastinateJob.objects.count() == 0
    assert job.status == CatalogJob.Status.FAILED
    assert job.last_error == "Embedding failed after 2 attempts: Connection error."
    failures = [record for record in caplog.records if record.msg == "catalog.job.failed"]
    assert [(record.levelname, record.job_id) for record in failures] == [("ERROR", job.public_id)]


def test_enqueue_twice_keeps_one_waiting_entry(tenant):
    job = _submit(tenant)

    first = catalog_job_enqueue(job=job)
    second = catalog_job_enqueue(job=job)

    assert first == ProcrastinateJob.objects.get().id
    assert second is None


def _stalled_queue_job(job: CatalogJob):
    """Enqueue ``job`` and mark its queue entry as taken by a worker that then died."""
    manager = queue_app.job_manager
    catalog_job_enqueue(job=job)
    worker_id = async_to_sync(manager.register_worker)()
    fetched = async_to_sync(manager.fetch_job)(queues=["catalog"], worker_id=worker_id)
    async_to_sync(manager.unregister_worker)(worker_id)
    # The Django connector returns the job's JSON arguments as text; a worker's psycopg
    # connector, which the recovery task uses, returns them decoded.
    return fetched.evolve(task_kwargs=json.loads(fetched.task_kwargs))


@override_settings(CATALOG_JOB_MAX_RETRIES=2)
def test_stalled_job_is_retried(tenant):
    job = _submit(tenant)
    stalled = _stalled_queue_job(job)

    async_to_sync(tasks._recover_stalled)(queue_app.job_manager, stalled)

    queued = ProcrastinateJob.objects.get(pk=stalled.id)
    assert (queued.status, queued.attempts) == ("todo", 1)
    assert CatalogJob.objects.get(pk=job.pk).status == CatalogJob.Status.PENDING


@override_settings(CATALOG_JOB_MAX_RETRIES=0)
def test_stalled_job_out_of_retries_fails(tenant):
    job = _submit(tenant)
    CatalogJob.objects.filter(pk=job.pk).update(status=CatalogJob.Status.EMBEDDING, attempts=1)
    stalled = _stalled_queue_job(job)

    async_to_sync(tasks._recover_stalled)(queue_app.job_manager, stalled)

    job.refresh_from_db()
    assert ProcrastinateJob.objects.get(pk=stalled.id).status == "failed"
    assert job.status == CatalogJob.Status.FAILED
    assert job.errors == [
        "Embedding failed after 1 attempt: The worker running the job stopped responding. "
        "0 of 5 products were embedded; upload the others again to embed them."
    ]


def test_admin_lists_jobs_read_only(tenant, admin_client):
    job = _submit(tenant)

    listing = admin_client.get(reverse("admin:catalog_catalogjob_changelist"))
    detail = admin_client.get(reverse("admin:catalog_catalogjob_change", args=[job.pk]))
    add = admin_client.get(reverse("admin:catalog_catalogjob_add"))

    assert listing.status_code == 200
    assert job.public_id in listing.content.decode()
    assert detail.status_code == 200
    assert "Save" not in detail.content.decode()
    assert add.status_code == 403


def _job_reads_of_product_ids(queries) -> list[str]:
    return [
        query["sql"]
        for query in queries
        if '"catalog_catalogjob"."product_ids"' in query["sql"]
        and query["sql"].startswith("SELECT")
    ]


def test_job_reads_skip_product_ids(tenant, server_client, admin_client):
    # A re-embedding job of a large catalog carries one id per product until it completes,
    # and a failed job keeps them, so pages and API reads that show jobs must not load them.
    job = CatalogJob.objects.create(
        tenant=tenant, source=CatalogJob.Source.REEMBED, product_ids=list(range(1, 100_001))
    )
    urls = [
        f"/api/v1/catalog/jobs/{job.public_id}",
        "/api/v1/catalog/jobs",
        f"/api/v1/catalog/jobs?before={job.public_id}",
    ]
    admin_urls = [
        reverse("admin:catalog_catalogjob_changelist"),
        reverse("admin:catalog_catalogjob_change", args=[job.pk]),
    ]

    for url in urls:
        with CaptureQueriesContext(connection) as context:
            response = server_client.get(url)
        assert response.status_code == 200, url
        assert _job_reads_of_product_ids(context.captured_queries) == [], url
    for url in admin_urls:
        with CaptureQueriesContext(connection) as context:
            response = admin_client.get(url)
        assert response.status_code == 200, url
        assert _job_reads_of_product_ids(context.captured_queries) == [], url
    assert server_client.get(urls[0]).json()["job_id"] == job.public_id


def test_admin_save_creates_embedding_job(tenant, admin_client):
    data = {
        "tenant": tenant.pk,
        "sku": "milk-1",
        "name": "Молоко Галичина 2,5%",
        "brand": "",
        "category_path": "",
        "is_active": "on",
        "description": "",
        "ingredients": "",
        "country": "",
        "unit": "pcs",
        "quantity_step": "",
        "min_quantity": "",
        "weight": "",
        "volume": "",
        "barcode": "",
        "image_url": "",
        "attributes": "{}",
    }

    response = admin_client.post(reverse("admin:catalog_product_add"), data)

    job = CatalogJob.objects.get()
    product = Product.objects.get(tenant=tenant, sku="milk-1")
    assert response.status_code == 302
    assert job.source == CatalogJob.Source.ADMIN
    assert (job.total, job.created, job.to_embed) == (1, 1, 1)
    assert job.product_ids == [product.pk]
    assert job.status == CatalogJob.Status.PENDING


def _task_context(
    job: CatalogJob, *, abort_reason: AbortReason | None, attempts: int = 0
) -> JobContext:
    queue_job = Job(
        id=1,
        queue="catalog",
        lock=None,
        queueing_lock=None,
        task_name="catalog_job_run",
        task_kwargs={"job_pk": job.pk},
        attempts=attempts,
    )
    return JobContext(
        app=queue_app, job=queue_job, start_timestamp=0.0, abort_reason=lambda: abort_reason
    )


def test_task_aborted_by_operator_fails_job(tenant):
    job = _submit(tenant)
    context = _task_context(job, abort_reason=AbortReason.USER_REQUEST)

    with pytest.raises(JobAborted):
        tasks.catalog_job_run.func(context, job_pk=job.pk)

    job.refresh_from_db()
    assert job.status == CatalogJob.Status.FAILED
    assert job.last_error == "Embedding failed after 1 attempt: An operator aborted the job."
    assert job.embedded == 0


def test_task_stopped_by_shutdown_stays_embedding(tenant):
    job = _submit(tenant)
    context = _task_context(job, abort_reason=AbortReason.SHUTDOWN)

    with pytest.raises(JobAborted):
        tasks.catalog_job_run.func(context, job_pk=job.pk)

    job.refresh_from_db()
    assert job.status == CatalogJob.Status.EMBEDDING
    assert job.completed_at is None


@override_settings(CATALOG_JOB_MAX_RETRIES=1)
def test_task_stopped_on_last_attempt_fails_job(tenant, caplog):
    # given: the queue's second run of the job, after which it retries no more
    job = _submit(tenant)
    context = _task_context(job, abort_reason=AbortReason.SHUTDOWN, attempts=1)

    # when
    with pytest.raises(JobAborted):
        tasks.catalog_job_run.func(context, job_pk=job.pk)

    # then: the job is failed at once instead of waiting without a queue entry
    job.refresh_from_db()
    reason = "The worker running the last attempt was stopped before it finished."
    assert job.status == CatalogJob.Status.FAILED
    assert job.completed_at is not None
    assert job.last_error == f"Embedding failed after 1 attempt: {reason}"
    assert job.errors == [
        f"Embedding failed after 1 attempt: {reason} 0 of 5 products were embedded; upload "
        "the others again to embed them."
    ]
    failures = [record for record in caplog.records if record.msg == "catalog.job.failed"]
    assert len(failures) == 1
    assert failures[0].levelname == "ERROR"
    assert failures[0].job_id == job.public_id
    assert failures[0].error == reason


def test_fail_ends_reason_with_full_stop(tenant, caplog):
    job = _submit(tenant)

    catalog_job_fail(job_pk=job.pk, reason="Error code: 503 - down")

    job.refresh_from_db()
    assert job.errors == [
        "Embedding failed after 0 attempts: Error code: 503 - down. 0 of 5 products were "
        "embedded; upload the others again to embed them."
    ]
    assert [record.msg for record in caplog.records if record.levelname == "ERROR"] == [
        "catalog.job.failed"
    ]


def test_fail_of_finished_job_logs_nothing(tenant, embedder, caplog):
    job = _submit(tenant)
    catalog_job_run(job_pk=job.pk, embedder=embedder)

    catalog_job_fail(job_pk=job.pk, reason="Too late.")

    job.refresh_from_db()
    assert job.status == CatalogJob.Status.COMPLETE
    assert job.errors == []
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []


def test_embed_accepts_many_product_ids(tenant, embedder):
    # given: more ids than the 65,535 parameters of a statement bound on the server
    job = _submit(tenant, PRODUCTS[:2])
    product_ids = [*job.product_ids, *range(10_000_000, 10_070_000)]

    # when
    embedded = products_embed_pending(tenant=tenant, embedder=embedder, product_ids=product_ids)

    # then
    assert embedded == 2
    assert sorted(embedder.passages) == sorted(_texts(PRODUCTS[:2]))


def test_embed_sends_ids_in_small_windows(tenant, embedder):
    # given: a list of ids as long as a re-embedding job of a large catalog
    job = _submit(tenant, PRODUCTS[:2])
    product_ids = [*job.product_ids, *range(10_000_000, 10_070_000)]

    # when
    with CaptureQueriesContext(connection) as queries:
        embedded = products_embed_pending(tenant=tenant, embedder=embedder, product_ids=product_ids)

    # then: no query carries the whole list, whose ids alone are 560,000 characters
    assert embedded == 2
    assert max(len(query["sql"]) for query in queries.captured_queries) < 10_000


def test_embed_windows_skip_products_not_pending(tenant, other_tenant, embedder, monkeypatch):
    # given: windows of two ids, and ids that are inactive, embedded, of another tenant, at
    # or below after_id, or repeated
    monkeypatch.setattr(services._ProductIdList, "WINDOW", 2)
    items = [
        {"sku": f"kefir-{number}", "name": f"Кефір {number}", "brand": "Галичина"}
        for number in range(1, 9)
    ]
    job = _submit(tenant, items)
    ids = sorted(job.product_ids)
    Product.objects.filter(pk=ids[3]).update(is_active=False)
    products_embed_pending(tenant=tenant, embedder=embedder, product_ids=[ids[5]])
    other_job = _submit(other_tenant, items[:1])
    product_ids = [*reversed(ids), ids[6], *other_job.product_ids]
    embedder.passages.clear()
    progress = []

    # when
    embedded = products_embed_pending(
        tenant=tenant,
        embedder=embedder,
        batch_size=2,
        product_ids=product_ids,
        after_id=ids[0],
        on_progress=lambda done, total: progress.append((done, total)),
    )

    # then
    assert embedded == 5
    assert embedder.passages == _texts([items[1], items[2], items[4], items[6], items[7]])
    assert progress == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert not Product.objects.get(pk=ids[0]).embedding_hash
    assert not Product.objects.get(pk=ids[3]).embedding_hash
    assert not Product.objects.get(pk=other_job.product_ids[0]).embedding_hash


def _finished_job(tenant, status, *, days_ago: float) -> CatalogJob:
    job = _submit(tenant, items=PRODUCTS[:1])
    CatalogJob.objects.filter(pk=job.pk).update(
        status=status, completed_at=timezone.now() - timedelta(days=days_ago)
    )
    return job


def _old_unfinished_job(tenant, status) -> CatalogJob:
    job = _submit(tenant, items=PRODUCTS[:1])
    long_ago = timezone.now() - timedelta(days=400)
    CatalogJob.objects.filter(pk=job.pk).update(
        status=status, created_at=long_ago, updated_at=long_ago
    )
    return job


@pytest.fixture
def aged_jobs(tenant, other_tenant):
    """Jobs of two tenants: finished long ago, finished lately and unfinished for long."""
    return {
        "old_complete": _finished_job(tenant, CatalogJob.Status.COMPLETE, days_ago=100),
        "old_failed": _finished_job(other_tenant, CatalogJob.Status.FAILED, days_ago=91),
        "recent_complete": _finished_job(tenant, CatalogJob.Status.COMPLETE, days_ago=89),
        "recent_failed": _finished_job(other_tenant, CatalogJob.Status.FAILED, days_ago=1),
        "old_pending": _old_unfinished_job(tenant, CatalogJob.Status.PENDING),
        "old_embedding": _old_unfinished_job(other_tenant, CatalogJob.Status.EMBEDDING),
    }


def _kept_jobs(aged_jobs) -> set[str]:
    remaining = set(CatalogJob.objects.values_list("pk", flat=True))
    return {name for name, job in aged_jobs.items() if job.pk in remaining}


def test_prune_deletes_old_finished_jobs(aged_jobs, caplog):
    caplog.set_level("INFO", logger="catalog.jobs")

    deleted = catalog_jobs_prune(older_than=timedelta(days=90))

    assert deleted == 2
    assert _kept_jobs(aged_jobs) == {
        "recent_complete",
        "recent_failed",
        "old_pending",
        "old_embedding",
    }
    records = [record for record in caplog.records if record.msg == "catalog.jobs.pruned"]
    assert [record.deleted_count for record in records] == [2]


def _queue_row(job: CatalogJob, *, status: Status | None, days_ago: float, queue="catalog"):
    """Enqueue ``job`` on ``queue``, finish it with ``status`` unless None, and age its events."""
    manager = queue_app.job_manager
    if queue == "catalog":
        queue_job_id = catalog_job_enqueue(job=job)
    else:
        task = queue_app.configure_task(name=tasks.catalog_job_run.name, queue=queue)
        queue_job_id = task.defer(job_pk=job.pk)
    if status is not None:
        worker_id = async_to_sync(manager.register_worker)()
        fetched = async_to_sync(manager.fetch_job)(queues=[queue], worker_id=worker_id)
        assert fetched.id == queue_job_id
        async_to_sync(manager.finish_job)(job=fetched, status=status, delete_job=False)
        async_to_sync(manager.unregister_worker)(worker_id)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE procrastinate_events SET at = now() - make_interval(days => %s)"
            " WHERE job_id = %s",
            [days_ago, queue_job_id],
        )
    return queue_job_id


def test_queue_prune_deletes_old_finished_rows(tenant):
    rows = {
        "old_failed": _queue_row(_submit(tenant), status=Status.FAILED, days_ago=100),
        "old_aborted": _queue_row(_submit(tenant), status=Status.ABORTED, days_ago=100),
        "recent_failed": _queue_row(_submit(tenant), status=Status.FAILED, days_ago=10),
        "old_waiting": _queue_row(_submit(tenant), status=None, days_ago=100),
        "other_queue_failed": _queue_row(
            _submit(tenant), status=Status.FAILED, days_ago=100, queue="other"
        ),
    }

    async_to_sync(queue_app.job_manager.delete_old_jobs)(
        **catalog_queue_prune_arguments(older_than=timedelta(days=90))
    )

    remaining = set(ProcrastinateJob.objects.values_list("id", flat=True))
    assert {name for name, row in rows.items() if row in remaining} == {
        "recent_failed",
        "old_waiting",
        "other_queue_failed",
    }


def test_queue_prune_arguments_round_up_to_hours():
    arguments = catalog_queue_prune_arguments(older_than=timedelta(minutes=90))

    assert arguments == {
        "nb_hours": 2,
        "queue": "catalog",
        "include_failed": True,
        "include_cancelled": True,
        "include_aborted": True,
    }


def _prune_context() -> JobContext:
    queue_job = Job(
        id=1,
        queue="catalog",
        lock=None,
        queueing_lock="catalog_jobs_prune",
        task_name="catalog_jobs_prune",
        task_kwargs={"timestamp": 0},
    )
    return JobContext(app=queue_app, job=queue_job, start_timestamp=0.0, abort_reason=lambda: None)


@override_settings(CATALOG_JOB_RETENTION_DAYS=90)
def test_prune_task_deletes_jobs_and_rows(tenant, aged_jobs):
    old_row = _queue_row(_submit(tenant), status=Status.FAILED, days_ago=100)
    recent_row = _queue_row(_submit(tenant), status=Status.FAILED, days_ago=10)

    async_to_sync(tasks.catalog_jobs_prune.func)(_prune_context(), timestamp=0)

    assert _kept_jobs(aged_jobs) == {
        "recent_complete",
        "recent_failed",
        "old_pending",
        "old_embedding",
    }
    assert set(ProcrastinateJob.objects.values_list("id", flat=True)) == {recent_row}
    assert old_row != recent_row


@override_settings(CATALOG_JOB_RETENTION_DAYS=0)
def test_prune_task_disabled_keeps_everything(tenant, aged_jobs):
    old_row = _queue_row(_submit(tenant), status=Status.FAILED, days_ago=1000)

    async_to_sync(tasks.catalog_jobs_prune.func)(_prune_context(), timestamp=0)

    assert _kept_jobs(aged_jobs) == set(aged_jobs)
    assert set(ProcrastinateJob.objects.values_list("id", flat=True)) == {old_row}


def test_prune_task_is_scheduled_daily():
    tasks_by_id = {
        periodic.periodic_id: periodic
        for periodic in queue_app.periodic_registry.periodic_tasks.values()
    }

    assert tasks_by_id["catalog_jobs_prune"].cron == "30 3 * * *"
    assert tasks_by_id["catalog_jobs_prune"].task.queue == "catalog"


def test_task_of_deleted_tenant_ends_quietly(tenant, caplog):
    job = _submit(tenant)
    context = _task_context(job, abort_reason=None)
    tenant.delete()

    result = tasks.catalog_job_run.func(context, job_pk=job.pk)

    assert result is None
    assert CatalogJob.objects.filter(pk=job.pk).exists() is False
    assert Product.objects.count() == 0
    assert [record.message for record in caplog.records if record.levelname == "WARNING"] == [
        "catalog.job.missing"
    ]


def test_job_deleted_during_run_is_missing(tenant, embedder, caplog):
    job = _submit(tenant)

    def delete_the_tenant() -> bool:
        # Called before the first batch starts embedding.
        tenant.delete()
        return False

    with pytest.raises(CatalogJobMissing):
        catalog_job_run(job_pk=job.pk, embedder=embedder, should_stop=delete_the_tenant)

    assert CatalogJob.objects.filter(pk=job.pk).exists() is False
    assert Product.objects.count() == 0
    assert [record.message for record in caplog.records if record.levelname == "WARNING"] == [
        "catalog.job.missing"
    ]


def test_failing_a_deleted_job_does_nothing(tenant):
    job = _submit(tenant)
    tenant.delete()

    catalog_job_fail(job_pk=job.pk, reason="The worker running the job stopped responding.")

    assert CatalogJob.objects.filter(pk=job.pk).exists() is False


def _queue_job(*, attempts: int) -> Job:
    return Job(
        id=1,
        queue="catalog",
        lock=None,
        queueing_lock=None,
        task_name="catalog_job_run",
        task_kwargs={},
        attempts=attempts,
    )


def test_retry_strategy_without_retries_is_off():
    strategy = tasks.retry_strategy(max_retries=0, backoff_seconds=3)

    # A RetryStrategy with max_attempts=0 would retry without limit.
    assert strategy is False


def test_retry_strategy_stops_after_max_retries():
    strategy = tasks.retry_strategy(max_retries=2, backoff_seconds=3)
    assert isinstance(strategy, RetryStrategy)
    error = RuntimeError("down")

    first = strategy.get_retry_decision(exception=error, job=_queue_job(attempts=0))
    second = strategy.get_retry_decision(exception=error, job=_queue_job(attempts=1))
    third = strategy.get_retry_decision(exception=error, job=_queue_job(attempts=2))

    now = timezone.now()
    assert first is not None
    assert first.retry_at is not None
    assert round((first.retry_at - now).total_seconds()) == 3
    assert second is not None
    assert second.retry_at is not None
    assert round((second.retry_at - now).total_seconds()) == 9
    assert third is None
