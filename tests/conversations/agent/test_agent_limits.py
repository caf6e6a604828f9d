"""Limits of an agent turn: tool rounds, token budgets and the turn deadline."""

import logging
from datetime import timedelta

import pytest
from django.db import DataError

from conversations.llm import MAX_REPORTED_TOKENS, Usage
from conversations.models import Conversation, Message, TokenUsage
from conversations.usage import llm_usage_record, token_usage_record, utc_today
from tests.conversations.agent.chat import types_of
from tests.conversations.agent.llm_server import call, http_error, reply, tool_calls
from tests.conversations.chat import reply_text, send
from webhooks.models import WebhookDelivery, WebhookKind

pytestmark = pytest.mark.django_db


def search(query: str = "молоко", **options):
    return tool_calls(call("search_products", {"query": query}), **options)


def test_tool_rounds_stop_at_the_limit(chat_client, shop, conversation, llm, assistant_settings):
    assistant_settings.max_tool_rounds = 2
    assistant_settings.save()
    # Both queries name products the shop sells: search returns nothing for kefir here.
    llm.add(search(), search("хліб"), search("яблуко"))

    sent = send(chat_client, conversation, "молоко")

    assert types_of(sent) == [
        "status",
        "status",
        "product_cards",
        "product_cards",
        "error",
        "response_complete",
    ]
    assert sent[-2] == {"type": "error", "code": "max_rounds_exceeded"}
    assert len(llm.requests) == 3
    products_calls = WebhookDelivery.objects.filter(kind=WebhookKind.PRODUCTS).count()
    assert products_calls == 2
    reply_message = Message.objects.get(role="assistant")
    assert reply_message.metadata["failure"] == "max_rounds_exceeded"
    assert reply_message.metadata["tool_rounds"] == 2


def test_used_up_session_budget_stops_before_the_model(
    chat_client, shop, conversation, llm, assistant_settings
):
    assistant_settings.session_token_limit = 1000
    assistant_settings.save()
    conversation.tokens_used = 1000
    conversation.save()

    sent = send(chat_client, conversation, "молоко")

    assert sent == [
        {"type": "error", "code": "session_token_limit"},
        {"type": "response_complete"},
    ]
    assert llm.requests == []
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_session_budget_is_checked_before_each_call(
    chat_client, shop, conversation, llm, assistant_settings
):
    assistant_settings.session_token_limit = 150
    assistant_settings.save()
    llm.add(search(usage=(200, 20)), reply("Ось молоко."))

    sent = send(chat_client, conversation, "молоко")

    assert types_of(sent) == ["status", "product_cards", "error", "response_complete"]
    assert sent[-2] == {"type": "error", "code": "session_token_limit"}
    assert len(llm.requests) == 1
    conversation.refresh_from_db()
    assert conversation.tokens_used == 220


def test_tenant_daily_budget_stops_new_messages(
    chat_client, shop, conversation, llm, tenant, assistant_settings
):
    assistant_settings.daily_token_limit = 5000
    assistant_settings.save()
    token_usage_record(tenant=tenant, usage=Usage(prompt_tokens=4000, completion_tokens=1000))

    sent = send(chat_client, conversation, "молоко")

    assert sent == [
        {"type": "error", "code": "tenant_daily_token_limit"},
        {"type": "response_complete"},
    ]
    assert llm.requests == []


def test_tenant_budget_stops_later_call(
    chat_client, shop, conversation, llm, tenant, assistant_settings
):
    # The first call's 9,020 tokens leave less room than the second call's estimate, which
    # is over 2,000 tokens for the completion alone.
    assistant_settings.daily_token_limit = 10_000
    assistant_settings.monthly_token_limit = 0
    assistant_settings.save()
    llm.add(search(text="Шукаю молоко.", usage=(9000, 20)), reply("Ось молоко."))

    sent = send(chat_client, conversation, "молоко")

    assert types_of(sent) == [
        "text_delta",
        "text_end",
        "status",
        "product_cards",
        "error",
        "response_complete",
    ]
    assert reply_text(sent) == "Шукаю молоко."
    assert sent[-2] == {"type": "error", "code": "tenant_daily_token_limit"}
    assert len(llm.requests) == 1
    usage = TokenUsage.objects.get(tenant=tenant)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.requests) == (9000, 20, 1)
    assert usage.reserved_tokens == 0
    reply_message = Message.objects.get(role="assistant")
    assert reply_message.text == "Шукаю молоко."
    assert reply_message.metadata["failure"] == "tenant_daily_token_limit"
    assert reply_message.metadata["model_calls"] == 1


def test_failed_call_releases_reservation(
    chat_client, shop, conversation, llm, tenant, assistant_settings
):
    assistant_settings.daily_token_limit = 10_000
    assistant_settings.save()
    llm.add(http_error(500), http_error(500))

    sent = send(chat_client, conversation, "молоко")

    assert sent[-2]["code"] == "internal_error"
    assert sent[-2]["reason"] == "llm_unavailable"
    assert len(llm.requests) == 2
    usage = TokenUsage.objects.get(tenant=tenant)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.requests) == (0, 0, 0)
    assert usage.reserved_tokens == 0


def test_other_tenants_usage_leaves_budget(
    chat_client, shop, conversation, llm, tenant, other_tenant, assistant_settings
):
    assistant_settings.daily_token_limit = 5000
    assistant_settings.monthly_token_limit = 5000
    assistant_settings.save()
    token_usage_record(tenant=other_tenant, usage=Usage(prompt_tokens=9000, completion_tokens=900))
    llm.add(reply("Привіт!", usage=(100, 10)))

    sent = send(chat_client, conversation, "привіт")

    assert types_of(sent) == ["text_delta", "text_end", "response_complete"]
    assert len(llm.requests) == 1
    theirs = TokenUsage.objects.get(tenant=other_tenant)
    assert (theirs.prompt_tokens, theirs.completion_tokens, theirs.requests) == (9000, 900, 1)
    mine = TokenUsage.objects.get(tenant=tenant)
    assert (mine.prompt_tokens, mine.completion_tokens, mine.requests) == (100, 10, 1)


def test_tenant_monthly_budget_counts_this_month(
    chat_client, shop, conversation, llm, tenant, assistant_settings
):
    assistant_settings.daily_token_limit = 0
    assistant_settings.monthly_token_limit = 5000
    assistant_settings.save()
    month_start = utc_today().replace(day=1)
    last_month = month_start - timedelta(days=1)
    token_usage_record(tenant=tenant, usage=Usage(prompt_tokens=9000), day=last_month)
    llm.add(reply("Привіт!"))

    first = send(chat_client, conversation, "привіт")
    token_usage_record(tenant=tenant, usage=Usage(prompt_tokens=5000), day=month_start)
    second = send(chat_client, conversation, "молоко")

    assert types_of(first) == ["text_delta", "text_end", "response_complete"]
    assert second == [
        {"type": "error", "code": "tenant_monthly_token_limit"},
        {"type": "response_complete"},
    ]
    assert len(llm.requests) == 1


def test_usage_is_recorded_per_tenant_and_day(chat_client, shop, conversation, llm, tenant):
    llm.add(search(usage=(300, 30)), reply("Ось молоко.", usage=(400, 50)))

    send(chat_client, conversation, "молоко")

    usage = TokenUsage.objects.get(tenant=tenant)
    assert usage.date == utc_today()
    assert usage.prompt_tokens == 700
    assert usage.completion_tokens == 80
    assert usage.requests == 2
    conversation.refresh_from_db()
    assert conversation.tokens_used == 780


def test_missing_usage_is_estimated(chat_client, shop, conversation, llm, tenant):
    llm.add(reply("Привіт! Чим можу допомогти?", usage=None))

    send(chat_client, conversation, "привіт")

    usage = TokenUsage.objects.get(tenant=tenant)
    assert usage.prompt_tokens > 500
    assert usage.completion_tokens == 7
    reply_message = Message.objects.get(role="assistant")
    assert reply_message.metadata["usage_estimated"] is True


@pytest.mark.parametrize("reported", [(-5_000, 20), (100, 3_000_000_000)], ids=["neg", "huge"])
def test_implausible_usage_is_estimated(chat_client, shop, conversation, llm, tenant, reported):
    llm.add(reply("Привіт! Чим можу допомогти?", usage=reported))

    sent = send(chat_client, conversation, "привіт")

    assert types_of(sent) == ["text_delta", "text_end", "response_complete"]
    usage = TokenUsage.objects.get(tenant=tenant)
    assert usage.prompt_tokens > 500
    assert usage.completion_tokens == 7
    assert usage.requests == 1
    conversation.refresh_from_db()
    assert conversation.tokens_used == usage.prompt_tokens + 7
    reply_message = Message.objects.get(role="assistant")
    assert reply_message.metadata["usage_estimated"] is True
    assert "failure" not in reply_message.metadata


def test_largest_usage_beyond_32_bits_is_counted(
    chat_client, shop, conversation, llm, tenant, assistant_settings
):
    # 107 calls that reported the largest accepted counts, 10 million tokens each way.
    assistant_settings.session_token_limit = 0
    assistant_settings.daily_token_limit = 0
    assistant_settings.monthly_token_limit = 0
    assistant_settings.save()
    conversation.tokens_used = 2_140_000_000
    conversation.save()
    llm.add(reply("Привіт!", usage=(MAX_REPORTED_TOKENS, MAX_REPORTED_TOKENS)))

    sent = send(chat_client, conversation, "привіт")

    assert types_of(sent) == ["text_delta", "text_end", "response_complete"]
    conversation.refresh_from_db()
    assert conversation.tokens_used == 2_160_000_000
    usage = TokenUsage.objects.get(tenant=tenant)
    assert usage.prompt_tokens == MAX_REPORTED_TOKENS
    assert usage.completion_tokens == MAX_REPORTED_TOKENS
    reply_message = Message.objects.get(role="assistant")
    assert reply_message.metadata["prompt_tokens"] == MAX_REPORTED_TOKENS
    assert "failure" not in reply_message.metadata


def test_failed_usage_record_changes_no_counter(conversation, tenant):
    token_usage_record(tenant=tenant, usage=Usage(prompt_tokens=100, completion_tokens=10))
    biggest = 2**63 - 1
    Conversation.objects.filter(pk=conversation.pk).update(tokens_used=biggest)
    conversation.refresh_from_db()

    with pytest.raises(DataError):
        llm_usage_record(
            conversation=conversation, usage=Usage(prompt_tokens=50, completion_tokens=5)
        )

    usage = TokenUsage.objects.get(tenant=tenant)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.requests) == (100, 10, 1)
    assert conversation.tokens_used == biggest
    conversation.refresh_from_db()
    assert conversation.tokens_used == biggest


def test_turn_deadline_ends_the_turn(chat_client, shop, conversation, llm, settings, caplog):
    # Long enough for the search on a busy machine, so that the second model call is sent.
    settings.AGENT_TURN_TIMEOUT_SECONDS = 5.0
    llm.add(search(), reply("Запізно.", delay=10))

    with caplog.at_level(logging.WARNING, logger="conversations.assistants.agent"):
        sent = send(chat_client, conversation, "молоко")

    assert types_of(sent) == ["status", "product_cards", "error", "response_complete"]
    error = sent[-2]
    assert error == {
        "type": "error",
        "code": "internal_error",
        "reason": "turn_timeout",
        "error_id": error["error_id"],
    }
    [record] = [r for r in caplog.records if r.getMessage() == "conversations.agent.turn_timeout"]
    assert record.error_id == error["error_id"]
    assert record.timeout_seconds == 5.0
    assert len(llm.requests) == 2
    assert record.reason == "llm_timeout"
    assert record.request_id is None  # the timed-out request got no response headers
    assert record.model == "test-fast-model"
    reply_message = Message.objects.get(role="assistant")
    assert reply_message.metadata["failure"] == "turn_timeout"
    assert [message["role"] for message in reply_message.llm_messages] == ["assistant", "tool"]


def test_searches_per_message_are_limited(chat_client, shop, conversation, llm, caplog):
    # A model that repeats one search: the first call is invalid and does not count, the
    # next 10 run, and the last 2 are rejected without a products webhook call.
    calls = [call("search_products", {"query": " "})]
    calls += [call("search_products", {"query": "молоко"}) for _ in range(12)]
    llm.add(tool_calls(*calls), reply("Ось молоко."))

    with caplog.at_level(logging.INFO, logger="conversations.tool_calls"):
        sent = send(chat_client, conversation, "молоко")

    results = llm.requests[1].tool_results()
    assert len(results) == 13
    assert results[0]["error"] == "invalid_arguments"
    assert [result["outcome"] for result in results[1:11]] == ["found"] * 10
    limited = {
        "error": "too_many_searches",
        "detail": "At most 10 searches are run per message. Answer with the results so far "
        "and ask the shopper to continue in a new message.",
    }
    assert results[11:] == [limited, limited]
    assert WebhookDelivery.objects.filter(kind=WebhookKind.PRODUCTS).count() == 10
    expected_types = ["status", "text_delta", "text_end", *["product_cards"] * 10]
    assert types_of(sent) == [*expected_types, "response_complete"]
    records = [r for r in caplog.records if r.getMessage() == "conversations.tools.search_limited"]
    assert [record.searches_run for record in records] == [10, 10]
    assert records[0].conversation_id == conversation.public_id
    assert "failure" not in Message.objects.get(role="assistant").metadata
