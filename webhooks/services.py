"""State changes of the webhook delivery log."""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from tenants.models import Tenant
from webhooks.models import WebhookDelivery

logger = logging.getLogger(__name__)

PURGE_BATCH_SIZE = 5000
# Longest age of the purge in days (100 years, see MAX_AGE_DAYS in settings.py).
PURGE_MAX_AGE_DAYS = settings.MAX_AGE_DAYS


def webhook_deliveries_purge(
    *, older_than: timedelta, commit: bool, tenant: Tenant | None = None
) -> int:
    """Delete delivery rows older than ``older_than`` and return how many matched.

    Without ``commit`` nothing is deleted. Rows go in batches of ``PURGE_BATCH_SIZE``, each
    its own short statement, so a large purge never holds long locks.
    """
    expired = WebhookDelivery.objects.filter(created_at__lt=timezone.now() - older_than)
    if tenant is not None:
        expired = expired.filter(tenant=tenant)
    if not commit:
        return expired.count()
    deleted = 0
    while True:
        batch = list(expired.order_by("pk").values_list("pk", flat=True)[:PURGE_BATCH_SIZE])
        if not batch:
            break
        deleted += WebhookDelivery.objects.filter(pk__in=batch).delete()[0]
    logger.info(
        "webhooks.deliveries.purged",
        extra={
            "deleted": deleted,
            "older_than_days": older_than.days,
            "tenant_id": tenant.pk if tenant else None,
        },
    )
    return deleted
