"""Deletion of shoppers' conversations: after the retention period, or on request.

Conversations contain the shopper's messages, user id and cart, which are personal data.
``conversations_prune`` deletes the conversations that have been idle for longer than the
retention period, and ``shopper_data_erase`` and ``conversation_erase`` delete one
shopper's data on the merchant's request, through the admin API or ``erase_shopper``. None
of them deletes a conversation while a turn holds its lease (see ``conversations.leases``).
"""

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from conversations.identity import ANONYMOUS_SESSION_PREFIX
from conversations.leases import turn_in_progress
from conversations.models import Conversation, Message, UserDailyUsage
from tenants.models import Tenant
from vizochok.exceptions import Conflict, ErrorCode, InvalidInput, NotFound
from vizochok.text import is_storable_text

logger = logging.getLogger(__name__)

# Conversations deleted per transaction, so that a large pruning holds its row locks briefly.
PRUNE_BATCH_SIZE = 500
# The maximum length of a user id that the chat API accepts.
MAX_USER_ID_LENGTH = 200


@dataclass(frozen=True)
class DeletedCounts:
    """Rows deleted: conversations, their messages, and per-user daily usage rows."""

    conversations: int = 0
    messages: int = 0
    usage_rows: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def conversations_prune(*, older_than: timedelta, tenant: Tenant | None = None) -> DeletedCounts:
    """Delete the conversations whose last activity is more than ``older_than`` ago.

    The last activity is the later of ``updated_at``, which every completed turn sets, and
    the latest message, which is later when a worker stopped mid-turn. Conversations whose
    lease a turn holds are kept, and so are rows that another transaction has locked; the
    next run deletes those. Per-user daily usage rows of days before the cutoff go too.
    """
    now = timezone.now()
    cutoff = now - older_than
    recent_messages = Message.objects.filter(conversation=OuterRef("pk"), created_at__gte=cutoff)
    idle = (
        Conversation.objects.filter(updated_at__lt=cutoff)
        .exclude(turn_in_progress(now=now))
        .exclude(Exists(recent_messages))
    )
    usage = UserDailyUsage.objects.filter(date__lt=cutoff.date())
    if tenant is not None:
        idle = idle.filter(tenant=tenant)
        usage = usage.filter(tenant=tenant)
    conversations = messages = 0
    while True:
        with transaction.atomic():
            # The lock makes a turn that starts now wait for the delete and then find no
            # row. The filter is evaluated again on each locked row, so a conversation whose
            # turn started before the lock is skipped.
            batch = _unlocked_batch_lock(idle)
            if not batch:
                break
            batch_counts = _conversations_delete(Conversation.objects.filter(pk__in=batch))
        conversations += batch_counts.conversations
        messages += batch_counts.messages
    usage_rows = 0
    while True:
        with transaction.atomic():
            # Rows that an erasure has locked are skipped, so that the prune never waits for
            # an erasure; the erasure deletes those rows itself.
            usage_batch = _unlocked_batch_lock(usage)
            if not usage_batch:
                break
            deleted, _ = UserDailyUsage.objects.filter(pk__in=usage_batch).delete()
        usage_rows += deleted
    counts = DeletedCounts(conversations=conversations, messages=messages, usage_rows=usage_rows)
    logger.info(
        "conversations.pruned",
        extra={
            **counts.as_dict(),
            "last_activity_before": cutoff.isoformat(),
            "tenant_id": tenant.pk if tenant else None,
        },
    )
    return counts


def shopper_user_id_problem(user_id: str) -> str | None:
    """Return why no shopper can have ``user_id``, or None when one can.

    An empty id is a problem too, because the conversations of anonymous shoppers have an
    empty ``user_id``.
    """
    if not user_id:
        return "Must not be empty."
    if len(user_id) > MAX_USER_ID_LENGTH:
        return f"Ensure this field has no more than {MAX_USER_ID_LENGTH} characters."
    if user_id != user_id.strip():
        return "Must not start or end with whitespace."
    if "\x00" in user_id:
        # The chat API rejects such ids too, and PostgreSQL cannot compare text with a NUL.
        return "Null characters are not allowed."
    if not is_storable_text(user_id):
        # Command-line bytes that are not UTF-8 reach Python as unpaired surrogates.
        return "Must be valid UTF-8 text."
    if user_id.lower().startswith(ANONYMOUS_SESSION_PREFIX):
        return (
            f"User ids starting with {ANONYMOUS_SESSION_PREFIX!r} are reserved; delete an "
            "anonymous shopper's conversation by its id."
        )
    return None


def shopper_data_erase(*, tenant: Tenant, user_id: str) -> DeletedCounts:
    """Delete every conversation, message and daily usage row of ``tenant``'s shopper.

    Everything is deleted in one transaction. While a turn holds the lease of one of the
    shopper's conversations, ``agent_busy`` (409) is raised and nothing is deleted. A shopper
    without data gets zero counts. Raise ``InvalidInput`` for a ``user_id`` that
    ``shopper_user_id_problem`` rejects, before anything is read. The log line contains the
    counts, never the user id.
    """
    problem = shopper_user_id_problem(user_id)
    if problem is not None:
        raise InvalidInput("Invalid user id.", fields={"user_id": [problem]})
    with transaction.atomic():
        locked = _conversations_lock(Conversation.objects.filter(tenant=tenant, user_id=user_id))
        _reject_turn_in_progress(locked)
        counts = _conversations_delete(locked)
        # The limit identity of every conversation with a user id; see conversations.identity.
        usage = UserDailyUsage.objects.filter(tenant=tenant, identity=f"user:{user_id}")
        # Locked in primary key order, like every row lock of this module, so that two
        # erasures of one shopper wait for each other instead of deadlocking.
        usage_pks = list(usage.order_by("pk").select_for_update().values_list("pk", flat=True))
        usage_rows, _ = UserDailyUsage.objects.filter(pk__in=usage_pks).delete()
    counts = DeletedCounts(
        conversations=counts.conversations, messages=counts.messages, usage_rows=usage_rows
    )
    logger.info("conversations.shopper_erased", extra={"tenant_id": tenant.pk, **counts.as_dict()})
    return counts


def conversation_erase(*, tenant: Tenant, public_id: str) -> DeletedCounts:
    """Delete ``tenant``'s conversation ``public_id`` with its messages.

    Raise ``NotFound`` for an unknown id or another tenant's conversation, and
    ``agent_busy`` (409) while a turn holds its lease. Usage rows are kept, because an
    anonymous shopper's limits count by the API key, which every anonymous shopper shares.
    """
    with transaction.atomic():
        locked = _conversations_lock(
            Conversation.objects.filter(tenant=tenant, public_id=public_id)
        )
        if not locked.exists():
            raise NotFound("Conversation not found.")
        _reject_turn_in_progress(locked)
        counts = _conversations_delete(locked)
    logger.info(
        "conversations.conversation_erased",
        extra={"tenant_id": tenant.pk, "conversation_id": public_id, **counts.as_dict()},
    )
    return counts


def _unlocked_batch_lock(rows: QuerySet[Any]) -> list[int]:
    """Lock up to ``PRUNE_BATCH_SIZE`` of ``rows`` that no other transaction has locked.

    Return their primary keys, in order. Must run inside ``transaction.atomic``.
    """
    return list(
        rows.order_by("pk")
        .select_for_update(skip_locked=True)
        .values_list("pk", flat=True)[:PRUNE_BATCH_SIZE]
    )


def _conversations_lock(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Lock the rows of ``conversations`` and return a query set of exactly those rows.

    A turn takes its lease with an UPDATE of the row, which waits for the lock until the
    caller's transaction ends. The rows are locked in primary key order, so that two
    erasures of the same rows wait for each other instead of deadlocking. Must run inside
    ``transaction.atomic``.
    """
    pks = list(conversations.order_by("pk").select_for_update().values_list("pk", flat=True))
    return Conversation.objects.filter(pk__in=pks)


def _reject_turn_in_progress(conversations: QuerySet[Conversation]) -> None:
    """Raise ``agent_busy`` if a turn holds the lease of one of the locked ``conversations``."""
    if conversations.filter(turn_in_progress(now=timezone.now())).exists():
        raise Conflict(
            "A message of this shopper's conversation is being processed; retry when it is done.",
            code=ErrorCode.AGENT_BUSY,
        )


def _conversations_delete(conversations: QuerySet[Conversation]) -> DeletedCounts:
    pks = list(conversations.values_list("pk", flat=True))
    messages, _ = Message.objects.filter(conversation_id__in=pks).delete()
    _, deleted = Conversation.objects.filter(pk__in=pks).delete()
    return DeletedCounts(conversations=deleted.get(Conversation._meta.label, 0), messages=messages)
