"""Circuit breaker per tenant and webhook kind, shared by all workers through PostgreSQL.

The breaker opens when, within the last ``WEBHOOK_BREAKER_WINDOW_SECONDS``, at least
``WEBHOOK_BREAKER_MIN_FAILURES`` requests failed and the failures were at least
``WEBHOOK_BREAKER_FAILURE_RATIO`` of all requests. Each attempt counts, so a retried call
counts twice. While open, calls fail at once without a request. After
``WEBHOOK_BREAKER_COOLDOWN_SECONDS`` exactly one caller is let through as a probe (half-open):
a successful probe closes the breaker and a failed one opens it for another cool-down.

Cost on the hot path: one indexed read of the ``CircuitBreaker`` row before each call.
A success in the closed state writes nothing. Only a failure counts the window, with one
aggregate over ``WebhookDelivery`` rows (index ``delivery_tenant_kind_idx``). State changes
are conditional ``UPDATE``s, so concurrent workers cannot both claim the probe or both
open the breaker.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db.models import Count, F, Q
from django.utils import timezone

from webhooks.models import CircuitBreaker, WebhookDelivery, WebhookKind

logger = logging.getLogger(__name__)

# A probe that has not reported back after its timeout plus this margin is taken as lost
# (its worker died), and the next caller may probe instead.
PROBE_LEASE_MARGIN = timedelta(seconds=10)

# Outcomes of requests that reached the merchant or tried to. Blocked URLs and calls the
# breaker stopped sent nothing, so they count neither as calls nor as failures.
_COUNTED_OUTCOMES = [
    WebhookDelivery.Outcome.SUCCESS,
    WebhookDelivery.Outcome.TIMEOUT,
    WebhookDelivery.Outcome.HTTP_ERROR,
    WebhookDelivery.Outcome.INVALID_RESPONSE,
    WebhookDelivery.Outcome.CONNECTION_ERROR,
]


class Admission(StrEnum):
    """Permission that the breaker gives one call."""

    # The breaker is closed or disabled: a normal call with its retry.
    CALL = "call"
    # The cool-down is over and this caller claimed the single probe: one attempt, no retry.
    PROBE = "probe"
    # The breaker is open, or another caller is probing: send nothing.
    REJECT = "reject"


@dataclass(frozen=True)
class BreakerTicket:
    """The admission of one call, handed back to ``breaker_record`` when the call ends."""

    tenant_id: int
    kind: WebhookKind
    admission: Admission
    retry_at: datetime | None = None
    # The ``probe_started_at`` that this probe wrote when it claimed the breaker. Its result
    # counts only while the row still holds this value, so a probe taken over after its lease
    # cannot close or reopen the breaker under the probe that replaced it.
    probe_started_at: datetime | None = None

    @property
    def rejected(self) -> bool:
        return self.admission == Admission.REJECT


@dataclass(frozen=True)
class BreakerConfig:
    enabled: bool
    window: timedelta
    min_failures: int
    failure_ratio: float
    cooldown: timedelta

    @classmethod
    def from_settings(cls) -> "BreakerConfig":
        return cls(
            enabled=settings.WEBHOOK_BREAKER_ENABLED,
            window=timedelta(seconds=settings.WEBHOOK_BREAKER_WINDOW_SECONDS),
            min_failures=settings.WEBHOOK_BREAKER_MIN_FAILURES,
            failure_ratio=settings.WEBHOOK_BREAKER_FAILURE_RATIO,
            cooldown=timedelta(seconds=settings.WEBHOOK_BREAKER_COOLDOWN_SECONDS),
        )


def breaker_admit(*, tenant_id: int, kind: WebhookKind, timeout_seconds: float) -> BreakerTicket:
    """Decide whether a call may send a request, claiming the probe when one is due."""
    if not settings.WEBHOOK_BREAKER_ENABLED:
        return BreakerTicket(tenant_id=tenant_id, kind=kind, admission=Admission.CALL)
    row = (
        CircuitBreaker.objects.filter(tenant_id=tenant_id, kind=kind)
        .values("pk", "state", "retry_at", "probe_started_at")
        .first()
    )
    if row is None or row["state"] == CircuitBreaker.State.CLOSED:
        return BreakerTicket(tenant_id=tenant_id, kind=kind, admission=Admission.CALL)

    now = timezone.now()
    rejected = BreakerTicket(
        tenant_id=tenant_id, kind=kind, admission=Admission.REJECT, retry_at=row["retry_at"]
    )
    if row["state"] == CircuitBreaker.State.OPEN:
        if row["retry_at"] is not None and row["retry_at"] > now:
            return rejected
        # PostgreSQL re-checks the WHERE clause after a concurrent update of the row, so
        # exactly one of the callers that race here changes it and becomes the probe.
        claimed = CircuitBreaker.objects.filter(
            pk=row["pk"], state=CircuitBreaker.State.OPEN, retry_at=row["retry_at"]
        ).update(state=CircuitBreaker.State.HALF_OPEN, probe_started_at=now)
    else:
        lease = timedelta(seconds=timeout_seconds) + PROBE_LEASE_MARGIN
        probe_started_at = row["probe_started_at"]
        if probe_started_at is not None and probe_started_at > now - lease:
            return rejected
        claimed = CircuitBreaker.objects.filter(
            pk=row["pk"],
            state=CircuitBreaker.State.HALF_OPEN,
            probe_started_at=probe_started_at,
        ).update(probe_started_at=now)
    if not claimed:
        return rejected
    logger.info("webhooks.breaker.probing", extra={"tenant_id": tenant_id, "kind": str(kind)})
    return BreakerTicket(
        tenant_id=tenant_id, kind=kind, admission=Admission.PROBE, probe_started_at=now
    )


def breaker_record(*, ticket: BreakerTicket, success: bool) -> None:
    """Update the breaker after a call that sent at least one request."""
    if not settings.WEBHOOK_BREAKER_ENABLED:
        return
    if ticket.admission == Admission.PROBE:
        _finish_probe(ticket, success=success)
    elif ticket.admission == Admission.CALL and not success:
        _count_failure(ticket)


def breaker_reset(*, tenant_id: int, kind: WebhookKind) -> bool:
    """Close an open or half-open breaker by hand; return whether it was not closed."""
    now = timezone.now()
    changed = (
        CircuitBreaker.objects.filter(tenant_id=tenant_id, kind=kind)
        .exclude(state=CircuitBreaker.State.CLOSED)
        .update(
            state=CircuitBreaker.State.CLOSED,
            counting_since=now,
            retry_at=None,
            probe_started_at=None,
        )
    )
    if changed:
        logger.info("webhooks.breaker.reset", extra={"tenant_id": tenant_id, "kind": str(kind)})
    return bool(changed)


def _finish_probe(ticket: BreakerTicket, *, success: bool) -> None:
    now = timezone.now()
    # Only the breaker's current probe may change it. A probe that outlived its lease was
    # replaced by a later one (or the breaker was reset), and the row no longer matches.
    current_probe = CircuitBreaker.objects.filter(
        tenant_id=ticket.tenant_id,
        kind=ticket.kind,
        state=CircuitBreaker.State.HALF_OPEN,
        probe_started_at=ticket.probe_started_at,
    )
    log_fields = {"tenant_id": ticket.tenant_id, "kind": str(ticket.kind)}
    config = BreakerConfig.from_settings()
    if success:
        changed = current_probe.update(
            state=CircuitBreaker.State.CLOSED,
            counting_since=now,
            retry_at=None,
            probe_started_at=None,
        )
    else:
        changed = current_probe.update(
            state=CircuitBreaker.State.OPEN,
            opened_at=now,
            retry_at=now + config.cooldown,
            probe_started_at=None,
            times_opened=F("times_opened") + 1,
        )
    if not changed:
        logger.info(
            "webhooks.breaker.late_probe_ignored",
            extra={**log_fields, "success": success, "probe_started_at": ticket.probe_started_at},
        )
    elif success:
        logger.info("webhooks.breaker.closed", extra=log_fields)
    else:
        logger.warning(
            "webhooks.breaker.reopened",
            extra={**log_fields, "cooldown_seconds": config.cooldown.total_seconds()},
        )


def _count_failure(ticket: BreakerTicket) -> None:
    config = BreakerConfig.from_settings()
    now = timezone.now()
    row = (
        CircuitBreaker.objects.filter(tenant_id=ticket.tenant_id, kind=ticket.kind)
        .values("state", "counting_since")
        .first()
    )
    if row is not None and row["state"] != CircuitBreaker.State.CLOSED:
        # A call admitted before the breaker opened has finished late, so it changes nothing.
        return
    since = now - config.window
    if row is not None and row["counting_since"] is not None:
        since = max(since, row["counting_since"])
    counts = WebhookDelivery.objects.filter(
        tenant_id=ticket.tenant_id,
        kind=ticket.kind,
        created_at__gte=since,
        outcome__in=_COUNTED_OUTCOMES,
        is_test=False,
    ).aggregate(
        total=Count("pk"), failures=Count("pk", filter=~Q(outcome=WebhookDelivery.Outcome.SUCCESS))
    )
    failures, total = counts["failures"], counts["total"]
    if failures < config.min_failures or failures < config.failure_ratio * total:
        return
    _open(ticket, config=config, now=now, failures=failures, total=total)


def _open(
    ticket: BreakerTicket, *, config: BreakerConfig, now: datetime, failures: int, total: int
) -> None:
    breaker, _ = CircuitBreaker.objects.get_or_create(tenant_id=ticket.tenant_id, kind=ticket.kind)
    opened = CircuitBreaker.objects.filter(pk=breaker.pk, state=CircuitBreaker.State.CLOSED).update(
        state=CircuitBreaker.State.OPEN,
        opened_at=now,
        retry_at=now + config.cooldown,
        probe_started_at=None,
        times_opened=F("times_opened") + 1,
    )
    if opened:
        logger.warning(
            "webhooks.breaker.opened",
            extra={
                "tenant_id": ticket.tenant_id,
                "kind": str(ticket.kind),
                "failures": failures,
                "requests": total,
                "cooldown_seconds": config.cooldown.total_seconds(),
            },
        )
