"""Per-conversation rate limit and per-user daily limits of shopper messages.

The limits are checked in this order, and the first rejection wins:

1. the rate limit: at most ``rate_limit_messages`` shopper messages in any
   ``rate_limit_window_seconds`` of one conversation (``rate_limit_exceeded`` with
   ``retry_after``). The REST API has no connection, so the conversation takes its place;
2. the daily limits of the conversation's limit identity (``user_message_limit``,
   ``user_conversation_limit``), counted per UTC day in ``UserDailyUsage``;
3. the tenant's token budgets, which the LLM agent checks before every model call
   (``conversations.usage``).

A limit of 0 means no limit. Every check reads or writes PostgreSQL, so all processes
share the counts.
"""

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from conversations.models import Conversation, Message, UserDailyUsage
from tenants.models import AssistantSettings, Tenant
from vizochok.exceptions import ErrorCode, LimitExceeded

MESSAGES = "messages"
CONVERSATIONS = "conversations"


@dataclass(frozen=True)
class Limits:
    """The limit settings of one tenant; each 0 means no limit."""

    rate_limit_messages: int = 10
    rate_limit_window_seconds: int = 60
    user_daily_message_limit: int = 200
    user_daily_conversation_limit: int = 20

    @classmethod
    def for_tenant(cls, tenant: Tenant) -> "Limits":
        """Return ``tenant``'s limits, or the defaults when it has no assistant settings."""
        row = AssistantSettings.objects.filter(tenant=tenant).first()
        if row is None:
            return cls()
        return cls(
            rate_limit_messages=row.rate_limit_messages,
            rate_limit_window_seconds=row.rate_limit_window_seconds,
            user_daily_message_limit=row.user_daily_message_limit,
            user_daily_conversation_limit=row.user_daily_conversation_limit,
        )


def message_limits_take(*, conversation: Conversation, now: datetime | None = None) -> date:
    """Check the limits of a new shopper message and count it; raise ``LimitExceeded``.

    Return the UTC day whose daily message count was taken, for ``message_count_return``.
    A rejected message is not counted. The caller holds the conversation's turn lease, so
    no other message of this conversation is saved between the check and the turn.
    """
    now = now or timezone.now()
    limits = Limits.for_tenant(conversation.tenant)
    message_rate_check(
        conversation=conversation,
        max_messages=limits.rate_limit_messages,
        window_seconds=limits.rate_limit_window_seconds,
        now=now,
    )
    taken = user_daily_count_take(
        tenant=conversation.tenant,
        identity=conversation_limit_identity(conversation),
        counter=MESSAGES,
        limit=limits.user_daily_message_limit,
        day=now.date(),
    )
    if not taken:
        raise _daily_limit_exceeded(
            ErrorCode.USER_MESSAGE_LIMIT,
            f"This user sent the maximum of {limits.user_daily_message_limit} messages for "
            "today (UTC).",
            limit=limits.user_daily_message_limit,
            now=now,
        )
    return now.date()


def message_count_return(*, conversation: Conversation, day: date) -> None:
    """Take back the daily message count of a message that was counted but never stored.

    The rate limit counts stored messages, so it needs no correction.
    """
    UserDailyUsage.objects.filter(
        tenant=conversation.tenant,
        identity=conversation_limit_identity(conversation),
        date=day,
        messages__gt=0,
    ).update(messages=F("messages") - 1)


def conversation_limit_take(*, tenant: Tenant, identity: str, now: datetime | None = None) -> None:
    """Check and count a new conversation of ``identity``; raise ``LimitExceeded``."""
    now = now or timezone.now()
    limit = Limits.for_tenant(tenant).user_daily_conversation_limit
    taken = user_daily_count_take(
        tenant=tenant, identity=identity, counter=CONVERSATIONS, limit=limit, day=now.date()
    )
    if not taken:
        raise _daily_limit_exceeded(
            ErrorCode.USER_CONVERSATION_LIMIT,
            f"This user started the maximum of {limit} conversations for today (UTC).",
            limit=limit,
            now=now,
        )


def message_rate_check(
    *, conversation: Conversation, max_messages: int, window_seconds: int, now: datetime
) -> None:
    """Raise ``rate_limit_exceeded`` if the conversation's window already contains the maximum.

    ``retry_after`` is the seconds until the oldest message that counts leaves the window,
    rounded up, so that a retry after it is accepted.
    """
    if not max_messages:
        return
    window = timedelta(seconds=window_seconds)
    recent = list(
        Message.objects.filter(
            conversation=conversation, role=Message.Role.USER, created_at__gt=now - window
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:max_messages]
    )
    if len(recent) < max_messages:
        return
    leaves_window_at = recent[-1] + window
    retry_after = max(1, math.ceil((leaves_window_at - now).total_seconds()))
    raise LimitExceeded(
        f"Too many messages: at most {max_messages} in {window_seconds} seconds; retry "
        f"in {retry_after} seconds.",
        code=ErrorCode.RATE_LIMIT_EXCEEDED,
        extra={
            "retry_after": retry_after,
            "limit": max_messages,
            "window_seconds": window_seconds,
        },
    )


def user_daily_count_take(
    *, tenant: Tenant, identity: str, counter: str, limit: int, day: date
) -> bool:
    """Add 1 to ``counter`` of ``identity``'s row of ``day`` unless it reached ``limit``.

    Return False, and change nothing, when the count already is ``limit`` or more. A limit
    of 0 means no limit: the count still grows, so that raising a limit later is informed.
    """
    rows = UserDailyUsage.objects.filter(tenant=tenant, identity=identity, date=day)
    below_limit = rows.filter(**{f"{counter}__lt": limit}) if limit else rows
    if below_limit.update(**{counter: F(counter) + 1}):
        return True
    if rows.exists():
        return False
    try:
        with transaction.atomic():
            UserDailyUsage.objects.create(
                tenant=tenant, identity=identity, date=day, **{counter: 1}
            )
    except IntegrityError:
        # Another process created the row between the update and the insert.
        return below_limit.update(**{counter: F(counter) + 1}) == 1
    return True


def conversation_limit_identity(conversation: Conversation) -> str:
    """Return what the per-user limits count ``conversation``'s messages by."""
    if conversation.limit_identity:
        return conversation.limit_identity
    # Conversations created before limit identities were stored.
    if conversation.user_id:
        return f"user:{conversation.user_id}"
    return f"session:{conversation.session_id}"


def _daily_limit_exceeded(
    code: ErrorCode, detail: str, *, limit: int, now: datetime
) -> LimitExceeded:
    next_midnight = datetime.combine(now.date() + timedelta(days=1), time.min, tzinfo=now.tzinfo)
    return LimitExceeded(
        f"{detail} The count resets at midnight UTC.",
        code=code,
        extra={"limit": limit, "resets_at": next_midnight.isoformat()},
    )
