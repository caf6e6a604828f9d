"""The tenant's LLM token budgets and usage through GET /api/v1/admin/usage."""

from datetime import date, timedelta

import pytest
from rest_framework.test import APIClient

from conversations.models import TokenUsage
from conversations.selectors import token_usage_report
from conversations.usage import utc_today
from tenants.models import AssistantSettings
from tests.factories import AssistantSettingsFactory, TokenUsageFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/admin/usage"


def _zero_day(day: date) -> dict[str, object]:
    return {
        "date": day.isoformat(),
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "requests": 0,
    }


def test_get_returns_budgets_and_usage(server_client, tenant):
    today = utc_today()
    TokenUsageFactory(
        tenant=tenant,
        date=today,
        prompt_tokens=1_000,
        completion_tokens=200,
        requests=3,
        reserved_tokens=2_500,
    )
    # More than 31 days ago, so in another month and outside the 3 days listed.
    TokenUsageFactory(tenant=tenant, date=today - timedelta(days=40), prompt_tokens=7)

    response = server_client.get(URL, {"days": 3})

    today_usage = {"prompt_tokens": 1_000, "completion_tokens": 200, "total_tokens": 1_200}
    assert response.status_code == 200
    assert response.json() == {
        "daily_token_limit": 500_000,
        "monthly_token_limit": 10_000_000,
        "today": {
            "start": today.isoformat(),
            **today_usage,
            "requests": 3,
            "reserved_tokens": 2_500,
            "remaining_tokens": 500_000 - 1_200 - 2_500,
        },
        "month": {
            "start": today.replace(day=1).isoformat(),
            **today_usage,
            "requests": 3,
            "reserved_tokens": 2_500,
            "remaining_tokens": 10_000_000 - 1_200 - 2_500,
        },
        "days": [
            {"date": today.isoformat(), **today_usage, "requests": 3},
            _zero_day(today - timedelta(days=1)),
            _zero_day(today - timedelta(days=2)),
        ],
    }


def test_get_without_usage_lists_zero_days(server_client, tenant):
    today = utc_today()

    response = server_client.get(URL)

    body = response.json()
    assert response.status_code == 200
    assert body["today"]["total_tokens"] == 0
    assert body["today"]["remaining_tokens"] == 500_000
    assert body["month"]["remaining_tokens"] == 10_000_000
    assert body["days"] == [_zero_day(today - timedelta(days=n)) for n in range(30)]
    assert TokenUsage.objects.count() == 0


def test_get_lists_an_old_day_in_range(server_client, tenant):
    old_day = utc_today() - timedelta(days=40)
    TokenUsageFactory(tenant=tenant, date=old_day, prompt_tokens=7, requests=1)

    response = server_client.get(URL, {"days": 41})

    body = response.json()
    assert len(body["days"]) == 41
    assert body["days"][-1] == {
        "date": old_day.isoformat(),
        "prompt_tokens": 7,
        "completion_tokens": 0,
        "total_tokens": 7,
        "requests": 1,
    }
    assert body["month"]["total_tokens"] == 0


def test_budget_of_zero_has_no_remaining(server_client, tenant):
    AssistantSettings.objects.filter(tenant=tenant).update(
        daily_token_limit=0, monthly_token_limit=0
    )
    TokenUsageFactory(tenant=tenant, prompt_tokens=5)

    body = server_client.get(URL).json()

    assert body["daily_token_limit"] == 0
    assert body["monthly_token_limit"] == 0
    assert body["today"]["remaining_tokens"] is None
    assert body["month"]["remaining_tokens"] is None


def test_remaining_is_never_negative(server_client, tenant):
    AssistantSettings.objects.filter(tenant=tenant).update(
        daily_token_limit=1_000, monthly_token_limit=2_000
    )
    TokenUsageFactory(tenant=tenant, prompt_tokens=1_500, completion_tokens=600)

    body = server_client.get(URL).json()

    assert body["today"]["remaining_tokens"] == 0
    assert body["month"]["remaining_tokens"] == 0


def test_get_creates_missing_settings(server_client, tenant):
    AssistantSettings.objects.filter(tenant=tenant).delete()

    response = server_client.get(URL, {"days": 1})

    assert response.status_code == 200
    assert response.json()["daily_token_limit"] == 500_000
    assert AssistantSettings.objects.filter(tenant=tenant).count() == 1


def test_key_reads_only_its_tenant(server_client, other_server_client, tenant, other_tenant):
    TokenUsageFactory(tenant=tenant, prompt_tokens=100, completion_tokens=10, requests=1)
    TokenUsageFactory(
        tenant=other_tenant,
        prompt_tokens=9_000,
        completion_tokens=900,
        requests=4,
        reserved_tokens=3_000,
    )
    AssistantSettings.objects.filter(tenant=other_tenant).update(daily_token_limit=50_000)

    ours = server_client.get(URL, {"days": 1}).json()
    theirs = other_server_client.get(URL, {"days": 1}).json()

    assert ours["daily_token_limit"] == 500_000
    assert ours["today"]["total_tokens"] == 110
    assert ours["today"]["reserved_tokens"] == 0
    assert ours["month"]["total_tokens"] == 110
    assert ours["days"][0]["requests"] == 1
    assert theirs["daily_token_limit"] == 50_000
    assert theirs["today"]["total_tokens"] == 9_900
    assert theirs["today"]["remaining_tokens"] == 50_000 - 9_900 - 3_000
    assert theirs["days"][0]["requests"] == 4


@pytest.mark.parametrize("days", ["0", "367", "-1", "x", "1.5"])
def test_get_rejects_invalid_days(server_client, tenant, days):
    response = server_client.get(URL, {"days": days})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert list(response.json()["fields"]) == ["days"]


@pytest.mark.parametrize("days", ["1", "366"])
def test_get_accepts_days_bounds(server_client, tenant, days):
    response = server_client.get(URL, {"days": days})

    assert response.status_code == 200
    assert len(response.json()["days"]) == int(days)


def test_public_key_is_forbidden(chat_client, tenant):
    TokenUsageFactory(tenant=tenant, prompt_tokens=100)

    response = chat_client.get(URL)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "today" not in response.json()


def test_missing_key_is_unauthenticated(tenant):
    response = APIClient().get(URL)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


# --- The selector at fixed dates --------------------------------------------------------------


def test_report_month_starts_on_its_first_day(tenant):
    settings = AssistantSettingsFactory.build(tenant=tenant)
    TokenUsageFactory(tenant=tenant, date=date(2025, 2, 28), prompt_tokens=50, reserved_tokens=9)
    TokenUsageFactory(tenant=tenant, date=date(2025, 3, 1), prompt_tokens=20, requests=2)
    TokenUsageFactory(tenant=tenant, date=date(2025, 3, 2), completion_tokens=3, requests=1)

    report = token_usage_report(
        tenant=tenant, assistant_settings=settings, days=3, today=date(2025, 3, 2)
    )

    assert report.month.start == date(2025, 3, 1)
    assert report.month.total_tokens == 23
    assert report.month.requests == 3
    # Yesterday's reservation is last month's, so this month's budget does not count it.
    assert report.month.reserved_tokens == 0
    assert [day.date for day in report.days] == [
        date(2025, 3, 2),
        date(2025, 3, 1),
        date(2025, 2, 28),
    ]
    assert [day.total_tokens for day in report.days] == [3, 20, 50]


def test_report_counts_reservations_as_the_budgets_do(tenant):
    settings = AssistantSettingsFactory.build(
        tenant=tenant, daily_token_limit=10_000, monthly_token_limit=100_000
    )
    # A reservation left two days ago by a process that died is not counted.
    TokenUsageFactory(tenant=tenant, date=date(2025, 3, 8), reserved_tokens=4_000)
    TokenUsageFactory(tenant=tenant, date=date(2025, 3, 9), reserved_tokens=2_000)
    TokenUsageFactory(tenant=tenant, date=date(2025, 3, 10), reserved_tokens=1_000)

    report = token_usage_report(
        tenant=tenant, assistant_settings=settings, days=1, today=date(2025, 3, 10)
    )

    assert report.today.reserved_tokens == 1_000
    assert report.today.remaining_tokens == 9_000
    assert report.month.reserved_tokens == 3_000
    assert report.month.remaining_tokens == 97_000
