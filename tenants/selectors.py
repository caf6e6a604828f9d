"""Read-only queries about tenants and their credentials."""

from collections import defaultdict
from datetime import timedelta

from django.db import models, router
from django.db.models import Q, QuerySet
from django.db.models.deletion import Collector
from django.utils import timezone

from tenants.keys import hash_api_key
from tenants.models import ApiKey, Tenant

# last_used_at is refreshed at most this often, so that reads do not write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    """Return the unrevoked key of an active tenant matching ``raw_key``, or None."""
    api_key = (
        ApiKey.objects.select_related("tenant")
        .filter(key_hash=hash_api_key(raw_key), revoked_at__isnull=True, tenant__is_active=True)
        .first()
    )
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def tenant_deletion_counts(*, tenant: Tenant) -> dict[type[models.Model], int]:
    """Count the rows that deleting ``tenant`` deletes, per model, without loading them all.

    Django's deletion collector, as ``Tenant.delete`` runs it, loads only the rows whose
    deletion cascades further, such as conversations, and deletes the rest with one query
    per relation, so each model here costs one COUNT. Models without rows are left out.
    Raises ``ProtectedError`` or ``RestrictedError`` when the delete would raise it.
    """
    collector = Collector(using=router.db_for_write(Tenant), origin=tenant)
    collector.collect([tenant])
    querysets: dict[type[models.Model], list[QuerySet]] = defaultdict(list)
    for model, instances in collector.data.items():
        pks = [instance.pk for instance in instances]
        querysets[model].append(model._base_manager.filter(pk__in=pks))
    for queryset in collector.fast_deletes:
        querysets[queryset.model].append(queryset)

    counts: dict[type[models.Model], int] = {}
    for model, model_querysets in querysets.items():
        # A model can be reached through two relations, such as a message through its
        # tenant and through its conversation, so the querysets overlap.
        condition = Q()
        for queryset in model_querysets:
            condition |= Q(pk__in=queryset.values("pk"))
        count = model._base_manager.filter(condition).count()
        if count:
            counts[model] = count
    return counts
