"""Hybrid product search scoped to one tenant's active products.

Three retrievers each rank up to ``CANDIDATES_PER_STAGE`` products, and reciprocal rank
fusion (RRF) merges their ranks into one score. A product's score is the sum over the
stages that found it of ``weight / (RRF_K + rank)``:

- vector: cosine distance between the query's embedding and the product's embedding;
- full-text: ``ts_rank_cd`` over ``search_vector``, products that contain every query
  term ranked above those that contain only some;
- trigram: ``word_similarity`` between the normalised query and ``search_title``, which
  catches typos that neither of the other stages forgives.

A product whose SKU or barcode equals the query is listed first. docs/search.md explains
the stages, the weights and the known limits.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from pgvector import Vector

from catalog.embeddings import Embedder, EmbeddingError, get_embedder
from catalog.models import Product
from catalog.text import build_tsquery, normalize_text
from tenants.models import Tenant

logger = logging.getLogger(__name__)

MAX_LIMIT = 100
# Queries are cut to this many characters, which bounds the cost of embedding and matching.
# Shop search queries are far shorter.
MAX_QUERY_LENGTH = 200

CANDIDATES_PER_STAGE = 50
# A large RRF constant flattens the score differences between neighbouring ranks, so
# agreement between stages outweighs a single stage's top position.
RRF_K = 60
# Full-text and vector matches weigh the same. The trigram stage weighs half: it exists
# for typos, and on correctly spelt queries it mostly repeats the full-text stage with
# fuzzier neighbours.
VECTOR_WEIGHT = 1.0
FULL_TEXT_WEIGHT = 1.0
TRIGRAM_WEIGHT = 0.5
# word_similarity is the share of the query's trigrams found in the best-matching run of
# the title. One wrong letter in a short word ("малоко") keeps about 0.3 of them; below
# that, matches are mostly noise.
TRIGRAM_THRESHOLD = 0.3
# Minimum HNSW candidate list size (pgvector's default is 40). A query raises it to the
# number of rows its vector stage requests.
HNSW_EF_SEARCH = 100


@dataclass(frozen=True)
class SearchHit:
    """One result: the product, its fused score and its rank in each stage (1 = best).

    A rank is None when that stage did not return the product. ``exact`` marks a SKU or
    barcode equal to the query.
    """

    product: Product
    score: float
    vector_rank: int | None = None
    full_text_rank: int | None = None
    trigram_rank: int | None = None
    exact: bool = False


# Every stage repeats the tenant, is_active and category conditions, so no stage can return
# another tenant's product or an inactive one.
_SCOPE = """tenant_id = %(tenant_id)s
      AND is_active
      AND (%(category)s::text IS NULL OR category_path ILIKE %(category)s)"""

# relaxed_order iterative scans may return rows slightly out of distance order, so the
# MATERIALIZED CTE collects them and the ranking sorts again.
_VECTOR_STAGE = f"""
vector_candidates AS MATERIALIZED (
    SELECT id, embedding <=> %(embedding)s::vector AS distance
    FROM {{table}}
    WHERE {_SCOPE}
      AND embedding IS NOT NULL
      AND embedding_model = %(embedding_model)s
    ORDER BY distance
    LIMIT %(candidates)s
),
vector_stage AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS rank
    FROM vector_candidates
)"""

_FULL_TEXT_STAGE = f"""
full_text_candidates AS (
    SELECT id,
           search_vector @@ to_tsquery('simple', %(tsquery_all)s) AS has_all_terms,
           ts_rank_cd(search_vector, to_tsquery('simple', %(tsquery_any)s)) AS text_rank
    FROM {{table}}
    WHERE {_SCOPE}
      AND search_vector @@ to_tsquery('simple', %(tsquery_any)s)
    ORDER BY has_all_terms DESC, text_rank DESC, id
    LIMIT %(candidates)s
),
full_text_stage AS (
    SELECT id, row_number() OVER (ORDER BY has_all_terms DESC, text_rank DESC, id) AS rank
    FROM full_text_candidates
)"""

_TRIGRAM_STAGE = f"""
trigram_candidates AS (
    SELECT id, word_similarity(%(normalized_query)s, search_title) AS similarity
    FROM {{table}}
    WHERE {_SCOPE}
      AND %(normalized_query)s <%% search_title
    ORDER BY similarity DESC, id
    LIMIT %(candidates)s
),
trigram_stage AS (
    SELECT id, row_number() OVER (ORDER BY similarity DESC, id) AS rank
    FROM trigram_candidates
)"""

_EXACT_STAGE = f"""
exact_stage AS (
    SELECT id, 1 AS rank
    FROM {{table}}
    WHERE {_SCOPE}
      AND (sku = %(raw_query)s OR barcode = %(raw_query)s)
)"""

_STAGE_SQL = {
    "vector": _VECTOR_STAGE,
    "full_text": _FULL_TEXT_STAGE,
    "trigram": _TRIGRAM_STAGE,
    "exact": _EXACT_STAGE,
}

_STAGE_WEIGHTS = {
    "vector": VECTOR_WEIGHT,
    "full_text": FULL_TEXT_WEIGHT,
    "trigram": TRIGRAM_WEIGHT,
    "exact": 0.0,
}

_FUSION = """
fused AS (
    SELECT id,
           sum(weight / (%(rrf_k)s + rank)) AS score,
           min(rank) FILTER (WHERE stage = 'vector') AS vector_rank,
           min(rank) FILTER (WHERE stage = 'full_text') AS full_text_rank,
           min(rank) FILTER (WHERE stage = 'trigram') AS trigram_rank,
           bool_or(stage = 'exact') AS exact
    FROM ({stage_ranks}) AS stage_ranks
    GROUP BY id
)
SELECT id, score, vector_rank, full_text_rank, trigram_rank, exact
FROM fused
ORDER BY exact DESC, score DESC, id
LIMIT %(limit)s
"""


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _build_sql(stages: list[str]) -> str:
    table = connection.ops.quote_name(Product._meta.db_table)
    ctes = ",".join(_STAGE_SQL[stage].format(table=table) for stage in stages)
    stage_ranks = " UNION ALL ".join(
        f"SELECT id, rank, '{stage}' AS stage, {_STAGE_WEIGHTS[stage]}::float AS weight "
        f"FROM {stage}_stage"
        for stage in stages
    )
    return f"WITH {ctes},{_FUSION.format(stage_ranks=stage_ranks)}"


def _embed_query(*, query: str, embedder: Embedder, tenant: Tenant) -> list[float] | None:
    """Return the query's embedding, or None when the embedder fails.

    A failing embedding service degrades search to full-text and trigram matching instead
    of failing it.
    """
    try:
        return [float(value) for value in embedder.embed_queries([query])[0]]
    except EmbeddingError:
        logger.warning(
            "catalog.search.embedding_failed",
            exc_info=True,
            extra={"tenant_id": tenant.pk, "model": embedder.model_name},
        )
        return None


def _search_params(
    *,
    tenant: Tenant,
    raw_query: str,
    limit: int,
    category: str,
    embedding: list[float] | None,
    embedding_model: str,
) -> dict[str, Any]:
    return {
        "tenant_id": tenant.pk,
        "category": f"{_escape_like(category)}%" if category else None,
        "candidates": max(CANDIDATES_PER_STAGE, limit),
        "limit": limit,
        "rrf_k": RRF_K,
        "raw_query": raw_query,
        "normalized_query": normalize_text(raw_query),
        "tsquery_all": build_tsquery(raw_query, match="all"),
        "tsquery_any": build_tsquery(raw_query, match="any"),
        "embedding": Vector(embedding).to_text() if embedding is not None else None,
        "embedding_model": embedding_model,
    }


def _active_stages(params: dict[str, Any]) -> list[str]:
    """Return the stages that have something to search with."""
    stages = ["exact"]
    if params["embedding"] is not None:
        stages.append("vector")
    if params["tsquery_any"]:
        stages.append("full_text")
    if params["normalized_query"].replace("%", "").strip():
        stages.append("trigram")
    return stages


def _rank_products(
    *, stages: list[str], params: dict[str, Any]
) -> list[tuple[int, float, int | None, int | None, int | None, bool]]:
    ef_search = max(HNSW_EF_SEARCH, params["candidates"])
    with transaction.atomic(), connection.cursor() as cursor:
        # set_config(..., true) lasts until the end of this transaction, like SET LOCAL.
        cursor.execute(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
            " set_config('hnsw.ef_search', %s, true),"
            " set_config('pg_trgm.word_similarity_threshold', %s, true)",
            [str(ef_search), str(TRIGRAM_THRESHOLD)],
        )
        cursor.execute(_build_sql(stages), params)
        return list(cursor.fetchall())


def product_search(
    *,
    tenant: Tenant,
    query: str,
    limit: int = 10,
    category: str | None = None,
    embedder: Embedder | None = None,
) -> list[SearchHit]:
    """Return up to ``limit`` of ``tenant``'s active products best matching ``query``.

    ``category`` keeps products whose ``category_path`` starts with it (case-insensitive).
    Products without an embedding are still found by the full-text and trigram stages.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}.")
    raw_query = query.strip()[:MAX_QUERY_LENGTH]
    if not raw_query:
        return []

    started = time.monotonic()
    embedder = embedder or get_embedder()
    category = category.strip() if category else ""
    params = _search_params(
        tenant=tenant,
        raw_query=raw_query,
        limit=limit,
        category=category,
        embedding=_embed_query(query=raw_query, embedder=embedder, tenant=tenant),
        embedding_model=embedder.model_name,
    )
    stages = _active_stages(params)

    ranked = _rank_products(stages=stages, params=params)
    products = (
        Product.objects.filter(tenant=tenant, pk__in=[row[0] for row in ranked])
        .defer("embedding", "search_vector")
        .in_bulk()
    )
    hits = [
        SearchHit(
            product=products[product_id],
            score=float(score),
            vector_rank=vector_rank,
            full_text_rank=full_text_rank,
            trigram_rank=trigram_rank,
            exact=exact,
        )
        for product_id, score, vector_rank, full_text_rank, trigram_rank, exact in ranked
        if product_id in products
    ]

    logger.info(
        "catalog.search",
        extra={
            "tenant_id": tenant.pk,
            "query_length": len(raw_query),
            "category_filter": bool(category),
            "stages": ",".join(stages),
            "result_count": len(hits),
            "duration_ms": round((time.monotonic() - started) * 1000),
        },
    )
    logger.debug("catalog.search.query", extra={"tenant_id": tenant.pk, "query": raw_query})
    return hits
