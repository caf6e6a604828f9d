"""Responses of self-hosted OpenAI-compatible embedding servers that differ from OpenAI's.

Each test scripts a local server on 127.0.0.1 with a body shaped like one that vLLM, Ollama,
llama.cpp, LM Studio, LiteLLM or text-embeddings-inference may send, and runs the
``openai`` embedder against it with the real ``openai`` client.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import numpy as np
import pytest
from django.test import override_settings

from catalog.embeddings import EmbeddingError, OpenAIEmbedder, get_embedder
from catalog.selectors import products_pending_embedding
from tests.factories import ProductFactory
from tests.local_http import serving

DIMENSIONS = 384
# A scripted response: status, content type and body.
Response = tuple[int, str, bytes]


def vector(number: int) -> list[float]:
    """Return a vector whose largest component is at ``number``, so each text's is distinct."""
    values = [0.01] * DIMENSIONS
    values[number] = 1.0
    return values


def embeddings_body(
    inputs: list[str], *, with_index: bool = True, reverse: bool = False, **fields: Any
) -> bytes:
    data = []
    for number, _ in enumerate(inputs):
        item: dict[str, Any] = {"object": "embedding", "embedding": vector(number)}
        if with_index:
            item["index"] = number
        data.append(item)
    if reverse:
        data.reverse()
    return json.dumps({"object": "list", "data": data, **fields}).encode()


def floats(request: dict[str, Any]) -> Response:
    """Return float vectors whatever ``encoding_format`` requests, without usage or model."""
    return 200, "application/json", embeddings_body(request["input"])


@dataclass
class ScriptedEmbeddings:
    base_url: str = ""
    respond: Callable[[dict[str, Any]], Response] = floats
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[ScriptedEmbeddings]:
    state = ScriptedEmbeddings()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            status, content_type, payload = state.respond(body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    with serving(Handler) as url:
        state.base_url = f"{url}/v1"
        yield state


def embedder_for(server: ScriptedEmbeddings, **options: Any) -> OpenAIEmbedder:
    return OpenAIEmbedder(model="served-model", base_url=server.base_url, max_retries=0, **options)


def expected_vectors(count: int) -> np.ndarray:
    vectors = np.array([vector(number) for number in range(count)], dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_float_answer_without_usage_or_model(server):
    vectors = embedder_for(server).embed_passages(["Молоко", "Хліб"])

    assert np.allclose(vectors, expected_vectors(2))
    [request] = server.requests
    assert request == {
        "model": "served-model",
        "input": ["Молоко", "Хліб"],
        "dimensions": DIMENSIONS,
        "encoding_format": "float",
    }


def test_dimensions_left_out_when_turned_off(server):
    def reject_dimensions(request: dict[str, Any]) -> Response:
        if "dimensions" in request:
            message = b'{"object":"error","message":"Model does not support matryoshka"}'
            return 400, "application/json", message
        return floats(request)

    server.respond = reject_dimensions

    vectors = embedder_for(server, send_dimensions=False).embed_queries(["молоко"])

    assert np.allclose(vectors, expected_vectors(1))
    [request] = server.requests
    assert "dimensions" not in request


def test_dimensions_rejected_is_reported(server):
    server.respond = lambda request: (
        400,
        "application/json",
        b'{"object":"error","message":"Model does not support matryoshka"}',
    )

    with pytest.raises(EmbeddingError) as error:
        embedder_for(server).embed_queries(["молоко"])

    assert "Model does not support matryoshka" in error.value.detail
    assert len(server.requests) == 1


@override_settings(
    EMBEDDING_BACKEND="openai",
    EMBEDDING_MODEL="served-model",
    EMBEDDING_SEND_DIMENSIONS=False,
    EMBEDDING_QUERY_PREFIX="query: ",
    EMBEDDING_PASSAGE_PREFIX="passage: ",
)
def test_settings_reach_the_request(server):
    with override_settings(EMBEDDING_BASE_URL=server.base_url):
        embedder = get_embedder()
        embedder.embed_queries(["молоко"])
        embedder.embed_passages(["Молоко Lactel"])

    assert server.requests == [
        {"model": "served-model", "input": ["query: молоко"], "encoding_format": "float"},
        {"model": "served-model", "input": ["passage: Молоко Lactel"], "encoding_format": "float"},
    ]


def test_items_without_index_keep_server_order(server):
    server.respond = lambda request: (
        200,
        "application/json",
        embeddings_body(request["input"], with_index=False),
    )

    vectors = embedder_for(server).embed_passages(["a", "b", "c"])

    assert np.allclose(vectors, expected_vectors(3))


def test_items_out_of_order_are_sorted(server):
    server.respond = lambda request: (
        200,
        "application/json",
        embeddings_body(request["input"], reverse=True),
    )

    vectors = embedder_for(server).embed_passages(["a", "b", "c"])

    assert np.allclose(vectors, expected_vectors(3))


@pytest.mark.parametrize(
    ("_case", "response", "detail"),
    [
        (
            "error object",
            (200, "application/json", b'{"error": {"message": "CUDA out of memory"}}'),
            "The embedding response of {url}/ for model 'served-model' is not a list of "
            "embeddings (the server reported an error: {{'message': 'CUDA out of memory'}}).",
        ),
        (
            "html",
            (200, "text/html", b"<html>Gateway</html>"),
            "The embedding response of {url}/ for model 'served-model' is not a list of "
            "embeddings (no data list).",
        ),
        (
            "invalid json",
            (200, "application/json", b'{"data": ['),
            "The embedding request to {url}/ for model 'served-model' failed: Expecting value: "
            "line 1 column 11 (char 10)",
        ),
    ],
)
def test_unusable_200_is_an_embedding_error(server, _case, response, detail):
    server.respond = lambda request: response

    with pytest.raises(EmbeddingError) as error:
        embedder_for(server).embed_queries(["молоко"])

    assert error.value.detail == detail.format(url=server.base_url)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("_case", "response", "message"),
    [
        ("unknown model", (404, "application/json", b'{"error": "model not found"}'), "404"),
        ("plain text", (500, "text/plain", b"Internal Server Error"), "Error code: 500"),
        ("validation", (422, "application/json", b'{"error": "Input validation"}'), "422"),
    ],
)
def test_error_status_is_an_embedding_error(server, _case, response, message):
    server.respond = lambda request: response

    with pytest.raises(EmbeddingError) as error:
        embedder_for(server).embed_queries(["молоко"])

    assert message in error.value.detail
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("_case", "item", "reason"),
    [
        ("null embedding", {"index": 0, "embedding": None}, "has an embedding of type NoneType"),
        ("no embedding", {"index": 0, "object": "embedding"}, "has an embedding of type NoneType"),
        ("text item", "[0.1, 0.2]", "is a str"),
        ("text values", {"index": 0, "embedding": ["a"] * DIMENSIONS}, "has a value of type str"),
    ],
)
def test_malformed_item_is_an_embedding_error(server, _case, item, reason):
    server.respond = lambda request: (
        200,
        "application/json",
        json.dumps({"object": "list", "data": [item]}).encode(),
    )

    with pytest.raises(EmbeddingError) as error:
        embedder_for(server).embed_queries(["молоко"])

    assert error.value.detail == (
        f"The embedding response of {server.base_url}/ for model 'served-model' is not a "
        f"list of embeddings (item 0 {reason})."
    )
    assert len(server.requests) == 1


def test_prefixes_are_part_of_model_name(server):
    plain = embedder_for(server)
    e5 = embedder_for(server, query_prefix="query: ", passage_prefix="passage: ")
    passage_only = embedder_for(server, passage_prefix="passage: ")

    assert plain.model_name == "served-model"
    assert e5.model_name == "served-model prefixes:53483507d765"
    assert passage_only.model_name.startswith("served-model prefixes:")
    assert passage_only.model_name != e5.model_name


@pytest.mark.django_db
def test_prefixes_make_old_vectors_pending(server):
    product = ProductFactory(embedding=[0.1] * DIMENSIONS, embedding_model="served-model")
    product.embedding_hash = product.content_hash
    product.save()
    e5 = embedder_for(server, query_prefix="query: ", passage_prefix="passage: ")

    plain_pending = products_pending_embedding(tenant=product.tenant, model_name="served-model")
    e5_pending = products_pending_embedding(tenant=product.tenant, model_name=e5.model_name)

    assert list(plain_pending) == []
    assert list(e5_pending) == [product]
