"""Tenant token budgets under messages of one tenant that run at the same time.

Each message is posted from its own thread, with its own database connection, to its own
conversation. These tests commit their data (``transaction=True``), because the threads'
connections cannot see a test transaction's rows.
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from rest_framework.test import APIClient

from conversations.models import Conversation, Message, TokenUsage
from conversations.usage import token_estimate
from tests.conversations.agent.llm_server import (
    Answer,
    LLMRequest,
    ScriptedLLM,
    call,
    reply,
    tool_calls,
)
from tests.conversations.chat import send
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = 4
# Seconds the scripted server waits before each response, so that every message has sent
# its first request before any response arrives.
ANSWER_DELAY = 0.5


def send_at_once(raw_key: str, conversations: list[Conversation]) -> list[list[dict]]:
    """Post one message to each conversation, all at the same moment; return their events."""
    start = threading.Barrier(len(conversations))

    def post(conversation: Conversation) -> list[dict]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        try:
            start.wait(timeout=10)
            return send(client, conversation, "молоко")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(conversations)) as pool:
        futures = [pool.submit(post, conversation) for conversation in conversations]
        # result() re-raises a thread's error.
        return [future.result(timeout=60) for future in futures]


def request_estimate(request: LLMRequest) -> int:
    """Return the agent's estimate of a request's tokens, from the body the server received."""
    body = {"messages": request.messages, "tools": request.body.get("tools", [])}
    return token_estimate(request_chars=len(json.dumps(body, ensure_ascii=False)))


def used_tokens(tenant) -> int:
    return sum(row.total_tokens for row in TokenUsage.objects.filter(tenant=tenant))


@pytest.fixture
def conversations(tenant) -> list[Conversation]:
    return [ConversationFactory(tenant=tenant) for _ in range(MESSAGES)]


def answer_each_step(llm: ScriptedLLM, *, usage: tuple[int, int]) -> None:
    """Make ``llm`` reply to a message's first request with a search and the next with a
    reply, each reporting ``usage``, whatever order the messages' requests arrive in."""
    search = tool_calls(
        call("search_products", {"query": "молоко"}), usage=usage, delay=ANSWER_DELAY
    )
    answer = reply("Ось молоко.", usage=usage, delay=ANSWER_DELAY)

    def next_answer(request: LLMRequest) -> tuple[Answer | None, str]:
        with llm.lock:
            llm.requests.append(request)
            request_id = f"req_test_{next(llm.request_ids)}"
        # The first request ends with the shopper's message, a later one with a tool result.
        return (answer if request.messages[-1]["role"] == "tool" else search), request_id

    llm.next_answer = next_answer  # type: ignore[method-assign]


def test_concurrent_messages_stay_within_daily_budget(
    shop, llm, tenant, public_key, assistant_settings, conversations
):
    # The estimate of each request is about 1,500 tokens of JSON plus the 2,000 reserved for
    # the completion, so each call's 3,050 tokens stay below its reservation. One message
    # uses 6,100 tokens, so the budget has room for one message but not two.
    assistant_settings.daily_token_limit = 10_000
    assistant_settings.monthly_token_limit = 0
    assistant_settings.save()
    answer_each_step(llm, usage=(3000, 50))

    replies = send_at_once(public_key.raw_key, conversations)

    assert all(request_estimate(request) > 3050 for request in llm.requests)
    # Two first calls fit the budget and a third does not, so some message is stopped.
    # Which ones complete depends on the order of the threads.
    rejected = [sent for sent in replies if sent[-2]["type"] == "error"]
    assert len(rejected) >= 1
    for sent in rejected:
        assert sent[-2] == {"type": "error", "code": "tenant_daily_token_limit"}
        assert sent[-1] == {"type": "response_complete"}
    assert used_tokens(tenant) == len(llm.requests) * 3050
    assert used_tokens(tenant) <= 10_000
    row = TokenUsage.objects.get(tenant=tenant)
    assert row.reserved_tokens == 0
    assert row.requests == len(llm.requests)


def test_budget_overrun_is_the_excess_over_reservations(
    shop, llm, tenant, public_key, assistant_settings, conversations
):
    # Each call reports 20,000 prompt tokens, far above its estimate, so the budget can be
    # passed, but only by what the calls sent used beyond their reservations.
    assistant_settings.daily_token_limit = 12_000
    assistant_settings.monthly_token_limit = 12_000
    assistant_settings.save()
    answer_each_step(llm, usage=(20_000, 50))

    replies = send_at_once(public_key.raw_key, conversations)

    excess = sum(20_050 - request_estimate(request) for request in llm.requests)
    assert used_tokens(tenant) == len(llm.requests) * 20_050
    assert used_tokens(tenant) <= 12_000 + excess
    # No message got a second call: the first calls' usage left no room.
    second_calls = [request for request in llm.requests if request.messages[-1]["role"] == "tool"]
    assert second_calls == []
    assert 1 <= len(llm.requests) < MESSAGES
    for sent in replies:
        assert sent[-2]["type"] == "error"
        assert sent[-2]["code"] in {"tenant_daily_token_limit", "tenant_monthly_token_limit"}
    assert TokenUsage.objects.get(tenant=tenant).reserved_tokens == 0
    stored = Message.objects.filter(role="assistant", conversation__tenant=tenant)
    assert stored.count() == MESSAGES
