"""Catalog jobs: record an upload, embed its products on a worker, and recover jobs that a
dead worker or a lost enqueue left unfinished.

Product metadata is written before a job exists (``catalog_job_submit``), so deactivations
and edits of non-content fields apply at once. The job then embeds the products whose vector
is missing or stale. It runs on the ``catalog`` queue of the task queue (procrastinate, in
the application's own PostgreSQL database); ``catalog/tasks.py`` contains the task wrappers.

Crash safety rests on two facts. Each embedding batch is written together with the job's
``embedded`` counter and the batch's highest product id in one transaction, and batches are
written in id order. A run selects only products whose vector is missing or was computed
from other content or by another model. So a run that restarts after a crash continues after
the last committed batch, writes no product's vector twice for the same content, and counts
each product of the job at most once.
"""

import functools
import logging
import math
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import CharField, Exists, F, OuterRef, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from procrastinate.contrib.django import app as queue_app
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.exceptions import AlreadyEnqueued

from catalog.embeddings import Embedder, get_embedder
from catalog.models import CatalogJob
from catalog.schemas import ProductInput
from catalog.selectors import products_pending_embedding
from catalog.services import (
    UPSERT_BATCH_SIZE,
    EmbeddingStopped,
    product_upsert_many,
    products_embed_pending,
)
from tenants.models import Tenant
from vizochok.exceptions import AppError

logger = logging.getLogger(__name__)

CATALOG_QUEUE = "catalog"
CATALOG_JOB_RUN_TASK = "catalog_job_run"

# A job keeps at most this many messages in ``errors``, and one more message states how many
# were left out. That keeps the job row small: a 1,000-product upload with one problem per
# product keeps the first half of its messages.
MAX_JOB_ERRORS = 500

# An unfinished job without a queue entry is enqueued again once it has not changed for this
# long, so that the recovery never races the enqueue that runs right after the commit.
LOST_ENQUEUE_GRACE = timedelta(minutes=2)


class CatalogJobMissing(Exception):
    """The job's row no longer exists: its tenant was deleted, or the job was pruned."""


def _job_missing(job_pk: int) -> CatalogJobMissing:
    """Log that the job ``job_pk`` is gone, and return the exception that ends its task."""
    logger.warning("catalog.job.missing", extra={"job_pk": job_pk})
    return CatalogJobMissing(f"Catalog job {job_pk} no longer exists.")


class CatalogJobInterrupted(Exception):
    """The worker asked a running job to stop between batches; the job is retried later."""


def _queue_lock(tenant_id: int) -> str:
    # Jobs of one tenant run one after another, so that two jobs never embed the same
    # product at the same time.
    return f"catalog-tenant-{tenant_id}"


# At most one waiting queue entry per catalog job.
_QUEUEING_LOCK_PREFIX = "catalog-job-"


def _queueing_lock(job_pk: int) -> str:
    return f"{_QUEUEING_LOCK_PREFIX}{job_pk}"


def _capped_errors(errors: Sequence[str]) -> list[str]:
    if len(errors) <= MAX_JOB_ERRORS:
        return list(errors)
    left_out = len(errors) - MAX_JOB_ERRORS
    return [*errors[:MAX_JOB_ERRORS], f"{left_out} more errors were not recorded."]


def catalog_job_enqueue(*, job: CatalogJob) -> int | None:
    """Put ``job`` on the catalog queue; return the queue's job id, or None if already there."""
    try:
        # The savepoint keeps a rejected insert from aborting a surrounding transaction.
        with transaction.atomic():
            queue_job_id = queue_app.configure_task(
                CATALOG_JOB_RUN_TASK,
                allow_unknown=False,
                lock=_queue_lock(job.tenant_id),
                queueing_lock=_queueing_lock(job.pk),
            ).defer(job_pk=job.pk)
    except AlreadyEnqueued:
        logger.info(
            "catalog.job.already_enqueued",
            extra={"tenant_id": job.tenant_id, "job_id": job.public_id},
        )
        return None
    CatalogJob.objects.filter(pk=job.pk).update(queue_job_id=queue_job_id)
    logger.info(
        "catalog.job.enqueued",
        extra={"tenant_id": job.tenant_id, "job_id": job.public_id, "queue_job_id": queue_job_id},
    )
    return queue_job_id


def _job_save(job: CatalogJob) -> CatalogJob:
    """Save a new job; a job with products to embed is enqueued after the commit."""
    if not job.product_ids:
        now = timezone.now()
        job.status = CatalogJob.Status.COMPLETE
        job.started_at = job.completed_at = now
    with transaction.atomic():
        job.save()
        logger.info(
            "catalog.job.created",
            extra={
                "tenant_id": job.tenant_id,
                "job_id": job.public_id,
                "source": str(job.source),
                "status": str(job.status),
                "total": job.total,
                "to_embed": job.to_embed,
                "error_count": len(job.errors),
            },
        )
        if not job.is_finished:
            # robust: a failed enqueue is logged, not raised after the commit, and
            # catalog_jobs_requeue_lost enqueues the job later.
            transaction.on_commit(functools.partial(catalog_job_enqueue, job=job), robust=True)
    return job


def catalog_job_submit(
    *,
    tenant: Tenant,
    products: Sequence[ProductInput],
    total: int,
    errors: Sequence[str],
    source: CatalogJob.Source,
    upsert_batch_size: int = UPSERT_BATCH_SIZE,
) -> CatalogJob:
    """Upsert ``products`` now and record a job that embeds the ones that need it.

    ``total`` counts every product of the upload, valid or not, and ``errors`` describes the
    invalid ones. When nothing needs embedding, the job is complete at once; otherwise it is
    pending and is put on the queue after the transaction commits. ``upsert_batch_size`` is
    passed to ``product_upsert_many``.
    """
    summary = product_upsert_many(tenant=tenant, products=products, batch_size=upsert_batch_size)
    job = CatalogJob(
        tenant=tenant,
        source=source,
        total=total,
        created=summary.created,
        updated=summary.updated,
        unchanged=summary.unchanged,
        to_embed=len(summary.to_embed),
        product_ids=summary.to_embed,
        errors=_capped_errors(errors),
    )
    return _job_save(job)


def catalog_job_create_reembed(*, tenant: Tenant, model_name: str) -> CatalogJob:
    """Record a job that embeds every active product of ``tenant`` whose vector is stale.

    A vector is stale when it is missing, was computed from other content, or by a model
    other than ``model_name``.
    """
    pending = products_pending_embedding(tenant=tenant, model_name=model_name)
    product_ids = list(pending.order_by("pk").values_list("pk", flat=True))
    job = CatalogJob(
        tenant=tenant,
        source=CatalogJob.Source.REEMBED,
        total=len(product_ids),
        to_embed=len(product_ids),
        product_ids=product_ids,
    )
    return _job_save(job)


def _job_start(job_pk: int) -> CatalogJob | None:
    """Mark the job as embedding and count the attempt; return None if it is finished.

    Raises ``CatalogJobMissing`` when the job no longer exists.
    """
    with transaction.atomic():
        # Only the job's row: a lock on the joined tenant row would block the inserts of
        # every row that references the tenant until this transaction ends.
        job = (
            CatalogJob.objects.select_for_update(of=("self",))
            .select_related("tenant")
            .filter(pk=job_pk)
            .first()
        )
        if job is None:
            raise _job_missing(job_pk)
        if job.is_finished:
            logger.info(
                "catalog.job.already_finished",
                extra={
                    "tenant_id": job.tenant_id,
                    "job_id": job.public_id,
                    "status": str(job.status),
                },
            )
            return None
        job.status = CatalogJob.Status.EMBEDDING
        job.attempts += 1
        job.started_at = job.started_at or timezone.now()
        job.save(update_fields=["status", "attempts", "started_at", "updated_at"])
    return job


def _count_embedded(job_pk: int, written: int, last_id: int) -> None:
    CatalogJob.objects.filter(pk=job_pk).update(
        embedded=F("embedded") + written, embedded_through_id=last_id, updated_at=timezone.now()
    )


def catalog_job_run(
    *,
    job_pk: int,
    embedder: Embedder | None = None,
    is_last_attempt: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> CatalogJob:
    """Embed the job's products that still need a vector, and mark the job complete.

    Safe to run again after a crash: a run continues after the last batch that an earlier
    run wrote. A job that is already complete or failed is returned unchanged.
    ``should_stop`` is checked before each batch starts embedding. When it returns True, the
    batch already embedding is written, ``CatalogJobInterrupted`` is raised, and the job stays
    ``embedding`` for the next run. ``CatalogJobMissing`` is raised when the job's row is
    gone, before or during the run. Any other exception is recorded in ``last_error`` and
    re-raised for the queue to retry; on the last attempt the job is marked failed first.
    ``job_pk`` is the internal primary key: the task queue passes it, never a client.
    """
    job = _job_start(job_pk)
    if job is None:
        return CatalogJob.objects.get(pk=job_pk)
    embedder = embedder or get_embedder()
    logger.info(
        "catalog.job.started",
        extra={
            "tenant_id": job.tenant_id,
            "job_id": job.public_id,
            "attempt": job.attempts,
            "to_embed": job.to_embed,
            "already_embedded": job.embedded,
            "embedded_through_id": job.embedded_through_id,
        },
    )

    try:
        products_embed_pending(
            tenant=job.tenant,
            embedder=embedder,
            product_ids=job.product_ids,
            # A run continues after the batches written before it, as a run that never
            # stopped would. A product of those batches whose content changed since then is
            # embedded by the job of that change, and counting it here too would count it
            # twice in this job.
            after_id=job.embedded_through_id,
            on_batch_written=functools.partial(_count_embedded, job.pk),
            should_stop=should_stop,
            # The recovery task takes a worker silent this long for dead, so a job waits no
            # longer for a lock that a lost session may still hold.
            lock_wait_seconds=settings.WORKER_STALLED_AFTER_SECONDS,
        )
    except EmbeddingStopped as exc:
        logger.info(
            "catalog.job.interrupted",
            extra={"tenant_id": job.tenant_id, "job_id": job.public_id, "attempt": job.attempts},
        )
        raise CatalogJobInterrupted(str(exc)) from exc
    except Exception as exc:
        _job_record_failure(job, exc, is_last_attempt=is_last_attempt)
        raise

    return _job_complete(job)


def _job_complete(job: CatalogJob) -> CatalogJob:
    now = timezone.now()
    CatalogJob.objects.filter(pk=job.pk).update(
        status=CatalogJob.Status.COMPLETE,
        completed_at=now,
        product_ids=[],
        last_error="",
        updated_at=now,
    )
    try:
        job.refresh_from_db()
    except CatalogJob.DoesNotExist:
        raise _job_missing(job.pk) from None
    logger.info(
        "catalog.job.complete",
        extra={
            "tenant_id": job.tenant_id,
            "job_id": job.public_id,
            "attempt": job.attempts,
            "to_embed": job.to_embed,
            "embedded": job.embedded,
            "duration_ms": _duration_ms(job),
        },
    )
    return job


def _duration_ms(job: CatalogJob) -> int | None:
    if job.started_at is None or job.completed_at is None:
        return None
    return round((job.completed_at - job.started_at).total_seconds() * 1000)


def _failure_message(exc: Exception) -> str:
    if isinstance(exc, AppError):
        return exc.detail
    return f"Internal error ({type(exc).__name__}); the worker log has the details."


def _job_record_failure(job: CatalogJob, exc: Exception, *, is_last_attempt: bool) -> None:
    message = _failure_message(exc)
    extra = {
        "tenant_id": job.tenant_id,
        "job_id": job.public_id,
        "attempt": job.attempts,
        "error": message,
    }
    if is_last_attempt:
        catalog_job_fail(job_pk=job.pk, reason=message, exc_info=exc)
        return
    logger.warning("catalog.job.attempt_failed", exc_info=exc, extra=extra)
    CatalogJob.objects.filter(pk=job.pk).update(last_error=message, updated_at=timezone.now())


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _sentence(text: str) -> str:
    """Return ``text`` ending in a full stop, so that a sentence can follow it."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def catalog_job_fail(*, job_pk: int, reason: str, exc_info: BaseException | None = None) -> None:
    """Mark an unfinished job failed, and add ``reason`` and the job's progress to its errors.

    The products already embedded keep their vectors. The others stay pending, and a new
    upload of them, or ``reembed_catalog``, embeds them. Logs ``catalog.job.failed``, with
    the traceback of ``exc_info`` when given, unless the job is gone or already finished.
    """
    with transaction.atomic():
        job = CatalogJob.objects.select_for_update().filter(pk=job_pk).first()
        if job is None or job.is_finished:
            return
        # The reason may be an embedding endpoint's own message, which often lacks a full
        # stop, and the progress sentence follows it.
        message = f"Embedding failed after {_attempts(job.attempts)}: {_sentence(reason)}"
        job.status = CatalogJob.Status.FAILED
        job.completed_at = timezone.now()
        job.last_error = message
        job.errors = [
            *job.errors,
            f"{message} {job.embedded} of {job.to_embed} products were embedded; upload the "
            "others again to embed them.",
        ]
        job.save(update_fields=["status", "completed_at", "last_error", "errors", "updated_at"])
    logger.error(
        "catalog.job.failed",
        exc_info=exc_info,
        extra={
            "tenant_id": job.tenant_id,
            "job_id": job.public_id,
            "attempt": job.attempts,
            "error": reason,
            "embedded": job.embedded,
            "to_embed": job.to_embed,
        },
    )


def catalog_jobs_requeue_lost() -> int:
    """Enqueue unfinished jobs that have no waiting or running queue entry; return how many.

    Such a job was saved, but the process died before its enqueue, which runs after the
    commit. A job that has used up its attempts is marked failed instead.
    """
    active_queue_entry = ProcrastinateJob.objects.filter(
        queueing_lock=_queueing_lock_expression(), status__in=["todo", "doing"]
    )
    lost = CatalogJob.objects.filter(
        status__in=[CatalogJob.Status.PENDING, CatalogJob.Status.EMBEDDING],
        updated_at__lt=timezone.now() - LOST_ENQUEUE_GRACE,
    ).exclude(Exists(active_queue_entry))
    requeued = 0
    for job in lost:
        if job.attempts > settings.CATALOG_JOB_MAX_RETRIES:
            catalog_job_fail(job_pk=job.pk, reason=job.last_error or "No attempt finished.")
            continue
        logger.warning(
            "catalog.job.requeued",
            extra={
                "tenant_id": job.tenant_id,
                "job_id": job.public_id,
                "status": str(job.status),
            },
        )
        if catalog_job_enqueue(job=job) is not None:
            requeued += 1
    return requeued


def catalog_jobs_prune(*, older_than: timedelta) -> int:
    """Delete every tenant's catalog jobs that finished more than ``older_than`` ago.

    Pending and embedding jobs are kept however old they are. Returns how many jobs were
    deleted.
    """
    cutoff = timezone.now() - older_than
    deleted, _ = CatalogJob.objects.filter(
        status__in=[CatalogJob.Status.COMPLETE, CatalogJob.Status.FAILED],
        completed_at__lt=cutoff,
    ).delete()
    logger.info(
        "catalog.jobs.pruned",
        extra={"deleted_count": deleted, "completed_before": cutoff.isoformat()},
    )
    return deleted


def catalog_queue_prune_arguments(*, older_than: timedelta) -> dict[str, Any]:
    """Return the arguments of the queue's ``delete_old_jobs`` for the catalog queue.

    They delete the rows of jobs that succeeded, failed, were cancelled or were aborted more
    than ``older_than`` ago, rounded up to whole hours. Rows of waiting and running jobs stay.
    """
    return {
        "nb_hours": max(1, math.ceil(older_than / timedelta(hours=1))),
        "queue": CATALOG_QUEUE,
        "include_failed": True,
        "include_cancelled": True,
        "include_aborted": True,
    }


def _queueing_lock_expression() -> Any:
    """Return the SQL twin of ``_queueing_lock`` for the job of the outer query."""
    return Concat(Value(_QUEUEING_LOCK_PREFIX), Cast(OuterRef("pk"), CharField()))
