"""LLM token accounting: per-tenant daily totals, the conversation's total, and budgets.

Days are UTC dates. Counters are incremented with ``F()`` expressions, so concurrent turns
in different processes never lose an update.

The tenant's daily and monthly budgets apply across concurrent messages through
reservations. Before each model call, one ``UPDATE`` adds an estimate of the call's tokens
to ``TokenUsage.reserved_tokens`` of the day, and only while the day's and the month's
used and reserved tokens plus the estimate fit the budgets. PostgreSQL locks the day's row
for the update and checks the condition again on the newest row version, so two
concurrent calls of one tenant cannot both take the same remaining tokens. Recording the
call's usage removes the estimate in the same statement. Usage therefore exceeds a budget
only by what calls used beyond their estimates.
"""

import math
from dataclasses import dataclass
from datetime import date, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from conversations.llm import CHARS_PER_TOKEN_ESTIMATE, Usage
from conversations.models import Conversation, TokenUsage
from tenants.models import AssistantSettings, Tenant
from vizochok.exceptions import ErrorCode


def utc_today() -> date:
    return timezone.now().date()


def first_reserved_day(*, day: date) -> date:
    """Return the first day whose reserved tokens the monthly budget counts on ``day``.

    That is the day before, where calls that started before midnight may still run, unless
    it is in the previous month.
    """
    return max(day.replace(day=1), day - timedelta(days=1))


# Completion tokens reserved for each model call, on top of its prompt's estimate. A
# shopping reply or a round of tool calls is far shorter. A longer completion, up to
# MAX_COMPLETION_CHARS, is still accepted and recorded, and its excess can take a budget
# past its limit.
# NOTE: the value is a choice of this project. Requests carry no max_tokens, so no server
# enforces it.
COMPLETION_TOKENS_RESERVED = 2_000


@dataclass
class TokenReservation:
    """Tokens held on ``tenant_id``'s row of ``day`` for one model call."""

    tenant_id: int
    day: date
    tokens: int
    released: bool = False


class TokenLimitReached(Exception):
    """A tenant budget has no room for a model call's estimate. ``code`` names the budget."""

    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.value)
        self.code = code


def token_estimate(*, request_chars: int) -> int:
    """Return the estimate of a model call's tokens that its reservation takes.

    ``request_chars`` is the length of the request's messages and tools as JSON.
    """
    return math.ceil(request_chars / CHARS_PER_TOKEN_ESTIMATE) + COMPLETION_TOKENS_RESERVED


# Reserves %(tokens)s on the tenant's row of %(day)s while the day's used and reserved tokens
# plus %(tokens)s fit the daily budget, and the month's fit the monthly one (0 = no limit).
# The month counts the tokens used on its earlier days, and the tokens still reserved on the
# day before %(day)s, where calls that started before midnight may still run. Older
# reservations are left by processes that died during a call, so they are not counted.
_RESERVE_SQL = """
UPDATE {table} SET reserved_tokens = reserved_tokens + %(tokens)s
WHERE tenant_id = %(tenant_id)s AND date = %(day)s
  AND (
    %(daily_limit)s = 0
    OR prompt_tokens + completion_tokens + reserved_tokens + %(tokens)s <= %(daily_limit)s
  )
  AND (
    %(monthly_limit)s = 0
    OR prompt_tokens + completion_tokens + reserved_tokens + %(tokens)s + (
      SELECT COALESCE(SUM(
        earlier.prompt_tokens + earlier.completion_tokens
        + CASE WHEN earlier.date >= %(previous_day)s THEN earlier.reserved_tokens ELSE 0 END
      ), 0)
      FROM {table} AS earlier
      WHERE earlier.tenant_id = %(tenant_id)s
        AND earlier.date >= %(month_start)s AND earlier.date < %(day)s
    ) <= %(monthly_limit)s
  )
"""


def token_reservation_create(
    *,
    tenant: Tenant,
    assistant_settings: AssistantSettings,
    tokens: int,
    day: date | None = None,
) -> TokenReservation:
    """Reserve ``tokens`` of the tenant's budgets for one model call on ``day`` (today).

    Runs one ``UPDATE`` when it succeeds. When it does not, the tenant's row of the day is
    created if it is missing and the ``UPDATE`` runs once more. Raises ``TokenLimitReached``
    with the daily code when the day's budget has no room for ``tokens``, else with the
    monthly code, and reserves nothing then.
    """
    day = day or utc_today()
    daily_limit = assistant_settings.daily_token_limit
    monthly_limit = assistant_settings.monthly_token_limit
    if not daily_limit and not monthly_limit:
        return TokenReservation(tenant_id=tenant.pk, day=day, tokens=0)
    month_start = day.replace(day=1)
    params: dict[str, int | date] = {
        "tokens": tokens,
        "tenant_id": tenant.pk,
        "day": day,
        "daily_limit": daily_limit,
        "monthly_limit": monthly_limit,
        "month_start": month_start,
        "previous_day": first_reserved_day(day=day),
    }
    sql = _RESERVE_SQL.format(table=TokenUsage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        reserved = cursor.rowcount == 1
        if not reserved:
            # The row may have been missing, so create it unless it exists and try again. A
            # check for the row instead could see a row that another process created after
            # the update found none.
            TokenUsage.objects.bulk_create(
                [TokenUsage(tenant=tenant, date=day)], ignore_conflicts=True
            )
            cursor.execute(sql, params)
            reserved = cursor.rowcount == 1
    if not reserved:
        raise TokenLimitReached(
            _exhausted_budget(tenant=tenant, day=day, tokens=tokens, daily_limit=daily_limit)
        )
    return TokenReservation(tenant_id=tenant.pk, day=day, tokens=tokens)


def _exhausted_budget(*, tenant: Tenant, day: date, tokens: int, daily_limit: int) -> ErrorCode:
    """Return the code of the budget that rejected a reservation of ``tokens`` on ``day``."""
    if daily_limit:
        row = TokenUsage.objects.get(tenant=tenant, date=day)
        if row.total_tokens + row.reserved_tokens + tokens > daily_limit:
            return ErrorCode.TENANT_DAILY_TOKEN_LIMIT
    return ErrorCode.TENANT_MONTHLY_TOKEN_LIMIT


def token_reservation_release(*, reservation: TokenReservation) -> None:
    """Release a reservation's tokens, unless recording the call's usage released them."""
    if reservation.released:
        return
    reservation.released = True
    if reservation.tokens:
        TokenUsage.objects.filter(tenant_id=reservation.tenant_id, date=reservation.day).update(
            reserved_tokens=F("reserved_tokens") - reservation.tokens
        )


def token_usage_record(
    *, tenant: Tenant, usage: Usage, day: date | None = None, release_tokens: int = 0
) -> None:
    """Add one model call's tokens to ``tenant``'s row of the day, creating the row if needed.

    ``release_tokens`` are taken off the row's reserved tokens in the same statement.
    """
    day = day or utc_today()
    increments = {
        "prompt_tokens": F("prompt_tokens") + usage.prompt_tokens,
        "completion_tokens": F("completion_tokens") + usage.completion_tokens,
        "requests": F("requests") + 1,
    }
    if release_tokens:
        increments["reserved_tokens"] = F("reserved_tokens") - release_tokens
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


def llm_usage_record(
    *, conversation: Conversation, usage: Usage, reservation: TokenReservation | None = None
) -> None:
    """Add one model call's tokens to the tenant's day and to the conversation's total.

    Both counters change in one transaction, so a failed update leaves neither changed. With
    the call's ``reservation``, the tokens go to the reservation's day, and the same update
    of the day releases the reservation unless it was released before.
    """
    day = None
    release_tokens = 0
    if reservation is not None:
        day = reservation.day
        if not reservation.released:
            release_tokens = reservation.tokens
    with transaction.atomic():
        token_usage_record(
            tenant=conversation.tenant, usage=usage, day=day, release_tokens=release_tokens
        )
        Conversation.objects.filter(pk=conversation.pk).update(
            tokens_used=F("tokens_used") + usage.total_tokens
        )
    conversation.tokens_used += usage.total_tokens
    if reservation is not None:
        reservation.released = True
