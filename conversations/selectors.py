"""Reads of the conversations app, always scoped to one tenant."""

from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Count, Q

from conversations.models import Conversation, Message, TokenUsage
from conversations.usage import first_reserved_day, utc_today
from tenants.models import AssistantSettings, Tenant
from vizochok.exceptions import InvalidInput, NotFound

# Messages in one response of GET /api/v1/conversations/{id}, unless ``limit`` sets another number.
MESSAGES_PAGE_DEFAULT = 50
MESSAGES_PAGE_MAX = 200


@dataclass(frozen=True)
class MessagePage:
    """Consecutive messages of a conversation, oldest first.

    ``has_more`` is true when older messages exist; pass the first message's id as
    ``before`` to read them.
    """

    messages: list[Message]
    has_more: bool


def conversation_get(*, tenant: Tenant, public_id: str) -> Conversation:
    """Return ``tenant``'s conversation ``public_id``.

    Raise ``NotFound`` for an unknown id and for another tenant's conversation alike, so
    that a caller cannot learn which ids exist.
    """
    # NOTE: the unique index is on public_id alone, so another tenant's id reads one more
    # table row than an unknown id. That timing difference is not hidden, and it can only
    # confirm an id that the caller already holds, because ids carry 128 random bits.
    conversation = (
        Conversation.objects.select_related("tenant")
        .filter(tenant=tenant, public_id=public_id)
        .first()
    )
    if conversation is None:
        raise NotFound("Conversation not found.")
    return conversation


def conversation_messages_page(
    *, conversation: Conversation, limit: int = MESSAGES_PAGE_DEFAULT, before: str | None = None
) -> MessagePage:
    """Return the latest ``limit`` messages of ``conversation`` older than message ``before``.

    Raise ``InvalidInput`` when ``before`` is not a message of this conversation.
    """
    messages = Message.objects.filter(conversation=conversation)
    if before is not None:
        anchor = messages.filter(public_id=before).first()
        if anchor is None:
            raise InvalidInput(
                "Invalid message id.",
                fields={"before": ["No message with this id in this conversation."]},
            )
        messages = messages.filter(
            Q(created_at__lt=anchor.created_at) | Q(created_at=anchor.created_at, pk__lt=anchor.pk)
        )
    latest = list(messages.order_by("-created_at", "-pk")[: limit + 1])
    return MessagePage(messages=list(reversed(latest[:limit])), has_more=len(latest) > limit)


# Conversations in one response of the shopper data export, unless ``limit`` sets another number.
SHOPPER_CONVERSATIONS_PAGE_DEFAULT = 20
SHOPPER_CONVERSATIONS_PAGE_MAX = 100
# Messages in one response of the shopper data export, summed over its conversations. A
# page stops before the conversation that would pass it, so that a shopper with long
# conversations gets fewer conversations per page. The number is a choice of this project.
SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES = 2000


@dataclass(frozen=True)
class ShopperConversationsPage:
    """Conversations of one shopper, newest first, each with all of its messages.

    ``has_more`` is true when older conversations exist, also when the page holds fewer
    than ``limit`` conversations because of ``SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES``.
    Pass the last conversation's id as ``before`` to read them.
    """

    conversations: list[Conversation]
    messages: dict[int, list[Message]]
    has_more: bool


def shopper_conversations_page(
    *,
    tenant: Tenant,
    user_id: str,
    limit: int = SHOPPER_CONVERSATIONS_PAGE_DEFAULT,
    before: str | None = None,
) -> ShopperConversationsPage:
    """Return the latest ``limit`` conversations of ``tenant``'s shopper ``user_id``.

    The page ends early when its conversations would have more than
    ``SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES`` messages together, but it always has the
    first conversation. Raise ``NotFound`` when ``before`` is not a conversation of this
    shopper.
    """
    conversations = Conversation.objects.select_related("tenant").filter(
        tenant=tenant, user_id=user_id
    )
    if before is not None:
        anchor = conversations.filter(public_id=before).first()
        if anchor is None:
            raise NotFound("Conversation not found.")
        conversations = conversations.filter(
            Q(created_at__lt=anchor.created_at) | Q(created_at=anchor.created_at, pk__lt=anchor.pk)
        )
    latest = list(conversations.order_by("-created_at", "-pk")[: limit + 1])
    page = _within_message_budget(latest[:limit])
    messages: dict[int, list[Message]] = {conversation.pk: [] for conversation in page}
    for message in Message.objects.filter(conversation__in=page).order_by(
        "conversation_id", "created_at", "pk"
    ):
        messages[message.conversation_id].append(message)
    return ShopperConversationsPage(
        conversations=page, messages=messages, has_more=len(latest) > len(page)
    )


def _within_message_budget(conversations: list[Conversation]) -> list[Conversation]:
    """Return the leading ``conversations`` whose messages fit the export's page bound.

    The first conversation is always kept.
    """
    counts = dict(
        Message.objects.filter(conversation__in=conversations)
        .order_by()
        .values("conversation_id")
        .annotate(count=Count("pk"))
        .values_list("conversation_id", "count")
    )
    kept: list[Conversation] = []
    total = 0
    for conversation in conversations:
        total += counts.get(conversation.pk, 0)
        if kept and total > SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES:
            break
        kept.append(conversation)
    # NOTE: a single conversation is returned whole, so a conversation with more messages
    # than the bound makes a larger response.
    return kept


# Days in the token usage report, unless ``days`` sets another number.
TOKEN_USAGE_DAYS_DEFAULT = 30
TOKEN_USAGE_DAYS_MAX = 366


@dataclass(frozen=True)
class TokenUsageDay:
    """LLM tokens that a tenant used on one UTC day, with zeros on a day without model calls."""

    date: date
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TokenUsagePeriod:
    """A tenant's token usage of today or of this month, measured against one budget.

    ``reserved_tokens`` are the reservations that the budget's check counts, and
    ``remaining_tokens`` is the budget less the used and reserved tokens, at least 0, or
    None when the budget is 0 (no limit).
    """

    start: date
    prompt_tokens: int
    completion_tokens: int
    requests: int
    reserved_tokens: int
    token_limit: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def remaining_tokens(self) -> int | None:
        if not self.token_limit:
            return None
        return max(0, self.token_limit - self.total_tokens - self.reserved_tokens)


@dataclass(frozen=True)
class TokenUsageReport:
    """A tenant's token budgets, its usage of today and this month, and its recent days."""

    daily_token_limit: int
    monthly_token_limit: int
    today: TokenUsagePeriod
    month: TokenUsagePeriod
    days: list[TokenUsageDay]


def token_usage_report(
    *,
    tenant: Tenant,
    assistant_settings: AssistantSettings,
    days: int = TOKEN_USAGE_DAYS_DEFAULT,
    today: date | None = None,
) -> TokenUsageReport:
    """Return ``tenant``'s token usage of ``today`` (UTC), of its month and of ``days`` days.

    ``days`` lists every day from ``today`` back, newest first, with zeros where the tenant
    has no row. The reserved tokens are counted as ``conversations.usage`` counts them
    against the budgets: the daily budget counts today's reservations, and the monthly one
    also those of yesterday when yesterday is in the same month. Older reservations were
    left by processes that died during a call, so they are not counted.
    """
    today = today or utc_today()
    month_start = today.replace(day=1)
    first_day = today - timedelta(days=days - 1)
    rows = {
        row.date: row
        for row in TokenUsage.objects.filter(
            tenant=tenant, date__gte=min(month_start, first_day), date__lte=today
        )
    }

    month_rows = [row for day, row in rows.items() if day >= month_start]
    reserved_days = {today, first_reserved_day(day=today)}
    today_usage = _usage_day(rows, today)
    today_row = rows.get(today)
    return TokenUsageReport(
        daily_token_limit=assistant_settings.daily_token_limit,
        monthly_token_limit=assistant_settings.monthly_token_limit,
        today=TokenUsagePeriod(
            start=today,
            prompt_tokens=today_usage.prompt_tokens,
            completion_tokens=today_usage.completion_tokens,
            requests=today_usage.requests,
            reserved_tokens=today_row.reserved_tokens if today_row else 0,
            token_limit=assistant_settings.daily_token_limit,
        ),
        month=TokenUsagePeriod(
            start=month_start,
            prompt_tokens=sum(row.prompt_tokens for row in month_rows),
            completion_tokens=sum(row.completion_tokens for row in month_rows),
            requests=sum(row.requests for row in month_rows),
            reserved_tokens=sum(
                row.reserved_tokens for row in month_rows if row.date in reserved_days
            ),
            token_limit=assistant_settings.monthly_token_limit,
        ),
        days=[_usage_day(rows, today - timedelta(days=offset)) for offset in range(days)],
    )


def _usage_day(rows: dict[date, TokenUsage], day: date) -> TokenUsageDay:
    row = rows.get(day)
    if row is None:
        return TokenUsageDay(date=day)
    return TokenUsageDay(
        date=day,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        requests=row.requests,
    )
