"""Fixtures for LLM agent tests: a scripted LLM server, the catalog and the merchant."""

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from catalog.embeddings import Embedder, get_embedder
from catalog.schemas import ProductInput
from catalog.services import product_upsert_many, products_embed_pending
from tests.conversations.agent.llm_server import ScriptedLLM, start_scripted_llm
from tests.conversations.shop_data import CATALOG

COMPLEX_MODEL = "test-complex-model"
FAST_MODEL = "test-fast-model"

# Passage vectors by text, kept for the whole session: every agent test uploads the same
# catalog, and embedding it again would cost about a second per test.
_PASSAGE_VECTORS: dict[str, np.ndarray] = {}


class _MemoizedEmbedder:
    """The configured embedder, with passage vectors remembered across tests."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        missing = [text for text in texts if text not in _PASSAGE_VECTORS]
        if missing:
            _PASSAGE_VECTORS.update(zip(missing, self.inner.embed_passages(missing), strict=True))
        return np.stack([_PASSAGE_VECTORS[text] for text in texts])


@pytest.fixture
def catalog(tenant) -> None:
    """Tenant A's catalog from ``shop_data.CATALOG``, uploaded and embedded."""
    product_upsert_many(tenant=tenant, products=[ProductInput(**row) for row in CATALOG])
    products_embed_pending(tenant=tenant, embedder=_MemoizedEmbedder(get_embedder()))


@pytest.fixture
def llm(settings) -> Iterator[ScriptedLLM]:
    """A scripted LLM on 127.0.0.1 as the deployment's endpoint, with short test timeouts."""
    server = start_scripted_llm()
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = "sk-test-key"
    settings.LLM_COMPLEX_MODEL = COMPLEX_MODEL
    settings.LLM_FAST_MODEL = FAST_MODEL
    settings.LLM_REQUEST_TIMEOUT_SECONDS = 5.0
    settings.LLM_MAX_RETRIES = 1
    settings.LLM_RETRY_DELAY_SECONDS = 0.0
    settings.LLM_STREAM = True
    settings.LLM_STREAM_USAGE = True
    settings.AGENT_TURN_TIMEOUT_SECONDS = 20.0
    yield server
    server.shutdown()


@pytest.fixture
def assistant_settings(tenant):
    return tenant.assistant_settings


@pytest.fixture
def shop(catalog, merchant):
    """Tenant A's catalog, searchable, and the reference merchant as its webhooks."""
    return merchant
