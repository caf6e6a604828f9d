"""Responses of self-hosted OpenAI-compatible servers that differ from OpenAI's.

Each test scripts the local server with a body shaped like one that vLLM, Ollama,
llama.cpp, LM Studio, LiteLLM, text-generation-inference or Azure OpenAI may send, and
runs the agent against it with the real ``openai`` client over HTTP.
"""

import json
from typing import Any

import pytest

from conversations.models import Message
from tests.conversations.agent.llm_server import Answer, http_error, raw_body, reply
from tests.conversations.chat import reply_text, send

pytestmark = pytest.mark.django_db

SERVED_MODEL = "served-model-name"
SEARCH_ARGUMENTS = {"query": "молоко"}


@pytest.fixture(params=[True, False], ids=["stream", "plain"])
def stream_mode(request, settings):
    settings.LLM_STREAM = request.param
    return request.param


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    choice: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Return one ``chat.completion.chunk`` with one choice, or ``choice`` as it is."""
    if choice is None:
        choice = {"index": 0, "delta": delta or {}, "finish_reason": finish_reason}
    return {
        "id": "chatcmpl-compat",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": SERVED_MODEL,
        "choices": [choice],
        **fields,
    }


def stream(*chunks: dict[str, Any], done: bool = True, comments: bool = False) -> Answer:
    """Return an SSE response of ``chunks``, with a ``[DONE]`` line unless ``done`` is false."""
    lines = []
    for item in chunks:
        if comments:
            lines.append(": keep-alive\n\n")
        lines.append(f"data: {json.dumps(item, ensure_ascii=False)}\n\n")
    if done:
        lines.append("data: [DONE]\n\n")
    return raw_body("".join(lines).encode(), "text/event-stream")


def plain(message: dict[str, Any], *, finish_reason: str = "stop", **fields: Any) -> Answer:
    """Return a plain chat completion response with one choice of ``message``."""
    body = {
        "id": "chatcmpl-compat",
        "object": "chat.completion",
        "created": 1,
        "model": SERVED_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        **fields,
    }
    return raw_body(json.dumps(body, ensure_ascii=False).encode())


def text_answer(text: str, *, stream_mode: bool) -> Answer:
    if stream_mode:
        return stream(chunk({"role": "assistant", "content": text}), chunk(finish_reason="stop"))
    return plain({"role": "assistant", "content": text})


def search_call(call_id: str | None = "call_a", arguments: Any = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "function",
        "function": {
            "name": "search_products",
            "arguments": json.dumps(SEARCH_ARGUMENTS) if arguments is None else arguments,
        },
    }
    if call_id is not None:
        payload["id"] = call_id
    return payload


def queries_run(llm) -> list[str]:
    """Return the queries of the searches whose results the agent sent in its second request."""
    second = llm.requests[1]
    assert [result["outcome"] for result in second.tool_results()] == ["found"] * len(
        second.tool_results()
    )
    return [json.loads(call["function"]["arguments"])["query"] for call in sent_tool_calls(llm)]


def sent_tool_calls(llm) -> list[dict[str, Any]]:
    [assistant] = [m for m in llm.requests[1].messages if m.get("tool_calls")]
    return assistant["tool_calls"]


def test_request_sends_only_common_parameters(chat_client, shop, conversation, llm, stream_mode):
    llm.add(reply("Привіт!"))

    send(chat_client, conversation, "привіт")

    [request] = llm.requests
    expected = {"model", "messages", "tools", "temperature"}
    if stream_mode:
        expected |= {"stream", "stream_options"}
    assert set(request.body) == expected
    assert request.headers["authorization"] == "Bearer sk-test-key"


def test_stream_usage_off_sends_no_stream_options(chat_client, shop, conversation, llm, settings):
    settings.LLM_STREAM_USAGE = False
    llm.add(reply("Привіт!", usage=None))

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"
    [request] = llm.requests
    assert "stream_options" not in request.body
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["usage_estimated"] is True


@pytest.mark.parametrize(
    ("_case", "arguments"),
    [
        ("object", SEARCH_ARGUMENTS),
        ("string", json.dumps(SEARCH_ARGUMENTS)),
    ],
)
def test_plain_tool_call_arguments(
    chat_client, shop, conversation, llm, settings, _case, arguments
):
    settings.LLM_STREAM = False
    llm.add(
        plain(
            {"role": "assistant", "content": None, "tool_calls": [search_call("c1", arguments)]},
            finish_reason="tool_calls",
        ),
        reply("Ось молоко."),
    )

    send_plain = send(chat_client, conversation, "молоко")

    assert reply_text(send_plain) == "Ось молоко."
    assert queries_run(llm) == ["молоко"]
    [tool_call] = sent_tool_calls(llm)
    assert json.loads(tool_call["function"]["arguments"]) == SEARCH_ARGUMENTS


def test_streamed_tool_call_arguments_object(chat_client, shop, conversation, llm):
    llm.add(
        stream(
            chunk({"role": "assistant", "content": None}),
            chunk({"tool_calls": [{"index": 0, **search_call("c1", SEARCH_ARGUMENTS)}]}),
            chunk(finish_reason="tool_calls"),
        ),
        reply("Ось молоко."),
    )

    sent = send(chat_client, conversation, "молоко")

    assert reply_text(sent) == "Ось молоко."
    assert queries_run(llm) == ["молоко"]
    [tool_call] = sent_tool_calls(llm)
    assert tool_call["id"] == "c1"
    assert json.loads(tool_call["function"]["arguments"]) == SEARCH_ARGUMENTS


def test_whole_tool_calls_without_index(chat_client, shop, conversation, llm):
    second_call = search_call("c2", json.dumps({"query": "хліб"}))
    llm.add(
        stream(
            chunk({"role": "assistant", "content": ""}),
            chunk({"tool_calls": [search_call("c1")]}),
            chunk({"tool_calls": [second_call]}),
            chunk(finish_reason="tool_calls"),
        ),
        reply("Ось молоко і хліб."),
    )

    sent = send(chat_client, conversation, "молоко і хліб")

    assert reply_text(sent) == "Ось молоко і хліб."
    assert queries_run(llm) == ["молоко", "хліб"]
    assert [tool_call["id"] for tool_call in sent_tool_calls(llm)] == ["c1", "c2"]


def test_tool_calls_sharing_index_zero(chat_client, shop, conversation, llm):
    second_call = search_call("c2", json.dumps({"query": "хліб"}))
    llm.add(
        stream(
            chunk({"tool_calls": [{"index": 0, **search_call("c1")}]}),
            chunk({"tool_calls": [{"index": 0, **second_call}]}),
            chunk(finish_reason="tool_calls"),
        ),
        reply("Ось молоко і хліб."),
    )

    sent = send(chat_client, conversation, "молоко і хліб")

    assert reply_text(sent) == "Ось молоко і хліб."
    assert queries_run(llm) == ["молоко", "хліб"]


def test_tool_call_pieces_without_index(chat_client, shop, conversation, llm):
    arguments = json.dumps(SEARCH_ARGUMENTS)
    first = {"id": "c1", "type": "function", "function": {"name": "search_products"}}
    llm.add(
        stream(
            chunk({"tool_calls": [first]}),
            chunk({"tool_calls": [{"function": {"arguments": arguments[:5]}}]}),
            chunk({"tool_calls": [{"function": {"arguments": arguments[5:]}}]}),
            chunk(finish_reason="tool_calls"),
        ),
        reply("Ось молоко."),
    )

    sent = send(chat_client, conversation, "молоко")

    assert reply_text(sent) == "Ось молоко."
    assert queries_run(llm) == ["молоко"]


@pytest.mark.parametrize("finish_reason", ["stop", "eos_token", None])
def test_tool_calls_with_other_finish_reason(
    chat_client, shop, conversation, llm, stream_mode, finish_reason
):
    if stream_mode:
        first = stream(
            chunk({"tool_calls": [{"index": 0, **search_call()}]}),
            chunk(finish_reason=finish_reason or "stop"),
        )
    else:
        first = plain(
            {"role": "assistant", "content": "", "tool_calls": [search_call()]},
            finish_reason=finish_reason,
        )
    llm.add(first, reply("Ось молоко."))

    sent = send(chat_client, conversation, "молоко")

    assert reply_text(sent) == "Ось молоко."
    assert queries_run(llm) == ["молоко"]


def test_text_with_eos_token_finish_reason(chat_client, shop, conversation, llm, stream_mode):
    if stream_mode:
        answer = stream(chunk({"content": "Привіт!"}), chunk(finish_reason="eos_token"))
    else:
        answer = plain({"role": "assistant", "content": "Привіт!"}, finish_reason="eos_token")
    llm.add(answer)

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"
    assert "error" not in [event["type"] for event in sent]


def test_stream_with_azure_filter_chunks(chat_client, shop, conversation, llm):
    filter_results = {"prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    llm.add(
        stream(
            {**chunk(), "choices": [], "model": "", **filter_results},
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Привіт!"}, content_filter_results={}),
            chunk(finish_reason="stop"),
            {**chunk(), "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
        )
    )

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["prompt_tokens"] == 7
    assert answer.metadata["completion_tokens"] == 2


def test_stream_with_reasoning_content(chat_client, shop, conversation, llm):
    llm.add(
        stream(
            chunk({"role": "assistant", "content": None, "reasoning_content": "Думаю"}),
            chunk({"content": None, "reasoning_content": " ще."}),
            chunk({"content": "Привіт!", "reasoning_content": None}),
            chunk(finish_reason="stop"),
        )
    )

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"


def test_plain_with_reasoning_content(chat_client, shop, conversation, llm, settings):
    settings.LLM_STREAM = False
    llm.add(plain({"role": "assistant", "content": "Привіт!", "reasoning_content": "Думаю."}))

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"


def test_stream_with_comments_and_no_done(chat_client, shop, conversation, llm):
    llm.add(
        stream(
            chunk({"role": "assistant", "content": "При"}),
            chunk({"content": "віт!"}),
            chunk(finish_reason="stop"),
            done=False,
            comments=True,
        )
    )

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"


def test_stream_choice_without_index(chat_client, shop, conversation, llm):
    llm.add(
        stream(
            chunk(choice={"delta": {"role": "assistant", "content": "Привіт!"}}),
            chunk(choice={"delta": {}, "finish_reason": "stop"}),
        )
    )

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"


def test_stream_chunks_without_ids(chat_client, shop, conversation, llm):
    bare = [
        {"choices": [{"index": 0, "delta": {"content": "Привіт!"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    llm.add(stream(*bare))

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"


def test_plain_without_usage_or_ids(chat_client, shop, conversation, llm, settings):
    settings.LLM_STREAM = False
    body = {"choices": [{"message": {"role": "assistant", "content": "Привіт!"}}]}
    llm.add(raw_body(json.dumps(body, ensure_ascii=False).encode()))

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["usage_estimated"] is True


def test_served_model_name_differs(chat_client, shop, conversation, llm, stream_mode):
    llm.add(text_answer("Привіт!", stream_mode=stream_mode))

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"
    [request] = llm.requests
    assert request.model == "test-complex-model"


def raw_error(status: int, body: bytes, content_type: str = "application/json") -> Answer:
    return Answer(status=status, body=body, content_type=content_type)


def error_reason(sent: list[dict]) -> str | None:
    errors = [event for event in sent if event["type"] == "error"]
    return errors[0]["reason"] if errors else None


@pytest.mark.parametrize(
    ("_case", "answers", "reason", "requests"),
    [
        (
            "ollama unknown model",
            [
                raw_error(
                    404,
                    b'{"error":{"message":"model \\"qwen\\" not found, try pulling it first",'
                    b'"type":"api_error","param":null,"code":null}}',
                )
            ],
            "llm_request_rejected",
            1,
        ),
        ("404 plain text", [http_error(404, "model not found")], "llm_request_rejected", 1),
        ("422 validation", [http_error(422, "Input validation error")], "llm_request_rejected", 1),
        (
            "400 html",
            [raw_error(400, b"<html>Bad Request</html>", "text/html")],
            "llm_request_rejected",
            1,
        ),
        (
            "500 plain text",
            [raw_error(500, b"Internal Server Error", "text/plain")] * 2,
            "llm_unavailable",
            2,
        ),
        ("429 no retry-after", [http_error(429, "busy")] * 2, "llm_unavailable", 2),
        (
            "200 error object",
            [raw_body(b'{"error": {"message": "CUDA out of memory", "code": 500}}')] * 2,
            "llm_unavailable",
            2,
        ),
    ],
)
def test_server_errors(
    chat_client, shop, conversation, llm, stream_mode, _case, answers, reason, requests
):
    llm.add(*answers)

    sent = send(chat_client, conversation, "привіт")

    assert error_reason(sent) == reason
    assert sent[-1] == {"type": "response_complete"}
    assert len(llm.requests) == requests
    assert Message.objects.get(role="assistant").metadata["failure"] == reason


@pytest.mark.parametrize(
    ("_case", "arguments"),
    [("false", False), ("empty list", []), ("zero", 0), ("list", [SEARCH_ARGUMENTS])],
)
def test_tool_call_arguments_of_other_json_types(
    chat_client, shop, conversation, llm, stream_mode, _case, arguments
):
    if stream_mode:
        answer = stream(
            chunk(
                {"role": "assistant", "tool_calls": [{"index": 0, **search_call("c1", arguments)}]}
            ),
            chunk(finish_reason="tool_calls"),
        )
    else:
        answer = plain(
            {"role": "assistant", "content": None, "tool_calls": [search_call("c1", arguments)]},
            finish_reason="tool_calls",
        )
    llm.add(*[answer] * 3)

    sent = send(chat_client, conversation, "молоко")

    assert error_reason(sent) == "llm_invalid_response"
    assert sent[-1] == {"type": "response_complete"}
    assert [request.tool_results() for request in llm.requests] == [[]] * len(llm.requests)
    assert Message.objects.get(role="assistant").metadata["failure"] == "llm_invalid_response"
