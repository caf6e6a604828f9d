"""Read-only queries of the catalog."""

from django.db.models import F, Q, QuerySet

from catalog.models import CatalogJob, Product
from tenants.models import Tenant
from vizochok.exceptions import NotFound


def products_pending_embedding(*, tenant: Tenant, model_name: str) -> QuerySet[Product]:
    """Return ``tenant``'s active products whose embedding is missing or stale.

    An embedding is stale when it was computed from other content (``embedding_hash``) or
    by another model (``embedding_model``). Inactive products are not embedded until they
    are active again.
    """
    return Product.objects.filter(tenant=tenant, is_active=True).filter(
        Q(embedding__isnull=True)
        | ~Q(embedding_hash=F("content_hash"))
        | ~Q(embedding_model=model_name)
    )


def _jobs_without_product_ids() -> QuerySet[CatalogJob]:
    """Return the jobs without loading ``product_ids``, for reads that show jobs.

    A job keeps one id per product to embed until it completes, and a failed job keeps them
    for good, so a re-embedding job of a 100,000-product catalog carries 100,000 ids.
    """
    return CatalogJob.objects.select_related("tenant").defer("product_ids")


def catalog_job_get(*, tenant: Tenant, job_id: str) -> CatalogJob:
    """Return ``tenant``'s job with the public id ``job_id``, or raise ``NotFound``.

    The job's ``product_ids`` are not loaded until they are read.
    """
    job = _jobs_without_product_ids().filter(tenant=tenant, public_id=job_id).first()
    if job is None:
        raise NotFound(f"Catalog job {job_id!r} not found.")
    return job


def catalog_jobs_list(
    *,
    tenant: Tenant,
    limit: int,
    before: str | None = None,
    status: str | None = None,
) -> list[CatalogJob]:
    """Return up to ``limit`` of ``tenant``'s jobs, newest first.

    ``before`` is a job id: only jobs created before that job are returned, which pages
    through older jobs. ``status`` keeps jobs in that status.
    """
    jobs = _jobs_without_product_ids().filter(tenant=tenant)
    if status is not None:
        jobs = jobs.filter(status=status)
    if before is not None:
        anchor = catalog_job_get(tenant=tenant, job_id=before)
        jobs = jobs.filter(
            Q(created_at__lt=anchor.created_at) | Q(created_at=anchor.created_at, pk__lt=anchor.pk)
        )
    return list(jobs.order_by("-created_at", "-pk")[:limit])
