"""Read-only queries of the catalog."""

from django.db.models import F, Q, QuerySet

from catalog.models import Product
from tenants.models import Tenant


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
