"""Who a conversation belongs to: trusted user ids, user tokens and the limit identity.

A public (``pk_``) key is in every visitor's browser, so a ``user_id`` sent with it proves
nothing: anyone could name another shopper and reach that shopper's cart at the merchant.
With a public key a ``user_id`` is therefore accepted only together with a ``user_token``
that the merchant's server issued for it:

    user_token = "{expires_at}.{hex(HMAC-SHA256(secret, "{user_id}.{expires_at}"))}"

``expires_at`` is a Unix time in seconds at most ``USER_TOKEN_MAX_LIFETIME`` ahead, and the
key is the tenant's user token secret (``Tenant.user_token_secret``). A secret (``sk_``) key
is used only by the merchant's own servers, so its ``user_id`` is trusted as sent.

The daily limits count per identity: ``user:<user_id>`` for a trusted user, otherwise
``key:<id>`` of the API key, which all anonymous shoppers of that key share. A tenant whose
AI settings choose ``client_network`` counts an anonymous shopper on a public key as
``ip:<hex>`` instead, a keyed hash of the client's network (see ``network_limit_key``). A
secret key keeps ``key:<id>``, because the merchant's server is one address for all its
shoppers.
"""

import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.utils.crypto import salted_hmac
from rest_framework import status

from conversations.client_address import (
    ConnectionAddresses,
    IPAddress,
    client_address_resolve,
    client_network,
)
from tenants.authentication import ApiClient
from tenants.models import ApiKey, AssistantSettings
from vizochok.exceptions import ClientError, ErrorCode, InvalidInput, SecretUndecryptable

# A token may be valid for at most a day; merchants should issue tokens for an hour or so.
USER_TOKEN_MAX_LIFETIME = timedelta(hours=24)
USER_TOKEN_MAX_LIFETIME_HOURS = int(USER_TOKEN_MAX_LIFETIME.total_seconds() // 3600)
# Clocks of the merchant's server and of this service may differ by this much.
USER_TOKEN_CLOCK_SKEW = timedelta(minutes=5)
# Prefix of the session ids that ``conversation_create`` generates for anonymous shoppers.
# A client may not send a user id with it, so that nobody can claim such a session's cart.
ANONYMOUS_SESSION_PREFIX = "anon_"
# ASCII only: hmac.compare_digest raises TypeError for other text, and \d alone would also
# match digits such as "١" that int() reads.
_TOKEN_FORMAT = re.compile(r"(?P<expires_at>[0-9]{1,12})\.(?P<signature>[0-9a-f]{64})")
# Salt of the key, derived from SECRET_KEY, that hashes client networks into identities.
NETWORK_IDENTITY_SALT = "vizochok.conversations.identity.network"

logger = logging.getLogger(__name__)


class UserTokenRejection(StrEnum):
    """Values of ``reason`` in the 403 response to a user token that is not accepted."""

    NOT_CONFIGURED = "user_token_secret_not_set"
    EXPIRED = "user_token_expired"
    TOO_LONG = "user_token_lifetime_too_long"
    INVALID = "user_token_invalid"


class UserTokenRejected(ClientError):
    """A well-formed user token that does not prove the user id; ``reason`` names the cause."""

    http_status = status.HTTP_403_FORBIDDEN
    code = ErrorCode.PERMISSION_DENIED
    default_detail = "The user token was rejected."


@dataclass(frozen=True)
class ShopperIdentity:
    """The shopper a conversation belongs to, as far as the caller could prove it.

    ``user_id`` is empty for an anonymous shopper. ``limit_key`` is what the per-user
    limits count by.
    """

    user_id: str
    limit_key: str


def user_token_sign(*, secret: str, user_id: str, expires_at: int) -> str:
    """Return the user token for ``user_id`` that is valid until ``expires_at`` (Unix time)."""
    message = f"{user_id}.{expires_at}".encode()
    signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{expires_at}.{signature}"


def user_token_verify(
    *, secret: str, user_id: str, user_token: str, now: float | None = None
) -> None:
    """Raise ``UserTokenRejected`` unless ``user_token`` is a valid, current token for ``user_id``.

    A malformed token raises ``InvalidInput``, because no secret could have produced it.
    """
    match = _TOKEN_FORMAT.fullmatch(user_token)
    if match is None:
        raise InvalidInput(
            "Invalid user token.",
            fields={
                "user_token": ["Expected '<expires_at>.<64 hex digits of HMAC-SHA256>'."],
            },
        )
    if not secret:
        raise _token_rejected(
            UserTokenRejection.NOT_CONFIGURED,
            "This store has no user token secret yet, so a public key cannot name a user.",
        )
    now = time.time() if now is None else now
    expires_at = int(match["expires_at"])
    if expires_at <= now:
        raise _token_rejected(
            UserTokenRejection.EXPIRED, "The user token has expired; get a new one."
        )
    latest = now + (USER_TOKEN_MAX_LIFETIME + USER_TOKEN_CLOCK_SKEW).total_seconds()
    if expires_at > latest:
        raise _token_rejected(
            UserTokenRejection.TOO_LONG,
            f"The user token expires more than {USER_TOKEN_MAX_LIFETIME_HOURS} hours ahead; "
            "issue tokens with a shorter lifetime.",
        )
    expected = user_token_sign(secret=secret, user_id=user_id, expires_at=expires_at)
    if not hmac.compare_digest(expected, user_token):
        raise _token_rejected(
            UserTokenRejection.INVALID, "The user token does not match the user id."
        )


def shopper_identity_resolve(
    *,
    client: ApiClient,
    user_id: str | None,
    user_token: str | None,
    addresses: ConnectionAddresses,
) -> ShopperIdentity:
    """Return who a new conversation belongs to; raise if ``user_id`` cannot be trusted.

    ``addresses`` are those of the request or socket, for an anonymous shopper's identity.
    """
    if user_id is None:
        return ShopperIdentity(
            user_id="", limit_key=anonymous_limit_key(client=client, addresses=addresses)
        )
    if user_id.lower().startswith(ANONYMOUS_SESSION_PREFIX):
        raise InvalidInput(
            "Invalid user id.",
            fields={
                "user_id": [f"User ids starting with {ANONYMOUS_SESSION_PREFIX!r} are reserved."]
            },
        )
    if client.api_key.kind == ApiKey.Kind.PUBLIC:
        if not user_token:
            raise InvalidInput(
                "A user id sent with a public key needs a user token.",
                fields={
                    "user_token": [
                        "Required with a public (pk_) key when user_id is set; the "
                        "merchant's server issues it."
                    ]
                },
            )
        try:
            secret = client.tenant.user_token_secret
        except SecretUndecryptable:
            # A public key's error reaches the shopper's browser, so it carries the generic
            # detail. The log line of the failed decryption names the tenant and the field.
            raise SecretUndecryptable() from None
        user_token_verify(secret=secret, user_id=user_id, user_token=user_token)
    return ShopperIdentity(user_id=user_id, limit_key=f"user:{user_id}")


def anonymous_limit_key(*, client: ApiClient, addresses: ConnectionAddresses) -> str:
    """Return the limit identity of a shopper without a user id.

    It is the key's ``key:<id>``, unless the key is public and the tenant chose
    ``client_network``: then it is the client's network (``network_limit_key``), or the key
    when no client address is known. A fallback from the configured address source is
    logged once, without the addresses.
    """
    key_identity = f"key:{client.api_key.pk}"
    if client.api_key.kind != ApiKey.Kind.PUBLIC:
        return key_identity
    if not _counts_client_network(tenant_id=client.tenant.pk):
        return key_identity
    resolved = client_address_resolve(
        addresses=addresses, trusted_proxies=settings.TRUSTED_PROXY_COUNT
    )
    if resolved.fallback is not None:
        logger.warning(
            "conversations.identity.client_address_fallback",
            extra={
                "tenant_id": client.tenant.pk,
                "api_key": client.api_key.prefix,
                "reason": resolved.fallback.value,
                "trusted_proxies": settings.TRUSTED_PROXY_COUNT,
                "forwarded_addresses": resolved.forwarded_count,
                "counted_by": "peer" if resolved.address is not None else "api_key",
            },
        )
    if resolved.address is None:
        return key_identity
    return network_limit_key(tenant_id=client.tenant.pk, address=resolved.address)


def network_limit_key(*, tenant_id: int, address: IPAddress) -> str:
    """Return ``ip:<hex>``, the identity of a client network at one tenant.

    The hex is an HMAC-SHA256, keyed with a key derived from ``SECRET_KEY``, of the tenant
    and ``client_network(address)``. So no address is stored, and one network has unrelated
    identities at two tenants. A new ``SECRET_KEY`` gives every network a new identity.
    """
    message = f"{tenant_id}/{client_network(address)}"
    digest = salted_hmac(NETWORK_IDENTITY_SALT, message, algorithm="sha256").hexdigest()
    return f"ip:{digest}"


def _counts_client_network(*, tenant_id: int) -> bool:
    # A tenant without AI settings has the defaults, so it counts by the key.
    choice = (
        AssistantSettings.objects.filter(tenant_id=tenant_id)
        .values_list("anonymous_limit_identity", flat=True)
        .first()
    )
    return choice == AssistantSettings.AnonymousLimitIdentity.CLIENT_NETWORK


def _token_rejected(reason: UserTokenRejection, detail: str) -> UserTokenRejected:
    return UserTokenRejected(detail, extra={"reason": reason.value})
