"""Hybrid product search scoped to one tenant's active products."""

from dataclasses import dataclass

from catalog.models import Product
from tenants.models import Tenant


@dataclass(frozen=True)
class SearchHit:
    product: Product
    score: float


def product_search(
    *, tenant: Tenant, query: str, limit: int = 10, category: str | None = None
) -> list[SearchHit]:
    """Return up to ``limit`` of ``tenant``'s active products best matching ``query``."""
    raise NotImplementedError
