"""Tasks of the ``catalog`` queue, run by ``manage.py procrastinate worker --queues catalog``.

They are thin wrappers around ``catalog.jobs``. procrastinate imports this module in every
process when Django starts, so the tasks can be enqueued from the web process too.
"""

import logging
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from procrastinate import JobContext, RetryStrategy
from procrastinate.contrib.django import app
from procrastinate.exceptions import JobAborted
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job, Status
from procrastinate.manager import JobManager

from catalog import jobs

logger = logging.getLogger(__name__)


def retry_strategy(*, max_retries: int, backoff_seconds: int) -> RetryStrategy | bool:
    """Return the queue's retry setting for a catalog job: ``max_retries`` retries, or none.

    Every failure is retried: embedding endpoints fail for a while and come back, and a
    database error is usually gone by the next run. The n-th retry waits
    ``backoff_seconds ** n`` seconds. procrastinate reads ``max_attempts=0`` as no limit, so
    0 retries is ``False``, which it reads as no retry.
    """
    if max_retries == 0:
        return False
    return RetryStrategy(max_attempts=max_retries, exponential_wait=backoff_seconds)


_RETRY = retry_strategy(
    max_retries=settings.CATALOG_JOB_MAX_RETRIES,
    backoff_seconds=settings.CATALOG_JOB_RETRY_BACKOFF_SECONDS,
)


@app.task(name=jobs.CATALOG_JOB_RUN_TASK, queue=jobs.CATALOG_QUEUE, pass_context=True, retry=_RETRY)
def catalog_job_run(context: JobContext, *, job_pk: int) -> None:
    """Run one catalog job; the queue's lock keeps one job per tenant running at a time."""
    try:
        jobs.catalog_job_run(
            job_pk=job_pk,
            is_last_attempt=context.job.attempts >= settings.CATALOG_JOB_MAX_RETRIES,
            should_stop=context.should_abort,
        )
    except jobs.CatalogJobMissing:
        # The job was deleted with its tenant, or pruned: nothing is left to embed or retry.
        return
    except jobs.CatalogJobInterrupted as exc:
        if context.abort_reason() == AbortReason.USER_REQUEST:
            jobs.catalog_job_fail(job_pk=job_pk, reason="An operator aborted the job.")
        elif context.job.attempts >= settings.CATALOG_JOB_MAX_RETRIES:
            # The queue retries a job that a worker shutdown interrupted only while it has
            # attempts left. Without this, the job would stay "embedding" with no queue entry
            # until catalog_jobs_requeue_lost failed it minutes later.
            jobs.catalog_job_fail(
                job_pk=job_pk,
                reason="The worker running the last attempt was stopped before it finished.",
            )
        # The queue retries a job aborted by a worker shutdown, but not one an operator
        # aborted.
        raise JobAborted(str(exc)) from exc


@app.periodic(cron=settings.CATALOG_RECOVERY_CRON, periodic_id="catalog_jobs_recover")
@app.task(
    name="catalog_jobs_recover",
    queue=jobs.CATALOG_QUEUE,
    queueing_lock="catalog_jobs_recover",
    pass_context=True,
)
async def catalog_jobs_recover(context: JobContext, timestamp: int) -> None:
    """Retry catalog jobs of dead workers, and enqueue jobs whose enqueue was lost."""
    manager = context.app.job_manager
    stalled = await manager.get_stalled_jobs(
        queue=jobs.CATALOG_QUEUE, seconds_since_heartbeat=settings.WORKER_STALLED_AFTER_SECONDS
    )
    for queue_job in stalled:
        await _recover_stalled(manager, queue_job)
    await sync_to_async(jobs.catalog_jobs_requeue_lost)()


@app.periodic(cron=settings.CATALOG_PRUNE_CRON, periodic_id="catalog_jobs_prune")
@app.task(
    name="catalog_jobs_prune",
    queue=jobs.CATALOG_QUEUE,
    queueing_lock="catalog_jobs_prune",
    pass_context=True,
)
async def catalog_jobs_prune(context: JobContext, timestamp: int) -> None:
    """Delete catalog jobs and queue rows older than ``CATALOG_JOB_RETENTION_DAYS``."""
    if settings.CATALOG_JOB_RETENTION_DAYS <= 0:
        return
    older_than = timedelta(days=settings.CATALOG_JOB_RETENTION_DAYS)
    await context.app.job_manager.delete_old_jobs(
        **jobs.catalog_queue_prune_arguments(older_than=older_than)
    )
    await sync_to_async(jobs.catalog_jobs_prune)(older_than=older_than)


async def _recover_stalled(manager: JobManager, queue_job: Job) -> None:
    """Retry a job whose worker stopped sending heartbeats, or fail it once out of retries."""
    extra = {
        "queue_job_id": queue_job.id,
        "task": queue_job.task_name,
        "attempt": queue_job.attempts + 1,
    }
    if queue_job.task_name != jobs.CATALOG_JOB_RUN_TASK:
        # A recovery run that died with its worker; the next scheduled run replaces it.
        await manager.finish_job(job=queue_job, status=Status.FAILED, delete_job=True)
        return
    job_pk = queue_job.task_kwargs["job_pk"]
    assert isinstance(job_pk, int), "catalog_job_run is deferred with an integer job_pk."
    if queue_job.attempts >= settings.CATALOG_JOB_MAX_RETRIES:
        logger.error("catalog.job.stalled_out_of_retries", extra=extra)
        await manager.finish_job(job=queue_job, status=Status.FAILED, delete_job=False)
        await sync_to_async(jobs.catalog_job_fail)(
            job_pk=job_pk, reason="The worker running the job stopped responding."
        )
        return
    logger.warning("catalog.job.stalled_retried", extra=extra)
    await manager.retry_job(queue_job)
