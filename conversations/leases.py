"""A lease on a conversation row, so that one conversation runs one turn at a time.

The lease is the ``turn_started_at`` column. It is taken with one conditional UPDATE, which
PostgreSQL applies atomically, so two workers in different processes cannot both take it. A
lease older than ``lease_duration()`` counts as abandoned (a crashed worker) and may be taken
over. Every write a turn makes to the conversation row goes through ``TurnLease.save``, which
writes only while the lease is still held.

Lease operations must run in autocommit mode, outside ``transaction.atomic``, because other
processes see the lease only once its UPDATE is committed.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from conversations.models import Conversation
from tenants.models import MAX_WEBHOOK_TIMEOUT_SECONDS
from vizochok.exceptions import InternalError, NotFound

logger = logging.getLogger(__name__)

# A lease lasts longer than the slowest turn, because a lease taken over from a live turn
# makes that turn fail with LeaseLost in the middle of its cart changes. A webhook call takes
# at most 61 s by default: 2 attempts of the maximum tenant timeout of 30 s plus
# WEBHOOK_RETRY_DELAY_SECONDS (1 s). The LLM agent's turn is cut at
# AGENT_TURN_TIMEOUT_SECONDS (120 s by default) but may overrun by one webhook call and
# follows a cart GET: 242 s by default. An offline turn makes at most four calls (cart GET,
# search, cart change, search for alternatives): 244 s. A new message after a stopped worker
# therefore waits up to this long; it then gets the interrupted reply.
# The two attempts of one webhook call at the longest tenant timeout.
WEBHOOK_ATTEMPTS = 2 * timedelta(seconds=MAX_WEBHOOK_TIMEOUT_SECONDS)
MIN_LEASE_DURATION = timedelta(minutes=5)
# Added to the agent's longest turn: the margin that 5 minutes leave over the default 242 s.
LEASE_MARGIN = timedelta(seconds=58)


def lease_duration() -> timedelta:
    """Return how long a lease lasts: 5 minutes, or longer for longer turns or retry delays."""
    webhook_call = WEBHOOK_ATTEMPTS + timedelta(seconds=settings.WEBHOOK_RETRY_DELAY_SECONDS)
    agent_turn = timedelta(seconds=settings.AGENT_TURN_TIMEOUT_SECONDS) + 2 * webhook_call
    return max(MIN_LEASE_DURATION, agent_turn + LEASE_MARGIN)


class LeaseLost(InternalError):
    """The lease expired and another worker took the conversation over."""

    default_detail = "The conversation was taken over by another worker."


@dataclass(frozen=True)
class TurnLease:
    conversation_pk: int
    started_at: datetime

    def save(self, conversation: Conversation, fields: Sequence[str]) -> None:
        """Write ``fields`` of ``conversation``; raise ``LeaseLost`` if the lease is gone."""
        values = {name: getattr(conversation, name) for name in fields}
        updated = self._held().update(**values, updated_at=timezone.now())
        if updated != 1:
            logger.error(
                "conversations.lease.lost",
                extra={"conversation_id": conversation.public_id, "fields": list(fields)},
            )
            raise LeaseLost()

    def release(self) -> bool:
        """Release the lease. Return False when it was no longer held, and nothing changed."""
        return self._held().update(turn_started_at=None) == 1

    def _held(self) -> QuerySet[Conversation]:
        return Conversation.objects.filter(pk=self.conversation_pk, turn_started_at=self.started_at)


def turn_lease_acquire(*, conversation: Conversation) -> TurnLease | None:
    """Take the lease on ``conversation``, or return None while another turn holds it.

    Raise ``NotFound`` when the conversation was deleted (erased or pruned) after the
    caller read it, so that the shopper gets the same 404 as a request made a moment later.
    """
    now = timezone.now()
    free = Q(turn_started_at__isnull=True) | Q(turn_started_at__lt=now - lease_duration())
    taken = Conversation.objects.filter(free, pk=conversation.pk).update(turn_started_at=now) == 1
    if not taken:
        if not Conversation.objects.filter(pk=conversation.pk).exists():
            raise NotFound("Conversation not found.")
        return None
    conversation.turn_started_at = now
    return TurnLease(conversation_pk=conversation.pk, started_at=now)


def turn_in_progress(*, now: datetime) -> Q:
    """Return the filter of conversations whose lease a turn holds at ``now``.

    An expired lease is left by a stopped worker, so its conversation has no turn running.
    """
    return Q(turn_started_at__gte=now - lease_duration())
