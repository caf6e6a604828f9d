"""An LLM endpoint that is down, slow or answers garbage: what the shopper and the logs get."""

import datetime
import email.utils
import json
import logging
import time

import pytest

from conversations.llm import (
    MAX_COMPLETION_CHARS,
    MAX_RETRY_AFTER_SECONDS,
    MAX_TOOL_CALLS_PER_COMPLETION,
)
from conversations.models import Message, TokenUsage
from conversations.tool_calls import MAX_TOOL_CALLS_PER_TURN
from tests.conversations.agent.chat import send_stream, types_of
from tests.conversations.agent.llm_server import (
    STREAM_PIECE_CHARS,
    call,
    http_error,
    raw_body,
    reply,
    tool_calls,
)
from tests.conversations.chat import cart_posts, reply_text, send
from tests.conversations.shop_data import MILK_LACTEL, SESSION_ID, STORE_ID, show
from vizochok.logging import KeyValueFormatter

pytestmark = pytest.mark.django_db

EMPTY_CHOICES = json.dumps(
    {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}
).encode()
CHOICES_OBJECT = json.dumps(
    {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": {"a": 1}}
).encode()

FAILURES = [
    (
        "bad json arguments",
        [tool_calls(call("add_to_cart", '{"sku": "milk-001", quantity: 2'))],
        "llm_invalid_response",
    ),
    (
        "deeply nested arguments",
        [tool_calls(call("add_to_cart", '{"sku": ' + "[" * 5_000 + "]" * 5_000 + "}"))],
        "llm_invalid_response",
    ),
    ("unknown tool", [tool_calls(call("checkout", {"confirm": True}))], "llm_invalid_response"),
    ("html body", [raw_body(b"<html>Bad gateway</html>", "text/html")], "llm_invalid_response"),
    ("invalid json body", [raw_body(b'{"choices": [')], "llm_invalid_response"),
    ("no choice", [raw_body(EMPTY_CHOICES)], "llm_invalid_response"),
    ("choices object", [raw_body(CHOICES_OBJECT)], "llm_invalid_response"),
    ("empty answer", [reply("")], "llm_invalid_response"),
    ("http 500 twice", [http_error(500), http_error(500)], "llm_unavailable"),
    ("http 401", [http_error(401, "invalid api key")], "llm_request_rejected"),
]


@pytest.fixture(params=[True, False], ids=["stream", "plain"])
def stream_mode(request, settings):
    settings.LLM_STREAM = request.param
    return request.param


@pytest.mark.parametrize(("_case", "answers", "reason"), FAILURES)
def test_llm_failure_becomes_an_error_event(
    chat_client, shop, conversation, llm, stream_mode, caplog, _case, answers, reason
):
    show(conversation, MILK_LACTEL)
    llm.add(*answers)

    with caplog.at_level(logging.INFO):
        sent = send(chat_client, conversation, "Додай Lactel")

    error = sent[0]
    assert sent == [
        {
            "type": "error",
            "code": "internal_error",
            "reason": reason,
            "error_id": error["error_id"],
        },
        {"type": "response_complete"},
    ]
    assert len(llm.requests) == len(answers)
    assert cart_posts(shop) == []
    assert shop.store.cart_items(STORE_ID, SESSION_ID) == []
    shopper, answer = Message.objects.filter(conversation=conversation).order_by("created_at")
    assert shopper.text == "Додай Lactel"
    assert answer.events == sent
    assert answer.metadata["failure"] == reason
    [logged] = [r for r in caplog.records if r.getMessage() == "conversations.agent.llm_failed"]
    assert logged.error_id == error["error_id"]
    assert logged.reason == reason
    assert logged.request_id == f"req_test_{len(answers)}"
    failures = [r for r in caplog.records if r.getMessage() == "llm.completion_failed"]
    assert len(failures) == len(answers)
    assert failures[-1].conversation_id == conversation.public_id


def test_llm_timeout_is_reported(chat_client, shop, conversation, llm, settings):
    settings.LLM_REQUEST_TIMEOUT_SECONDS = 0.3
    settings.LLM_MAX_RETRIES = 0
    llm.add(reply("Запізно.", delay=1.5))

    sent = send(chat_client, conversation, "молоко")

    assert sent[0]["code"] == "internal_error"
    assert sent[0]["reason"] == "llm_timeout"
    assert types_of(sent) == ["error", "response_complete"]
    assert Message.objects.get(role="assistant").metadata["failure"] == "llm_timeout"


@pytest.mark.parametrize(
    "answer",
    [
        # Each comment line arrives well within the read timeout, and none is a chunk.
        pytest.param(reply("Привіт!", comment_lines=100, chunk_delay=0.2), id="sse comments"),
        pytest.param(reply("Привіт!", byte_delay=0.1), id="plain body byte by byte"),
    ],
)
def test_trickling_server_is_cut_at_the_deadline(
    chat_client, shop, conversation, llm, settings, caplog, answer
):
    settings.LLM_STREAM = answer.byte_delay == 0
    settings.AGENT_TURN_TIMEOUT_SECONDS = 2.0
    settings.LLM_REQUEST_TIMEOUT_SECONDS = 1.0
    llm.add(answer)

    with caplog.at_level(logging.INFO):
        started = time.monotonic()
        sent = send(chat_client, conversation, "привіт")
        elapsed = time.monotonic() - started

    assert sent == [
        {
            "type": "error",
            "code": "internal_error",
            "reason": "turn_timeout",
            "error_id": sent[0]["error_id"],
        },
        {"type": "response_complete"},
    ]
    # Without the deadline on every read, a turn lasted until the server stopped sending.
    assert elapsed < 3.5
    assert len(llm.requests) == 1
    answer_message = Message.objects.get(role="assistant")
    assert answer_message.metadata["failure"] == "turn_timeout"
    [logged] = [r for r in caplog.records if r.getMessage() == "conversations.agent.turn_timeout"]
    assert logged.error_id == sent[0]["error_id"]
    assert logged.reason == "llm_timeout"


def test_environment_proxy_is_still_used(
    chat_client, shop, conversation, llm, settings, monkeypatch
):
    # The scripted server is the proxy, so the request reaches it only through the proxy.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{llm.server.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings.OPENAI_BASE_URL = "http://llm.invalid/v1"
    llm.add(reply("Привіт!"))

    sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"
    [request] = llm.requests
    assert request.headers["host"] == "llm.invalid"


def test_redirect_is_not_followed(chat_client, shop, conversation, llm, stream_mode):
    target = llm.base_url + "/chat/completions"
    llm.add(http_error(307, "moved", headers=(("Location", target),)), reply("Привіт!"))

    sent = send(chat_client, conversation, "привіт")

    assert types_of(sent) == ["error", "response_complete"]
    assert sent[0]["reason"] == "llm_request_rejected"
    assert len(llm.requests) == 1


def test_unreachable_endpoint_is_reported(
    chat_client, shop, conversation, llm, settings, closed_port_url
):
    settings.OPENAI_BASE_URL = closed_port_url.replace("/vizochok/cart", "/v1")

    sent = send(chat_client, conversation, "молоко")

    assert sent[0]["reason"] == "llm_unavailable"
    assert types_of(sent) == ["error", "response_complete"]
    assert llm.requests == []


def test_server_error_is_retried_once(chat_client, shop, conversation, llm, caplog):
    llm.add(http_error(503), reply("Привіт!"))

    with caplog.at_level(logging.INFO, logger="conversations.llm"):
        sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"
    assert len(llm.requests) == 2
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("llm.")]
    assert messages == ["llm.completion_failed", "llm.completion_retry", "llm.completion"]


def test_broken_stream_keeps_the_text_already_sent(chat_client, shop, conversation, llm):
    llm.add(reply("Ось що я знайшов для вас сьогодні.", drop_after_chunks=3))

    sent = send(chat_client, conversation, "молоко")

    assert types_of(sent) == ["text_delta", "text_end", "error", "response_complete"]
    assert sent[-2]["reason"] == "llm_unavailable"
    assert len(llm.requests) == 1
    assert Message.objects.get(role="assistant").text == "Ось що я зна"


def test_cart_change_before_a_failure_is_kept(chat_client, shop, conversation, llm):
    show(conversation, MILK_LACTEL)
    llm.add(tool_calls(call("add_to_cart", {"sku": "milk-001"})), http_error(400, "too long"))

    sent = send(chat_client, conversation, "Додай Lactel")

    assert types_of(sent) == ["status", "cart_changed", "error", "response_complete"]
    assert sent[-2]["reason"] == "llm_request_rejected"
    assert shop.store.cart_items(STORE_ID, SESSION_ID)[0]["sku"] == "milk-001"
    conversation.refresh_from_db()
    assert conversation.cart["items"][0]["sku"] == "milk-001"
    answer = Message.objects.get(role="assistant")
    assert [message["role"] for message in answer.llm_messages] == ["assistant", "tool"]


def test_failed_turn_leaves_a_usable_history(chat_client, shop, conversation, llm):
    show(conversation, MILK_LACTEL)
    llm.add(tool_calls(call("add_to_cart", {"sku": "milk-001"})), http_error(400, "too long"))
    send(chat_client, conversation, "Додай Lactel")
    llm.add(reply("У кошику молоко Lactel."))

    send(chat_client, conversation, "що в кошику?")

    roles = [message["role"] for message in llm.requests[2].messages]
    assert roles == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "assistant",
        "tool",
        "user",
    ]
    assert llm.requests[2].messages[4] == {
        "role": "assistant",
        "content": "(This reply was interrupted before it was finished.)",
    }


def test_completion_log_has_usage_and_request_id(chat_client, shop, conversation, llm, caplog):
    llm.add(reply("Привіт!", usage=(321, 12)))

    with caplog.at_level(logging.INFO, logger="conversations.llm"):
        send(chat_client, conversation, "привіт")

    [record] = [r for r in caplog.records if r.getMessage() == "llm.completion"]
    assert record.tenant_id == conversation.tenant_id
    assert record.conversation_id == conversation.public_id
    assert record.model == "test-complex-model"
    assert record.prompt_tokens == 321
    assert record.completion_tokens == 12
    assert record.request_id == "req_test_1"
    assert record.stream is True
    assert record.duration_ms >= 0


# PostgreSQL stores neither NUL characters nor unpaired surrogates, in text or in jsonb, and
# an unpaired surrogate cannot be encoded as UTF-8 for the client.
UNSTORABLE_TEXTS = [
    pytest.param("Ось \u0000молоко", "Ось \ufffdмолоко", id="nul"),
    pytest.param("Ось \ud83dмолоко", "Ось \ufffdмолоко", id="unpaired surrogate"),
]


@pytest.mark.parametrize(
    ("text", "refusal", "shown"),
    [
        # A refusal comes in its own field, with no content.
        (
            "",
            "Вибачте, з цим я не можу допомогти. Можу знайти для вас продукти.",
            "Вибачте, з цим я не можу допомогти. Можу знайти для вас продукти.",
        ),
        # Plain completions ignored a refusal after blank content and failed the turn.
        ("\n", "Не можу допомогти.", "\nНе можу допомогти."),
        (" ", "Не можу допомогти.", " Не можу допомогти."),
        # Plain completions dropped a refusal after text, which streams showed.
        ("Вибачте.", " Не можу допомогти.", "Вибачте. Не можу допомогти."),
        ("", "Не\x00можу\ud800.", "Не\ufffdможу\ufffd."),
    ],
)
def test_refusal_is_shown_as_reply(
    chat_client, shop, conversation, llm, stream_mode, text, refusal, shown
):
    llm.add(reply(text, refusal=refusal))

    sent = send(chat_client, conversation, "Напиши вірш")

    assert reply_text(sent) == shown
    assert types_of(sent) == ["text_delta", "text_end", "response_complete"]
    answer = Message.objects.filter(conversation=conversation, role="assistant").get()
    assert answer.text == shown
    assert answer.events == sent
    assert answer.metadata.get("failure") is None


@pytest.mark.parametrize(("text", "stored"), UNSTORABLE_TEXTS)
def test_unstorable_reply_text_is_replaced(
    chat_client, shop, conversation, llm, stream_mode, text, stored
):
    llm.add(reply(text))

    sent = send(chat_client, conversation, "Привіт")

    assert reply_text(sent) == stored
    assert types_of(sent) == ["text_delta", "text_end", "response_complete"]
    answer = Message.objects.filter(conversation=conversation, role="assistant").get()
    assert answer.text == stored
    assert answer.events == sent


@pytest.mark.parametrize(("text", "stored"), UNSTORABLE_TEXTS)
def test_unstorable_streamed_text_is_replaced(chat_client, shop, conversation, llm, text, stored):
    llm.add(reply(text))

    _, sent = send_stream(chat_client, conversation, "Привіт")

    assert reply_text(sent) == stored
    assert sent[-1] == {"type": "response_complete"}
    answer = Message.objects.filter(conversation=conversation, role="assistant").get()
    assert answer.text == stored


def test_character_split_between_stream_chunks_is_joined(chat_client, shop, conversation, llm):
    # The test server cuts the text every STREAM_PIECE_CHARS characters, so the pair's
    # halves arrive in two chunks, each as a JSON escape of an unpaired surrogate.
    text = "a" * (STREAM_PIECE_CHARS - 1) + "\ud83d\ude00" + "b"
    llm.add(reply(text))

    _, sent = send_stream(chat_client, conversation, "Привіт")

    expected = "a" * (STREAM_PIECE_CHARS - 1) + "\U0001f600b"
    assert reply_text(sent) == expected
    answer = Message.objects.filter(conversation=conversation, role="assistant").get()
    assert answer.text == expected


# A high surrogate that ends the text has no second half, so it is replaced like any other
# unpaired surrogate, and a streamed reply reads the same as a plain one.
SURROGATE_HALF_ENDINGS = [
    pytest.param("Ось молоко\ud83d", "Ось молоко\ufffd", id="after text"),
    pytest.param("\ud83d", "\ufffd", id="alone"),
]


@pytest.mark.parametrize(("text", "stored"), SURROGATE_HALF_ENDINGS)
def test_stream_ending_in_surrogate_half(chat_client, shop, conversation, llm, text, stored):
    llm.add(reply(text))

    _, sent = send_stream(chat_client, conversation, "Привіт")

    assert reply_text(sent) == stored
    assert types_of(sent) == ["text_delta", "text_end", "response_complete"]
    answer = Message.objects.filter(conversation=conversation, role="assistant").get()
    assert answer.text == stored
    assert len(llm.requests) == 1


def test_surrogate_half_before_drop_retried(chat_client, shop, conversation, llm):
    # The role chunk and the chunk with the half arrive, then the connection drops. Nothing
    # reached the shopper, so the request is retried.
    llm.add(reply("\ud83d", drop_after_chunks=2), reply("Ось молоко"))

    _, sent = send_stream(chat_client, conversation, "Привіт")

    assert reply_text(sent) == "Ось молоко"
    assert types_of(sent) == ["text_delta", "text_end", "response_complete"]
    answer = Message.objects.filter(conversation=conversation, role="assistant").get()
    assert answer.text == "Ось молоко"
    assert len(llm.requests) == 2


def invalid_response_events(sent: list[dict]) -> list[dict]:
    """Return the events of a turn that ended with ``llm_invalid_response``."""
    return [
        {
            "type": "error",
            "code": "internal_error",
            "reason": "llm_invalid_response",
            "error_id": sent[0]["error_id"],
        },
        {"type": "response_complete"},
    ]


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param('{"sku": "milk-001\\u0000"}', id="nul"),
        pytest.param('{"sku": "milk-001\\ud800"}', id="unpaired surrogate"),
    ],
)
def test_unstorable_tool_arguments_are_invalid(
    chat_client, shop, conversation, llm, stream_mode, arguments
):
    show(conversation, MILK_LACTEL)
    llm.add(tool_calls(call("get_product_details", arguments)))

    sent = send(chat_client, conversation, "Розкажи про Lactel")

    assert sent == invalid_response_events(sent)
    assert len(llm.requests) == 1
    answer = Message.objects.filter(conversation=conversation, role="assistant").get()
    assert answer.events == sent
    assert answer.metadata["failure"] == "llm_invalid_response"


@pytest.mark.parametrize(
    "call_id",
    [
        pytest.param("call_\u0000", id="nul"),
        pytest.param("call_\ud800", id="unpaired surrogate"),
    ],
)
def test_unstorable_tool_call_id_is_invalid(
    chat_client, shop, conversation, llm, stream_mode, call_id
):
    show(conversation, MILK_LACTEL)
    llm.add(tool_calls(call("add_to_cart", {"sku": "milk-001"}), call_ids=(call_id,)))

    sent = send(chat_client, conversation, "Додай Lactel")

    assert sent == invalid_response_events(sent)
    assert len(llm.requests) == 1
    assert cart_posts(shop) == []
    assert shop.store.cart_items(STORE_ID, SESSION_ID) == []
    answer = Message.objects.filter(conversation=conversation, role="assistant").get()
    assert answer.events == sent
    assert answer.metadata["failure"] == "llm_invalid_response"
    assert answer.llm_messages == []


# JSON nested deeper than Python's parser allows raises RecursionError, not a ValueError.
DEEPLY_NESTED_JSON = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("stream", "body", "content_type"),
    [
        pytest.param(False, DEEPLY_NESTED_JSON, "application/json", id="plain body"),
        pytest.param(
            True, b"data: " + DEEPLY_NESTED_JSON + b"\n\n", "text/event-stream", id="stream chunk"
        ),
    ],
)
def test_deeply_nested_response_is_invalid(
    chat_client, shop, conversation, llm, settings, caplog, stream, body, content_type
):
    settings.LLM_STREAM = stream
    show(conversation, MILK_LACTEL)
    llm.add(raw_body(body, content_type))

    with caplog.at_level(logging.INFO):
        sent = send(chat_client, conversation, "Додай Lactel")

    assert sent == invalid_response_events(sent)
    assert len(llm.requests) == 1
    assert cart_posts(shop) == []
    answer = Message.objects.filter(conversation=conversation, role="assistant").get()
    assert answer.events == sent
    assert answer.metadata["failure"] == "llm_invalid_response"
    assert answer.llm_messages == []
    messages = [record.getMessage() for record in caplog.records]
    assert "conversations.agent.llm_failed" in messages
    assert "conversations.turn.failed" not in messages


def test_broken_stream_counts_its_tokens(chat_client, shop, conversation, llm, tenant):
    llm.add(reply("Ось що я знайшов для вас сьогодні.", usage=None, drop_after_chunks=3))

    sent = send(chat_client, conversation, "молоко")

    assert sent[-2]["reason"] == "llm_unavailable"
    request = llm.requests[0].body
    prompt_chars = len(json.dumps(request["messages"], ensure_ascii=False))
    prompt_chars += len(json.dumps(request["tools"], ensure_ascii=False))
    # The role chunk and two text chunks arrived: "Ось що я зна", 12 characters.
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["prompt_tokens"] == -(-prompt_chars // 4)
    assert answer.metadata["completion_tokens"] == 3
    assert answer.metadata["usage_estimated"] is True
    conversation.refresh_from_db()
    assert conversation.tokens_used == answer.metadata["prompt_tokens"] + 3
    usage = TokenUsage.objects.get(tenant=tenant)
    assert usage.completion_tokens == 3
    assert usage.requests == 1


def test_rejected_answer_counts_reported_tokens(
    chat_client, shop, conversation, llm, tenant, stream_mode, caplog
):
    llm.add(tool_calls(call("checkout", {"confirm": True}), usage=(5000, 50)))

    with caplog.at_level(logging.INFO, logger="conversations.llm"):
        sent = send(chat_client, conversation, "купи все")

    assert sent[-2]["reason"] == "llm_invalid_response"
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["prompt_tokens"] == 5000
    assert answer.metadata["completion_tokens"] == 50
    assert "usage_estimated" not in answer.metadata
    conversation.refresh_from_db()
    assert conversation.tokens_used == 5050
    usage = TokenUsage.objects.get(tenant=tenant)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.requests) == (5000, 50, 1)
    [record] = [r for r in caplog.records if r.getMessage() == "llm.completion_unfinished"]
    assert (record.prompt_tokens, record.completion_tokens) == (5000, 50)
    assert record.conversation_id == conversation.public_id


def test_rejected_plain_answer_usage_estimated(
    chat_client, shop, conversation, llm, tenant, settings
):
    settings.LLM_STREAM = False
    body = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None},
                    "finish_reason": "stop",
                }
            ],
        }
    ).encode()
    llm.add(raw_body(body))

    sent = send(chat_client, conversation, "привіт")

    assert sent[-2]["reason"] == "llm_invalid_response"
    request = llm.requests[0].body
    prompt_chars = len(json.dumps(request["messages"], ensure_ascii=False))
    prompt_chars += len(json.dumps(request["tools"], ensure_ascii=False))
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["prompt_tokens"] == -(-prompt_chars // 4)
    assert answer.metadata["completion_tokens"] == -(-len(body) // 4)
    assert answer.metadata["usage_estimated"] is True
    usage = TokenUsage.objects.get(tenant=tenant)
    assert usage.completion_tokens == -(-len(body) // 4)
    assert usage.requests == 1


def test_body_not_a_completion_counts_nothing(chat_client, shop, conversation, llm, settings):
    settings.LLM_STREAM = False
    llm.add(raw_body(b"<html>Bad gateway</html>", "text/html"))

    sent = send(chat_client, conversation, "привіт")

    assert sent[-2]["reason"] == "llm_invalid_response"
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["prompt_tokens"] == 0
    assert answer.metadata["completion_tokens"] == 0
    conversation.refresh_from_db()
    assert conversation.tokens_used == 0
    # The call's reservation created the day's row, and released it.
    usage = TokenUsage.objects.values_list(
        "prompt_tokens", "completion_tokens", "requests", "reserved_tokens"
    )
    assert list(usage) == [(0, 0, 0, 0)]


def test_failure_before_any_chunk_counts_nothing(chat_client, shop, conversation, llm):
    llm.add(http_error(500), http_error(500))

    sent = send(chat_client, conversation, "молоко")

    assert sent[-2]["reason"] == "llm_unavailable"
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["prompt_tokens"] == 0
    assert answer.metadata["completion_tokens"] == 0
    assert "usage_estimated" not in answer.metadata
    conversation.refresh_from_db()
    assert conversation.tokens_used == 0
    # The call's reservation created the day's row, and released it.
    usage = TokenUsage.objects.values_list(
        "prompt_tokens", "completion_tokens", "requests", "reserved_tokens"
    )
    assert list(usage) == [(0, 0, 0, 0)]


def test_repeated_tool_call_ids_renamed(chat_client, shop, conversation, llm):
    llm.add(
        tool_calls(
            call("search_products", {"query": "молоко"}),
            call("view_cart"),
            call("get_product_details", {"sku": "milk-001"}),
            call_ids=("call_1", "call_1", ""),
        ),
        reply("Ось молоко."),
    )

    send(chat_client, conversation, "молоко")

    [first, second] = llm.requests
    [assistant_message] = [m for m in second.messages if m.get("tool_calls")]
    call_ids = [tool_call["id"] for tool_call in assistant_message["tool_calls"]]
    assert call_ids == ["call_1", "call_1_1", "call_2"]
    result_ids = [m["tool_call_id"] for m in second.messages if m["role"] == "tool"]
    assert result_ids == ["call_1", "call_1_1", "call_2"]
    stored = conversation.messages.get(role="assistant").llm_messages
    assert [tool_call["id"] for tool_call in stored[0]["tool_calls"]] == call_ids
    assert [m["tool_call_id"] for m in stored[1:4]] == call_ids


def incomplete_events(sent: list[dict], text: str) -> list[dict]:
    """Return the events of a turn whose completion the server ended early after ``text``."""
    error = {
        "type": "error",
        "code": "internal_error",
        "reason": "llm_response_incomplete",
        "error_id": sent[-2]["error_id"],
    }
    return [
        *[event for event in sent if event["type"] == "text_delta"],
        *([{"type": "text_end"}] if text else []),
        error,
        {"type": "response_complete"},
    ]


@pytest.mark.parametrize("finish_reason", ["length", "content_filter"])
def test_answer_ended_early_is_reported(
    chat_client, shop, conversation, llm, stream_mode, caplog, tenant, finish_reason
):
    llm.add(reply("Ось молоко Lac", finish_reason=finish_reason, usage=(100, 20)))

    with caplog.at_level(logging.INFO):
        sent = send(chat_client, conversation, "молоко")

    assert reply_text(sent) == "Ось молоко Lac"
    assert sent == incomplete_events(sent, "Ось молоко Lac")
    assert len(llm.requests) == 1
    answer = Message.objects.get(role="assistant")
    assert answer.text == "Ось молоко Lac"
    assert answer.events == sent
    assert answer.metadata["failure"] == "llm_response_incomplete"
    assert answer.llm_messages == [{"role": "assistant", "content": "Ось молоко Lac"}]
    conversation.refresh_from_db()
    assert conversation.tokens_used == 120
    assert TokenUsage.objects.get(tenant=tenant).requests == 1
    [logged] = [r for r in caplog.records if r.getMessage() == "conversations.agent.llm_failed"]
    assert logged.error_id == sent[-2]["error_id"]
    assert logged.reason == "llm_response_incomplete"
    assert logged.request_id == "req_test_1"
    assert finish_reason in logged.detail


@pytest.mark.parametrize("finish_reason", ["length", "content_filter"])
def test_cut_completion_runs_no_tools(
    chat_client, shop, conversation, llm, stream_mode, finish_reason
):
    show(conversation, MILK_LACTEL)
    llm.add(
        tool_calls(
            call("add_to_cart", {"sku": "milk-001"}),
            call("clear_cart"),
            finish_reason=finish_reason,
        )
    )

    sent = send(chat_client, conversation, "Додай Lactel")

    assert sent == incomplete_events(sent, "")
    assert cart_posts(shop) == []
    assert shop.store.cart_items(STORE_ID, SESSION_ID) == []
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["failure"] == "llm_response_incomplete"
    # No assistant message without content or tool calls, which servers reject in a history.
    assert answer.llm_messages == []
    llm.add(reply("Що додати?"))

    send(chat_client, conversation, "молоко")

    assert [message["role"] for message in llm.requests[1].messages] == [
        "system",
        "user",
        "assistant",
        "user",
    ]


@pytest.mark.parametrize("finish_reason", ["length", "content_filter"])
def test_cut_answer_after_a_tool_round(
    chat_client, shop, conversation, llm, stream_mode, finish_reason
):
    show(conversation, MILK_LACTEL)
    llm.add(
        tool_calls(call("add_to_cart", {"sku": "milk-001"})),
        tool_calls(
            call("add_to_cart", '{"sku": "milk-0'), text="Додаю ще", finish_reason=finish_reason
        ),
    )

    sent = send(chat_client, conversation, "Додай Lactel")

    assert sent[-2]["reason"] == "llm_response_incomplete"
    assert len(cart_posts(shop)) == 1
    answer = Message.objects.get(role="assistant")
    assert [message["role"] for message in answer.llm_messages] == [
        "assistant",
        "tool",
        "assistant",
    ]
    assert answer.llm_messages[2] == {"role": "assistant", "content": "Додаю ще"}
    llm.add(reply("У кошику молоко Lactel."))

    send(chat_client, conversation, "що в кошику?")

    history = llm.requests[2].messages
    assert [message["role"] for message in history] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "assistant",
        "tool",
        "user",
    ]
    assert history[2]["tool_calls"][0]["id"] == history[3]["tool_call_id"]
    assert history[4] == {"role": "assistant", "content": "Додаю ще"}


def test_cut_tool_arguments_are_reported_as_incomplete(
    chat_client, shop, conversation, llm, stream_mode
):
    show(conversation, MILK_LACTEL)
    llm.add(tool_calls(call("add_to_cart", '{"sku": "milk-0'), finish_reason="length"))

    sent = send(chat_client, conversation, "Додай Lactel")

    assert sent == incomplete_events(sent, "")
    assert cart_posts(shop) == []


def test_content_filter_without_text_is_incomplete(chat_client, shop, conversation, llm):
    llm.add(reply("", finish_reason="content_filter"))

    sent = send(chat_client, conversation, "молоко")

    assert sent == incomplete_events(sent, "")
    assert Message.objects.get(role="assistant").text == ""


def test_too_long_streamed_answer_is_cut(chat_client, shop, conversation, llm, caplog):
    llm.add(reply("я" * (MAX_COMPLETION_CHARS + STREAM_PIECE_CHARS)))

    with caplog.at_level(logging.INFO):
        sent = send(chat_client, conversation, "молоко")

    # Text chunks arrive until one passes the bound, and that chunk is not sent.
    sent_chars = MAX_COMPLETION_CHARS - MAX_COMPLETION_CHARS % STREAM_PIECE_CHARS
    assert reply_text(sent) == "я" * sent_chars
    assert types_of(sent) == ["text_delta", "text_end", "error", "response_complete"]
    assert sent[-2]["reason"] == "llm_invalid_response"
    assert len(llm.requests) == 1
    answer = Message.objects.get(role="assistant")
    assert answer.text == "я" * sent_chars
    assert answer.metadata["failure"] == "llm_invalid_response"
    [logged] = [r for r in caplog.records if r.getMessage() == "conversations.agent.llm_failed"]
    assert logged.detail == (
        f"The completion is longer than {MAX_COMPLETION_CHARS} characters of text and tool calls."
    )


def test_too_long_plain_answer_is_invalid(chat_client, shop, conversation, llm, settings):
    settings.LLM_STREAM = False
    llm.add(reply("я" * (MAX_COMPLETION_CHARS + 1)))

    sent = send(chat_client, conversation, "молоко")

    assert sent == invalid_response_events(sent)
    assert Message.objects.get(role="assistant").text == ""


def test_completion_of_max_size_is_accepted(chat_client, shop, conversation, llm, stream_mode):
    llm.add(reply("я" * MAX_COMPLETION_CHARS))

    sent = send(chat_client, conversation, "молоко")

    assert reply_text(sent) == "я" * MAX_COMPLETION_CHARS
    assert types_of(sent) == ["text_delta", "text_end", "response_complete"]


def test_too_long_tool_arguments_are_invalid(chat_client, shop, conversation, llm, stream_mode):
    llm.add(tool_calls(call("search_products", {"query": "я" * MAX_COMPLETION_CHARS})))

    sent = send(chat_client, conversation, "молоко")

    assert sent == invalid_response_events(sent)
    assert shop.requests == []
    assert Message.objects.get(role="assistant").llm_messages == []


def test_too_many_tool_calls_in_a_completion(chat_client, shop, conversation, llm, stream_mode):
    llm.add(tool_calls(*[call("view_cart")] * (MAX_TOOL_CALLS_PER_COMPLETION + 1)))

    sent = send(chat_client, conversation, "що в кошику?")

    assert sent == invalid_response_events(sent)
    assert shop.requests == []
    assert Message.objects.get(role="assistant").llm_messages == []


# The characters of call("view_cart") as the scripted server sends it: the id "call_1", the
# name and the arguments "{}".
VIEW_CART_CALL_CHARS = len("call_1") + len("view_cart") + len("{}")


@pytest.mark.parametrize(("extra", "accepted"), [(0, True), (1, False)])
def test_text_and_tool_call_at_the_bound(
    chat_client, shop, conversation, llm, stream_mode, extra, accepted
):
    text = "я" * (MAX_COMPLETION_CHARS - VIEW_CART_CALL_CHARS + extra)
    llm.add(tool_calls(call("view_cart"), text=text), reply("Кошик порожній."))

    sent = send(chat_client, conversation, "що в кошику?")

    if accepted:
        assert "error" not in types_of(sent)
        assert len(llm.requests) == 2
    else:
        assert types_of(sent)[-2:] == ["error", "response_complete"]
        assert sent[-2]["reason"] == "llm_invalid_response"
        assert len(llm.requests) == 1
        assert Message.objects.get(role="assistant").llm_messages == []


def test_max_tool_calls_in_a_completion_accepted(chat_client, shop, conversation, llm, stream_mode):
    llm.add(tool_calls(*[call("view_cart")] * MAX_TOOL_CALLS_PER_COMPLETION), reply("Порожньо."))

    sent = send(chat_client, conversation, "що в кошику?")

    assert reply_text(sent) == "Порожньо."
    assert "error" not in types_of(sent)
    [_, second] = llm.requests
    # Each call gets a result, and those past the per-turn limit get an error output.
    results = second.tool_results()
    assert len(results) == MAX_TOOL_CALLS_PER_COMPLETION
    assert "error" not in results[MAX_TOOL_CALLS_PER_TURN - 1]
    assert results[MAX_TOOL_CALLS_PER_TURN]["error"] == "too_many_tool_calls"


def test_repeated_call_fields_count_once(chat_client, shop, conversation, llm):
    # The arguments and one id and name fit the bound, and an id and name in every one of
    # the argument chunks would not.
    arguments = {"query": "я" * (MAX_COMPLETION_CHARS // 2)}
    chunks = len(json.dumps(arguments, ensure_ascii=False)) // STREAM_PIECE_CHARS
    assert chunks * len("call_1search_products") > MAX_COMPLETION_CHARS // 2
    llm.add(
        tool_calls(call("search_products", arguments), repeat_call_fields=True),
        reply("Такого немає."),
    )

    sent = send(chat_client, conversation, "молоко")

    assert reply_text(sent) == "Такого немає."
    assert "error" not in types_of(sent)
    [_, second] = llm.requests
    [assistant] = [m for m in second.messages if m["role"] == "assistant" and m["tool_calls"]]
    [sent_call] = assistant["tool_calls"]
    assert sent_call["id"] == "call_1"
    assert sent_call["function"]["name"] == "search_products"


def stream_body(tool_call: dict) -> bytes:
    """Return an SSE body of one chunk with ``tool_call`` and a final chunk."""
    chunks = [
        {"index": 0, "delta": {"tool_calls": [{"index": 0, **tool_call}]}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
    ]
    events = [
        json.dumps(
            {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [choice],
            }
        )
        for choice in chunks
    ]
    return "".join(f"data: {event}\n\n" for event in [*events, "[DONE]"]).encode()


@pytest.mark.parametrize(
    "tool_call",
    [
        pytest.param(
            {"id": 5, "type": "function", "function": {"name": "view_cart", "arguments": "{}"}},
            id="id number",
        ),
        pytest.param(
            {"id": "c1", "type": "function", "function": {"name": 5, "arguments": "{}"}},
            id="name number",
        ),
        pytest.param(
            {"id": "c1", "type": "function", "function": {"name": "view_cart", "arguments": 7}},
            id="arguments number",
        ),
    ],
)
def test_streamed_tool_call_of_wrong_type(chat_client, shop, conversation, llm, caplog, tool_call):
    llm.add(raw_body(stream_body(tool_call), "text/event-stream"))

    with caplog.at_level(logging.INFO):
        sent = send(chat_client, conversation, "що в кошику?")

    assert sent == invalid_response_events(sent)
    assert len(llm.requests) == 1
    assert shop.requests == []
    answer = Message.objects.get(role="assistant")
    assert answer.metadata["failure"] == "llm_invalid_response"
    assert answer.llm_messages == []
    messages = [record.getMessage() for record in caplog.records]
    assert "conversations.agent.llm_failed" in messages
    assert "conversations.turn.failed" not in messages


def retry_logs(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "llm.completion_retry"]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_waits_for_retry_after(
    chat_client, shop, conversation, llm, stream_mode, caplog, status
):
    llm.add(http_error(status, headers=(("Retry-After", "1"),)), reply("Привіт!"))

    with caplog.at_level(logging.INFO, logger="conversations.llm"):
        started = time.monotonic()
        sent = send(chat_client, conversation, "привіт")
        elapsed = time.monotonic() - started

    assert reply_text(sent) == "Привіт!"
    assert len(llm.requests) == 2
    assert elapsed >= 1.0
    [retry] = retry_logs(caplog)
    assert retry.delay_seconds == 1.0
    [failed] = [r for r in caplog.records if r.getMessage() == "llm.completion_failed"]
    assert failed.retry_after == 1.0


@pytest.mark.parametrize(
    ("retry_after", "turn_seconds", "logged"),
    [
        pytest.param("11", 20.0, 11.0, id="over the max"),
        pytest.param(
            email.utils.format_datetime(
                datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1), usegmt=True
            ),
            20.0,
            # The date is computed when the tests are collected, minutes before some run.
            pytest.approx(3_600, abs=900),
            id="http date",
        ),
        # The wait fits the max, but would leave less than 1 s of the turn.
        pytest.param("3", 3.5, 3.0, id="past the deadline"),
    ],
)
def test_long_retry_after_is_not_retried(
    chat_client,
    shop,
    conversation,
    llm,
    settings,
    stream_mode,
    caplog,
    retry_after,
    turn_seconds,
    logged,
):
    settings.AGENT_TURN_TIMEOUT_SECONDS = turn_seconds
    llm.add(http_error(429, headers=(("Retry-After", retry_after),)), reply("Привіт!"))

    with caplog.at_level(logging.INFO):
        started = time.monotonic()
        sent = send(chat_client, conversation, "привіт")
        elapsed = time.monotonic() - started

    assert types_of(sent) == ["error", "response_complete"]
    assert sent[0]["reason"] == "llm_unavailable"
    assert len(llm.requests) == 1
    assert elapsed < 2.5
    assert retry_logs(caplog) == []
    [failed] = [r for r in caplog.records if r.getMessage() == "conversations.agent.llm_failed"]
    assert failed.status_code == 429
    assert failed.retry_after == logged


def test_retry_after_at_the_max_is_waited_for(chat_client, shop, conversation, llm, caplog):
    llm.add(http_error(429, headers=(("Retry-After", "10"),)), reply("Привіт!"))

    with caplog.at_level(logging.INFO, logger="conversations.llm"):
        sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"
    [retry] = retry_logs(caplog)
    assert retry.delay_seconds == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("retry_after", ["soon", "-5", "nan", "Thu, 01 Jan 1970 00:00:00 GMT"])
def test_unusable_retry_after_gets_the_default_delay(
    chat_client, shop, conversation, llm, caplog, retry_after
):
    llm.add(http_error(429, headers=(("Retry-After", retry_after),)), reply("Привіт!"))

    with caplog.at_level(logging.INFO, logger="conversations.llm"):
        sent = send(chat_client, conversation, "привіт")

    assert reply_text(sent) == "Привіт!"
    [retry] = retry_logs(caplog)
    assert retry.delay_seconds == 0.0


@pytest.mark.parametrize(
    ("base_url", "detail"),
    [
        (
            "ftp://127.0.0.1:{port}/v1",
            "OPENAI_BASE_URL must be an http or https URL with a host, got scheme 'ftp'; set it "
            "to a URL such as http://127.0.0.1:8000/v1.",
        ),
        (
            "127.0.0.1:{port}/v1",
            "OPENAI_BASE_URL must be an http or https URL with a host, got no scheme; set it "
            "to a URL such as http://127.0.0.1:8000/v1.",
        ),
        (
            "http:///v1",
            "OPENAI_BASE_URL must be an http or https URL with a host, got scheme 'http'; set it "
            "to a URL such as http://127.0.0.1:8000/v1.",
        ),
        (
            "http://user:s3cret@127.0.0.1:{port}/v1",
            "OPENAI_BASE_URL contains a user name or password; remove them and set the key in "
            "OPENAI_API_KEY.",
        ),
        ("http://127.0.0.1:99999/v1", "OPENAI_BASE_URL is not a valid URL."),
        # The line ending of an environment file saved with CRLF line endings.
        (
            "http://127.0.0.1:{port}/v1\r",
            "OPENAI_BASE_URL contains a control character, such as a tab or a line break; "
            "remove it.",
        ),
        (
            "http://127.0.0.1\t:{port}/v1",
            "OPENAI_BASE_URL contains a control character, such as a tab or a line break; "
            "remove it.",
        ),
        (
            "http://127.0.0.1:{port}/v1\x00",
            "OPENAI_BASE_URL contains a control character, such as a tab or a line break; "
            "remove it.",
        ),
    ],
)
def test_unusable_base_url_is_reported(
    chat_client, shop, conversation, llm, settings, stream_mode, caplog, base_url, detail
):
    settings.OPENAI_BASE_URL = base_url.format(port=llm.server.server_address[1])
    llm.add(reply("Привіт!"))

    with caplog.at_level(logging.DEBUG):
        sent = send(chat_client, conversation, "привіт")

    assert types_of(sent) == ["error", "response_complete"]
    assert sent[0]["reason"] == "llm_unavailable"
    assert llm.requests == []
    assert Message.objects.get(role="assistant").metadata["failure"] == "llm_unavailable"
    # Not retried: the same URL would fail again.
    failures = [r for r in caplog.records if r.getMessage() == "llm.completion_failed"]
    assert [record.detail for record in failures] == [detail]
    [logged] = [r for r in caplog.records if r.getMessage() == "conversations.agent.llm_failed"]
    assert logged.detail == detail
    assert not [r for r in caplog.records if "s3cret" in r.getMessage()]


# A shopper's address, quoted by the model in the arguments of a tool call.
QUOTED_ADDRESS = "вул. Хрещатик 5, кв. 12"


@pytest.mark.parametrize(
    ("arguments", "detail"),
    [
        pytest.param(
            '{"query": "' + QUOTED_ADDRESS + '", limit: 2}',
            "The arguments of the search_products call (46 characters) are not valid JSON: "
            "Expecting property name enclosed in double quotes at character 37.",
            id="invalid json",
        ),
        pytest.param(
            '{"query": "' + QUOTED_ADDRESS + '\\u0000"}',
            "The arguments of the search_products call (42 characters) contain a NUL "
            "character or an unpaired surrogate.",
            id="nul character",
        ),
    ],
)
def test_rejected_arguments_stay_out_of_logs(
    chat_client, shop, conversation, llm, stream_mode, caplog, arguments, detail
):
    llm.add(tool_calls(call("search_products", arguments)))
    formatter = KeyValueFormatter()

    with caplog.at_level(logging.DEBUG, logger="conversations"):
        sent = send(chat_client, conversation, "Знайди молоко")

    assert sent[0]["reason"] == "llm_invalid_response"
    [failed] = [r for r in caplog.records if r.getMessage() == "llm.completion_failed"]
    assert failed.detail == detail
    [logged] = [r for r in caplog.records if r.getMessage() == "conversations.agent.llm_failed"]
    assert logged.detail == detail
    lines = [formatter.format(record) for record in caplog.records]
    assert [line for line in lines if "Хрещатик" in line] == []
