"""Read-only queries about tenants and their credentials."""

from datetime import timedelta

from django.utils import timezone

from tenants.keys import hash_api_key
from tenants.models import ApiKey

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
