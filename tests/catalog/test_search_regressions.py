"""Search behaviour that once went wrong: statistics from a smaller catalog, a relevance
cut that changed with ``limit``, and a judgment file that is not UTF-8."""

from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from pgvector import Vector

from catalog.models import Product
from catalog.schemas import ProductInput
from catalog.search import product_search
from catalog.services import product_upsert_many
from tests.catalog.helpers import FailingEmbedder, FixedEmbedder

pytestmark = pytest.mark.django_db


def _cheese_and_sausages() -> list[ProductInput]:
    """Return six cheeses with "сир" in the title and six sausages with it only in the body."""
    cheeses = [
        ProductInput(sku=f"cheese-{index}", name=f"Сир твердий {index}", description="Сир")
        for index in range(6)
    ]
    sausages = [
        ProductInput(
            sku=f"sausage-{index}",
            name=f"Ковбаса салямі {index}",
            description="Склад: свинина, сир кисломолочний",
        )
        for index in range(6)
    ]
    return cheeses + sausages


@pytest.mark.parametrize("first_catalog_size", [0, 3], ids=["empty_catalog", "small_catalog"])
def test_title_match_first_after_catalog_grows(tenant, embedder, first_catalog_size):
    """A search before or during the first upload does not invert later rankings.

    The first search caches the product count N (0 or 3 products), and the upload adds 12.
    Statistics kept from before the upload gave a document frequency above N, hence a
    negative IDF, which ranked sausages with "сир" in the body above cheeses named "Сир".
    """
    lexical_only = FailingEmbedder(embedder)
    product_upsert_many(
        tenant=tenant,
        products=[
            ProductInput(sku=f"bread-{index}", name="Хліб білий")
            for index in range(first_catalog_size)
        ],
    )
    product_search(tenant=tenant, query="хліб", embedder=lexical_only)

    product_upsert_many(tenant=tenant, products=_cheese_and_sausages())
    hits = product_search(tenant=tenant, query="сир", limit=6, embedder=lexical_only)

    assert [hit.product.sku.split("-")[0] for hit in hits] == ["cheese"] * 6
    assert all(hit.score > 0 for hit in hits)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def test_unsold_query_ignores_limit(tenant):
    """The relevance cut for vector-only products does not change with ``limit``.

    100 products without lexical matches lie at cosine distances 0.10..0.15 (the first 10),
    up to 0.20 (the first 50) and 0.40..0.60 (the next 50) from the query. Over the first
    50 candidates the nearest ten are spread out, so they are not a cluster. Measured over
    all 100 candidates that limit=100 fetches, the far tail made the same ten look tight.
    """
    query_vector = np.zeros(384)
    query_vector[0] = 1.0
    side = np.zeros(384)
    side[1] = 1.0
    embedder = FixedEmbedder(query_vector)
    distances = (
        list(np.linspace(0.10, 0.15, 10))
        + list(np.linspace(0.16, 0.20, 40))
        + list(np.linspace(0.40, 0.60, 50))
    )
    product_upsert_many(
        tenant=tenant,
        products=[
            ProductInput(sku=f"tea-{index:03d}", name=f"Чай чорний {index}") for index in range(100)
        ],
    )
    for index, distance in enumerate(distances):
        cosine = 1.0 - distance
        vector = _unit(cosine * query_vector + np.sqrt(1 - cosine**2) * side)
        Product.objects.filter(tenant=tenant, sku=f"tea-{index:03d}").update(
            embedding=Vector(vector.astype(np.float32).tolist()),
            embedding_model=embedder.model_name,
        )

    # An exact scan instead of HNSW, whose approximate neighbours among the dead index
    # entries of earlier tests could change which 50 candidates the rule sees.
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
    small = product_search(tenant=tenant, query="телевізор", limit=10, embedder=embedder)
    large = product_search(tenant=tenant, query="телевізор", limit=100, embedder=embedder)

    assert small == []
    assert [hit.product.sku for hit in large] == []


def test_evaluate_search_rejects_non_utf8_judgments(tenant, tmp_path: Path):
    judgments = tmp_path / "judgments.csv"
    judgments.write_bytes(b"query,docid,rating\n\xff\xfe,sku-1,3\n")

    with pytest.raises(CommandError, match="UTF-8"):
        call_command("evaluate_search", "--tenant", tenant.slug, "--judgments", str(judgments))
