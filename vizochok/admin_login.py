"""A limit on failed logins to the Django admin, per user name and per client network.

Every attempt with a user name and a password counts against two keys before the password
is checked: the user name's and the client network's. One window, which starts with the
first attempt and lasts ``ADMIN_LOGIN_WINDOW_SECONDS``, admits ``ADMIN_LOGIN_MAX_FAILURES``
attempts per key. A further attempt for either key is rejected, without a password check,
until that key's window ends. A successful login deletes the user name's
count and takes its own attempt back from the network's count, so only failures remain
counted. Counting before the check, in one transaction that locks both rows, keeps parallel
requests from testing more than ``ADMIN_LOGIN_MAX_FAILURES`` passwords per window.

The counts live in PostgreSQL (``LoginFailureCount``), so every server process shares them.
The keys are HMACs, keyed with a key derived from ``SECRET_KEY``, of the user name and of
``client_network(address)``, so neither a user name nor an address is stored. Rows whose
window has ended are deleted at the next attempt of any client.
"""

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import salted_hmac

from conversations.client_address import (
    ConnectionAddresses,
    client_address_resolve,
    client_network,
)
from vizochok.models import LoginFailureCount

logger = logging.getLogger(__name__)

LOGIN_KEY_SALT = "vizochok.admin_login"

_COUNT_ATTEMPT_SQL = f"""
INSERT INTO {LoginFailureCount._meta.db_table} AS counted (key, failures, window_started_at)
VALUES (%(key)s, 1, %(now)s)
ON CONFLICT (key) DO UPDATE SET
    failures = CASE WHEN counted.window_started_at <= %(expired_before)s
        THEN 1 ELSE counted.failures + 1 END,
    window_started_at = CASE WHEN counted.window_started_at <= %(expired_before)s
        THEN %(now)s ELSE counted.window_started_at END
RETURNING failures, window_started_at
"""

# Rows that a running attempt has locked are skipped, because that attempt starts a new
# window in them, or else the next pruning deletes them.
_PRUNE_SQL = f"""
DELETE FROM {LoginFailureCount._meta.db_table} WHERE id IN (
    SELECT id FROM {LoginFailureCount._meta.db_table}
    WHERE window_started_at <= %(expired_before)s
    FOR UPDATE SKIP LOCKED
)
"""


class AdminLoginThrottled(Exception):
    """Too many failed logins for the user name or from the client network."""

    def __init__(self, *, retry_at: datetime) -> None:
        super().__init__(f"Admin logins are rejected until {retry_at.isoformat()}.")
        self.retry_at = retry_at


@dataclass(frozen=True)
class LoginAttempt:
    """The keys that one admin login attempt was counted against."""

    user_key: str
    address_key: str | None


def user_name_key(user_name: str) -> str:
    """Return ``user:<hex>``, the key under which the failures of ``user_name`` count."""
    digest = salted_hmac(LOGIN_KEY_SALT, f"user/{user_name}", algorithm="sha256").hexdigest()
    return f"user:{digest}"


def client_address_key(addresses: ConnectionAddresses) -> str | None:
    """Return ``address:<hex>`` for the client's network, or None without a client address.

    The address comes from ``client_address_resolve`` with ``TRUSTED_PROXY_COUNT``, as for
    the shoppers' limits, and an IPv6 address counts by its /64 prefix.
    """
    resolved = client_address_resolve(
        addresses=addresses, trusted_proxies=settings.TRUSTED_PROXY_COUNT
    )
    if resolved.fallback is not None:
        logger.warning(
            "vizochok.admin_login.client_address_fallback",
            extra={
                "reason": resolved.fallback.value,
                "trusted_proxies": settings.TRUSTED_PROXY_COUNT,
                "forwarded_addresses": resolved.forwarded_count,
                "counted_by": "peer" if resolved.address is not None else "user_name",
            },
        )
    if resolved.address is None:
        # NOTE: without a client address (a Unix socket and no proxy count) the attempt
        # counts by the user name only.
        return None
    network = client_network(resolved.address)
    digest = salted_hmac(LOGIN_KEY_SALT, f"address/{network}", algorithm="sha256").hexdigest()
    return f"address:{digest}"


def admin_login_attempt_start(*, user_name: str, addresses: ConnectionAddresses) -> LoginAttempt:
    """Count an attempt against the user name and the client network, before its check.

    Raise ``AdminLoginThrottled`` when either key has used up its attempts of the window.
    A rejected attempt is not counted, so it does not extend the window.
    """
    window = timedelta(seconds=settings.ADMIN_LOGIN_WINDOW_SECONDS)
    now = timezone.now()
    login_failures_prune(expired_before=now - window)
    attempt = LoginAttempt(
        user_key=user_name_key(user_name), address_key=client_address_key(addresses)
    )
    keys = sorted(key for key in (attempt.user_key, attempt.address_key) if key is not None)
    limited_by: list[str] = []
    retry_at = now
    try:
        # The rows stay locked until the transaction ends, so parallel attempts for the
        # same key count one after another. Locking in key order prevents deadlocks.
        with transaction.atomic():
            for key in keys:
                failures, window_started_at = _attempt_count(
                    key=key, now=now, expired_before=now - window
                )
                if failures > settings.ADMIN_LOGIN_MAX_FAILURES:
                    limited_by.append(key.partition(":")[0])
                    retry_at = max(retry_at, window_started_at + window)
            if limited_by:
                raise AdminLoginThrottled(retry_at=retry_at)
    except AdminLoginThrottled:
        logger.warning(
            "vizochok.admin_login.rejected",
            extra={
                "limited_by": ",".join(sorted(limited_by)),
                "retry_at": retry_at.isoformat(),
                "max_failures": settings.ADMIN_LOGIN_MAX_FAILURES,
                "window_seconds": settings.ADMIN_LOGIN_WINDOW_SECONDS,
            },
        )
        raise
    return attempt


def admin_login_succeeded(*, attempt: LoginAttempt) -> None:
    """Delete the user name's count and take the attempt back from the network's count."""
    with transaction.atomic():
        LoginFailureCount.objects.filter(key=attempt.user_key).delete()
        if attempt.address_key is not None:
            LoginFailureCount.objects.filter(key=attempt.address_key, failures__gt=0).update(
                failures=F("failures") - 1
            )


def login_failures_prune(*, expired_before: datetime) -> int:
    """Delete the counts whose window started at or before ``expired_before``."""
    with connection.cursor() as cursor:
        cursor.execute(_PRUNE_SQL, {"expired_before": expired_before})
        return cursor.rowcount


def retry_time_text(retry_at: datetime) -> str:
    """Return ``retry_at`` in UTC to the second, rounded up, as ``2026-05-01 14:05:30 UTC``."""
    rounded = datetime.fromtimestamp(math.ceil(retry_at.timestamp()), tz=UTC)
    return f"{rounded:%Y-%m-%d %H:%M:%S} UTC"


def _attempt_count(*, key: str, now: datetime, expired_before: datetime) -> tuple[int, datetime]:
    with connection.cursor() as cursor:
        cursor.execute(
            _COUNT_ATTEMPT_SQL, {"key": key, "now": now, "expired_before": expired_before}
        )
        failures, window_started_at = cursor.fetchone()
    return failures, window_started_at
