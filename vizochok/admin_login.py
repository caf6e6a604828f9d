"""A limit on failed logins to the Django admin, per device cookie, user name and network.

Every attempt with a user name and a password counts before the password is checked. An
attempt that presents a valid device cookie for its user name counts against that cookie
only. Any other attempt counts against two keys: the user name's and the client
network's. One window, which starts with the first attempt and lasts
``ADMIN_LOGIN_WINDOW_SECONDS``, admits ``ADMIN_LOGIN_MAX_FAILURES`` attempts per key. A
further attempt for a key is rejected, without a password check, until that key's window
ends. A successful login deletes the count of its cookie, or else of its user name, and
takes its own attempt back from the network's count, so only failures remain counted.
Counting before the check, in one transaction that locks the rows, keeps parallel requests
from testing more than ``ADMIN_LOGIN_MAX_FAILURES`` passwords per key and window.

A device cookie is issued to the browser after each successful login. It is signed with a
key derived from ``SECRET_KEY`` and its own salt, names the user, carries a random id and
an HMAC of the user's password hash, and expires after
``ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS``. A new password therefore ends every older cookie
of the user. So failures of strangers, who count against the user name, do not lock out
an operator whose browser has a cookie, and a stolen cookie gets the same number of
guesses per window as a user name.

The counts live in PostgreSQL (``LoginFailureCount``), so every server process shares them.
The keys are HMACs, keyed with a key derived from ``SECRET_KEY``, of the user name, of
``client_network(address)`` and of the cookie's id, so neither a user name nor an address
is stored. Rows whose window has ended are deleted at the next attempt of any client.
"""

import logging
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from conversations.client_address import (
    ConnectionAddresses,
    client_address_resolve,
    client_network,
)
from vizochok.models import LoginFailureCount

logger = logging.getLogger(__name__)

LOGIN_KEY_SALT = "vizochok.admin_login"
DEVICE_COOKIE_NAME = "vizochok_admin_device"
DEVICE_COOKIE_SALT = "vizochok.admin_login.device_cookie"
DEVICE_PASSWORD_SALT = "vizochok.admin_login.device_cookie.password"

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


class InvalidDeviceCookie(Exception):
    """A device cookie that gives no attempts of its own, with the ``reason`` that is logged."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The admin device cookie is invalid: {reason}.")
        self.reason = reason


class AdminLoginThrottled(Exception):
    """Too many failed logins for the device cookie, the user name or the client network."""

    def __init__(self, *, retry_at: datetime) -> None:
        super().__init__(f"Admin logins are rejected until {retry_at.isoformat()}.")
        self.retry_at = retry_at


@dataclass(frozen=True)
class LoginAttempt:
    """The keys that one admin login attempt was counted against.

    An attempt with a valid device cookie has only ``device_key``; any other has
    ``user_key`` and, with a client address, ``address_key``.
    """

    user_key: str | None
    address_key: str | None
    device_key: str | None = None


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


def device_cookie_value(*, user: AbstractBaseUser) -> str:
    """Return a new signed device cookie value for ``user``, with a random id."""
    payload = {
        "user": user.get_username(),
        "id": secrets.token_urlsafe(16),
        "password_hmac": _password_hmac(user),
    }
    return signing.dumps(payload, salt=DEVICE_COOKIE_SALT)


def device_key(*, cookie: str | None, user_name: str) -> str | None:
    """Return ``device:<hex>`` when ``cookie`` is a valid device cookie of ``user_name``.

    Return None for a missing, forged or expired cookie, for one of another user name, and
    for one issued before the user's password last changed.
    """
    if not cookie:
        return None
    try:
        cookie_id = _device_cookie_id(cookie=cookie, user_name=user_name)
    except InvalidDeviceCookie as error:
        logger.info("vizochok.admin_login.device_cookie_rejected", extra={"reason": error.reason})
        return None
    digest = salted_hmac(LOGIN_KEY_SALT, f"device/{cookie_id}", algorithm="sha256")
    return f"device:{digest.hexdigest()}"


def admin_login_attempt_start(
    *, user_name: str, addresses: ConnectionAddresses, device: str | None = None
) -> LoginAttempt:
    """Count an attempt, before its check, against the device cookie key ``device``.

    Without one, count it against the user name and the client network. Raise
    ``AdminLoginThrottled`` when a key has used up its attempts of the window. A rejected
    attempt is not counted, so it does not extend the window.
    """
    window = timedelta(seconds=settings.ADMIN_LOGIN_WINDOW_SECONDS)
    now = timezone.now()
    login_failures_prune(expired_before=now - window)
    if device is not None:
        attempt = LoginAttempt(user_key=None, address_key=None, device_key=device)
    else:
        attempt = LoginAttempt(
            user_key=user_name_key(user_name), address_key=client_address_key(addresses)
        )
    keys = sorted(
        key
        for key in (attempt.user_key, attempt.address_key, attempt.device_key)
        if key is not None
    )
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
    """Delete the cookie's or the user name's count; take the attempt back from the network's.

    A login with a device cookie leaves the user name's count, which contains the failures of
    clients without the cookie.
    """
    with transaction.atomic():
        for key in (attempt.device_key, attempt.user_key):
            if key is not None:
                LoginFailureCount.objects.filter(key=key).delete()
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


def _device_cookie_id(*, cookie: str, user_name: str) -> str:
    """Return the id of a valid device cookie of ``user_name``; raise ``InvalidDeviceCookie``."""
    try:
        payload = signing.loads(
            cookie, salt=DEVICE_COOKIE_SALT, max_age=settings.ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS
        )
    except signing.SignatureExpired:
        raise InvalidDeviceCookie("expired") from None
    except signing.BadSignature:
        raise InvalidDeviceCookie("bad_signature") from None
    if not isinstance(payload, dict) or payload.get("user") != user_name:
        raise InvalidDeviceCookie("other_user")
    user_model = get_user_model()
    try:
        user = user_model._default_manager.get_by_natural_key(user_name)
    except user_model.DoesNotExist:
        raise InvalidDeviceCookie("revoked") from None
    if not constant_time_compare(str(payload.get("password_hmac")), _password_hmac(user)):
        raise InvalidDeviceCookie("revoked")
    return str(payload.get("id"))


def _password_hmac(user: AbstractBaseUser) -> str:
    # The HMAC of the stored password hash changes with every new password, so it revokes
    # the cookies issued before, as Django's session hash does for sessions.
    return salted_hmac(DEVICE_PASSWORD_SALT, user.password, algorithm="sha256").hexdigest()
