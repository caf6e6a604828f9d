"""Reservations of the tenant token budgets (``conversations.usage``)."""

from datetime import date

import pytest

from conversations.llm import Usage
from conversations.models import Conversation, TokenUsage
from conversations.usage import (
    COMPLETION_TOKENS_RESERVED,
    TokenLimitReached,
    TokenReservation,
    llm_usage_record,
    token_estimate,
    token_reservation_create,
    token_reservation_release,
    token_usage_record,
)
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db

DAY = date(2026, 3, 10)


def row(tenant, day: date = DAY) -> TokenUsage:
    return TokenUsage.objects.get(tenant=tenant, date=day)


def set_budgets(assistant_settings, *, daily: int, monthly: int):
    assistant_settings.daily_token_limit = daily
    assistant_settings.monthly_token_limit = monthly
    assistant_settings.save()
    return assistant_settings


def reserve(tenant, assistant_settings, tokens: int, day: date = DAY) -> TokenReservation:
    return token_reservation_create(
        tenant=tenant, assistant_settings=assistant_settings, tokens=tokens, day=day
    )


def test_estimate_adds_completion_reserve():
    assert token_estimate(request_chars=0) == COMPLETION_TOKENS_RESERVED
    assert token_estimate(request_chars=4001) == 1001 + COMPLETION_TOKENS_RESERVED


def test_reservation_creates_missing_row(tenant):
    budgets = set_budgets(tenant.assistant_settings, daily=1000, monthly=0)

    reservation = reserve(tenant, budgets, 400)

    assert reservation == TokenReservation(tenant_id=tenant.pk, day=DAY, tokens=400)
    stored = row(tenant)
    assert (stored.prompt_tokens, stored.completion_tokens, stored.requests) == (0, 0, 0)
    assert stored.reserved_tokens == 400


def test_reservation_fills_daily_budget_exactly(tenant):
    budgets = set_budgets(tenant.assistant_settings, daily=1000, monthly=0)
    token_usage_record(tenant=tenant, usage=Usage(prompt_tokens=500), day=DAY)
    reserve(tenant, budgets, 300)

    reserve(tenant, budgets, 200)
    with pytest.raises(TokenLimitReached) as raised:
        reserve(tenant, budgets, 1)

    assert raised.value.code.value == "tenant_daily_token_limit"
    assert row(tenant).reserved_tokens == 500


def test_monthly_budget_counts_recent_reservations(tenant):
    budgets = set_budgets(tenant.assistant_settings, daily=0, monthly=10_000)
    # Used this month: 1,000 on the 2nd. Reserved: 5,000 left on the 8th by a process that
    # died, which no longer counts, and 3,000 of the 9th, whose calls may still run.
    token_usage_record(tenant=tenant, usage=Usage(prompt_tokens=1000), day=date(2026, 3, 2))
    TokenUsage.objects.create(tenant=tenant, date=date(2026, 3, 8), reserved_tokens=5000)
    TokenUsage.objects.create(tenant=tenant, date=date(2026, 3, 9), reserved_tokens=3000)
    # Last month's usage does not count.
    token_usage_record(tenant=tenant, usage=Usage(prompt_tokens=50_000), day=date(2026, 2, 28))

    reserve(tenant, budgets, 6000)
    with pytest.raises(TokenLimitReached) as raised:
        reserve(tenant, budgets, 1)

    assert raised.value.code.value == "tenant_monthly_token_limit"
    assert row(tenant).reserved_tokens == 6000


def test_daily_code_wins_when_both_are_full(tenant):
    budgets = set_budgets(tenant.assistant_settings, daily=1000, monthly=1000)
    token_usage_record(tenant=tenant, usage=Usage(prompt_tokens=1000), day=DAY)

    with pytest.raises(TokenLimitReached) as raised:
        reserve(tenant, budgets, 1)

    assert raised.value.code.value == "tenant_daily_token_limit"
    assert row(tenant).reserved_tokens == 0


def test_no_budgets_reserve_nothing(tenant):
    budgets = set_budgets(tenant.assistant_settings, daily=0, monthly=0)

    reservation = reserve(tenant, budgets, 10**9)

    assert reservation.tokens == 0
    assert not TokenUsage.objects.filter(tenant=tenant).exists()


def test_usage_record_replaces_reservation(tenant):
    budgets = set_budgets(tenant.assistant_settings, daily=10_000, monthly=0)
    conversation = ConversationFactory(tenant=tenant)
    reservation = reserve(tenant, budgets, 3000)

    llm_usage_record(
        conversation=conversation,
        usage=Usage(prompt_tokens=900, completion_tokens=100),
        reservation=reservation,
    )
    # A second usage of the same call (a retried attempt) adds tokens and releases nothing.
    llm_usage_record(
        conversation=conversation, usage=Usage(prompt_tokens=50), reservation=reservation
    )
    token_reservation_release(reservation=reservation)

    stored = row(tenant)
    assert (stored.prompt_tokens, stored.completion_tokens, stored.requests) == (950, 100, 2)
    assert stored.reserved_tokens == 0
    assert Conversation.objects.get(pk=conversation.pk).tokens_used == 1050


def test_usage_goes_to_reservation_day(tenant):
    # A call reserved before midnight and recorded after it counts on the reservation's day.
    budgets = set_budgets(tenant.assistant_settings, daily=10_000, monthly=0)
    conversation = ConversationFactory(tenant=tenant)
    reservation = reserve(tenant, budgets, 3000)

    llm_usage_record(
        conversation=conversation, usage=Usage(prompt_tokens=700), reservation=reservation
    )

    assert list(TokenUsage.objects.filter(tenant=tenant).values_list("date", flat=True)) == [DAY]
    assert row(tenant).prompt_tokens == 700
    assert row(tenant).reserved_tokens == 0


def test_release_returns_tokens_once(tenant):
    budgets = set_budgets(tenant.assistant_settings, daily=1000, monthly=0)
    reservation = reserve(tenant, budgets, 1000)

    token_reservation_release(reservation=reservation)
    token_reservation_release(reservation=reservation)

    assert row(tenant).reserved_tokens == 0
    assert reserve(tenant, budgets, 1000).tokens == 1000
