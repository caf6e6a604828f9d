"""LLM token accounting: per-tenant daily totals, the conversation's total, and budgets.

Days are UTC dates. Counters are incremented with ``F()`` expressions, so concurrent turns
in different processes never lose an update.
"""

from datetime import date

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from conversations.llm import Usage
from conversations.models import Conversation, TokenUsage
from tenants.models import AssistantSettings, Tenant
from vizochok.exceptions import ErrorCode


def utc_today() -> date:
    return timezone.now().date()


def token_usage_record(*, tenant: Tenant, usage: Usage, day: date | None = None) -> None:
    """Add one model call's tokens to ``tenant``'s row of the day, creating the row if needed."""
    day = day or utc_today()
    increments = {
        "prompt_tokens": F("prompt_tokens") + usage.prompt_tokens,
        "completion_tokens": F("completion_tokens") + usage.completion_tokens,
        "requests": F("requests") + 1,
    }
    rows = TokenUsage.objects.filter(tenant=tenant, date=day)
    if rows.update(**increments):
        return
    try:
        with transaction.atomic():
            TokenUsage.objects.create(
                tenant=tenant,
                date=day,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                requests=1,
            )
    except IntegrityError:
        # Another process created the row between the update and the insert.
        rows.update(**increments)


def llm_usage_record(*, conversation: Conversation, usage: Usage) -> None:
    """Add one model call's tokens to the tenant's day and to the conversation's total.

    Both counters change in one transaction, so a failed update leaves neither changed.
    """
    with transaction.atomic():
        token_usage_record(tenant=conversation.tenant, usage=usage)
        Conversation.objects.filter(pk=conversation.pk).update(
            tokens_used=F("tokens_used") + usage.total_tokens
        )
    conversation.tokens_used += usage.total_tokens


def tenant_tokens_used(*, tenant: Tenant, since: date) -> int:
    """Return the tokens ``tenant`` used from ``since`` (a UTC date) through today."""
    totals = TokenUsage.objects.filter(tenant=tenant, date__gte=since).aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens")
    )
    return (totals["prompt"] or 0) + (totals["completion"] or 0)


def tenant_token_limit_reached(
    *, tenant: Tenant, assistant_settings: AssistantSettings
) -> ErrorCode | None:
    """Return the code of the tenant budget that is used up, or None while both have room.

    The daily budget is checked first. A budget of 0 means no limit.
    """
    today = utc_today()
    daily_limit = assistant_settings.daily_token_limit
    if daily_limit and tenant_tokens_used(tenant=tenant, since=today) >= daily_limit:
        return ErrorCode.TENANT_DAILY_TOKEN_LIMIT
    monthly_limit = assistant_settings.monthly_token_limit
    month_start = today.replace(day=1)
    if monthly_limit and tenant_tokens_used(tenant=tenant, since=month_start) >= monthly_limit:
        return ErrorCode.TENANT_MONTHLY_TOKEN_LIMIT
    return None
