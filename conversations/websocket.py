"""The synchronous work behind the WebSocket chat endpoint (docs/websocket.md).

``conversations.consumers`` parses and sends the frames. Everything that reads or writes the
database, or calls a webhook, is here and runs on the worker threads of ``run_sync``, so
the event loop keeps replying to pings while a turn runs. A shopper message is processed by
the same ``ConversationTurn`` as the REST endpoint, so its events are identical.
"""

import asyncio
import contextvars
import functools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar, cast

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    transaction,
)
from django.db import connection as db_connection
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.views import APIView

from conversations.assistants import assistant_name
from conversations.client_address import ConnectionAddresses
from conversations.events import Event, EventType
from conversations.identity import ShopperIdentity, shopper_identity_resolve
from conversations.language import LANGUAGES
from conversations.limits import Limits
from conversations.models import Conversation, OpenSocket
from conversations.selectors import conversation_get
from conversations.services import (
    IDEMPOTENCY_KEY_INVALID,
    ConversationTurn,
    conversation_create,
    idempotency_key_is_valid,
    message_text_validate,
)
from tenants.authentication import ApiClient
from tenants.models import ApiKey
from tenants.permissions import WidgetOriginAllowed
from tenants.selectors import api_key_get_active
from vizochok.exceptions import (
    DATABASE_RETRY_AFTER_SECONDS,
    ClientError,
    DatabaseUnavailable,
    ErrorCode,
    InvalidInput,
    LimitExceeded,
    NotFound,
    database_unreachable,
)
from vizochok.serializers import (
    IdentifierField,
    StrictChoiceField,
    StrictInputSerializer,
    StringField,
)

# Close codes of the protocol, modelled on the HTTP statuses of the same cases.
CLOSE_NOT_AUTHENTICATED = 4001
CLOSE_PERMISSION_DENIED = 4003
CLOSE_PONG_TIMEOUT = 4408
CLOSE_TOO_MANY_SOCKETS = 4029
# The standard WebSocket close code for an internal server error (``CloseCode.INTERNAL_ERROR``
# of the websockets package): an unexpected failure while checking ``auth``.
CLOSE_SERVER_ERROR = 1011
# The standard close code for a temporary server condition (``CloseCode.TRY_AGAIN_LATER`` of
# the websockets package): the database was unreachable while checking ``auth``.
CLOSE_TRY_AGAIN_LATER = 1013
# ``reason`` of the ``not_found`` error for a conversation idle for longer than a session.
SESSION_EXPIRED = "session_expired"
# ``reason`` of the ``invalid_json`` error sent for an ``action`` frame.
ACTION_NOT_SUPPORTED = "action_not_supported"

# Seconds between the heartbeats of a process's open sockets, and the age after which a
# socket's row counts as left by a stopped process, which is three missed heartbeats.
SOCKET_HEARTBEAT_SECONDS = 10
SOCKET_EXPIRY = timedelta(seconds=3 * SOCKET_HEARTBEAT_SECONDS)
# During a database outage a process logs its first failed heartbeat and then every sixth,
# about once a minute, instead of one line per heartbeat.
HEARTBEAT_FAILED_LOG_EVERY = 6
# First key of the advisory lock that serializes the socket opens of one API key.
_SOCKET_LOCK_NAMESPACE = 0x5753

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _worker_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.WEBSOCKET_WORKER_THREADS, thread_name_prefix="chat-socket"
            )
        return _executor


def _with_connections(call: Callable[[], R]) -> R:
    # As Django does around a request: drop connections that are broken or older than
    # CONN_MAX_AGE before and after the work.
    close_old_connections()
    try:
        return call()
    finally:
        close_old_connections()


def _database_loss_raise(call: Callable[[], R]) -> R:
    """Run ``call`` and raise ``DatabaseUnavailable`` for a refused or lost connection.

    The check runs on the thread of the failed query, because only that thread's connection
    shows whether it was lost, and before ``close_old_connections`` closes it.
    """
    try:
        return call()
    except (OperationalError, InterfaceError) as error:
        if database_unreachable(error):
            retry_after = DATABASE_RETRY_AFTER_SECONDS
            raise DatabaseUnavailable(extra={"retry_after": retry_after}) from error
        raise


async def run_sync(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``function`` on a worker thread and return its result to the event loop.

    The pool has ``WEBSOCKET_WORKER_THREADS`` threads, and a running turn occupies one. So
    at most that many turns of one process run at once, and further work waits. A refused
    or lost database connection raises ``DatabaseUnavailable``.
    """
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(_database_loss_raise, functools.partial(function, *args, **kwargs))
    return await loop.run_in_executor(_worker_executor(), context.run, _with_connections, call)


class AuthenticationFailed(ClientError):
    http_status = status.HTTP_401_UNAUTHORIZED
    code = ErrorCode.AUTHENTICATION_FAILED
    default_detail = "Invalid or revoked API key."


class ChatScopeMissing(ClientError):
    http_status = status.HTTP_403_FORBIDDEN
    code = ErrorCode.PERMISSION_DENIED
    default_detail = "This API key lacks the 'chat' scope."


class AuthInput(StrictInputSerializer):
    token = StringField(max_length=200)
    store_id = IdentifierField(max_length=100, required=False)
    user_id = IdentifierField(max_length=200, required=False, allow_null=True)
    user_token = IdentifierField(max_length=200, required=False, allow_null=True)
    conversation_id = IdentifierField(max_length=40, required=False)
    language = StrictChoiceField(choices=LANGUAGES, required=False, allow_null=True)


class IdempotencyKeyField(StringField):
    """The idempotency key of a ``message`` frame, checked and kept as the header's value is."""

    default_error_messages = {
        "blank": IDEMPOTENCY_KEY_INVALID,
        "invalid_key": IDEMPOTENCY_KEY_INVALID,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        key = super().to_internal_value(data)
        if not idempotency_key_is_valid(key):
            self.fail("invalid_key")
        return key


class MessageInput(StrictInputSerializer):
    text = StringField()
    conversation_id = IdentifierField(max_length=40, required=False)
    idempotency_key = IdempotencyKeyField(required=False)


def frame_fields_validate(
    serializer_class: type[serializers.Serializer], data: dict[str, Any]
) -> dict[str, Any]:
    """Return the validated fields of a frame without its ``type``; raise ``InvalidInput``."""
    fields = {name: value for name, value in data.items() if name != "type"}
    serializer = serializer_class(data=fields)
    if not serializer.is_valid():
        raise InvalidInput("The message is invalid.", fields=serializer.errors)
    return cast(dict[str, Any], serializer.validated_data)


@dataclass(frozen=True)
class SocketSession:
    """The caller of an authenticated socket: its key, shopper and tenant settings."""

    client: ApiClient
    identity: ShopperIdentity
    store_id: str | None
    # The client's language, stored in each conversation that the socket starts.
    language: str | None
    limits: Limits
    assistant: str
    # The handshake's Origin header and path, for checking the key again with each message.
    origin: str | None
    path: str


@dataclass(frozen=True)
class _HandshakeRequest:
    """The request attributes that ``WidgetOriginAllowed`` reads, from the WebSocket handshake."""

    user: ApiClient
    headers: dict[str, str]
    path: str


def socket_authenticate(
    *,
    token: str,
    user_id: str | None,
    user_token: str | None,
    store_id: str | None,
    language: str | None,
    origin: str | None,
    path: str,
    addresses: ConnectionAddresses,
) -> SocketSession:
    """Check an ``auth`` frame as the REST API checks a request and its new conversation.

    Raise ``AuthenticationFailed`` for an unknown or revoked key. Raise ``ChatScopeMissing``
    or ``OriginNotAllowed`` (both 403) for a key that may not chat from here. A ``user_id``
    that cannot be trusted raises the errors of ``shopper_identity_resolve``. The
    handshake's ``addresses`` give an anonymous shopper's identity for the whole socket.
    """
    api_key = api_key_get_active(raw_key=token)
    if api_key is None:
        raise AuthenticationFailed()
    client = ApiClient(tenant=api_key.tenant, api_key=api_key)
    _client_permission_check(client=client, origin=origin, path=path)
    identity = shopper_identity_resolve(
        client=client, user_id=user_id, user_token=user_token, addresses=addresses
    )
    return SocketSession(
        client=client,
        identity=identity,
        store_id=store_id,
        language=language,
        limits=Limits.for_tenant(client.tenant),
        assistant=assistant_name(tenant=client.tenant),
        origin=origin,
        path=path,
    )


def _client_permission_check(*, client: ApiClient, origin: str | None, path: str) -> None:
    if not client.has_scope(ApiKey.Scope.CHAT):
        raise ChatScopeMissing()
    # The same rule, log line and error as the REST endpoints, applied to the handshake's
    # Origin header. The permission reads only these three attributes.
    handshake = _HandshakeRequest(
        user=client, headers={"Origin": origin} if origin is not None else {}, path=path
    )
    WidgetOriginAllowed().has_permission(cast(Request, handshake), cast(APIView, None))


def session_key_check(*, session: SocketSession) -> None:
    """Check the socket's key again as ``socket_authenticate`` does; raise its errors.

    A socket can stay open for hours, so every message checks again, as each REST request
    does, that the key is not revoked, its tenant is active, the key has the ``chat`` scope
    and the handshake's Origin is still allowed.
    """
    api_key = (
        ApiKey.objects.select_related("tenant")
        .filter(pk=session.client.api_key.pk, revoked_at__isnull=True, tenant__is_active=True)
        .first()
    )
    if api_key is None:
        raise AuthenticationFailed()
    client = ApiClient(tenant=api_key.tenant, api_key=api_key)
    _client_permission_check(client=client, origin=session.origin, path=session.path)


def session_conversation_get(*, session: SocketSession, conversation_id: str) -> Conversation:
    """Return the tenant's conversation ``conversation_id`` if its session has not expired.

    Another tenant's conversation raises the same ``NotFound`` as an unknown id. A
    conversation of this tenant without a finished turn for ``WEBSOCKET_SESSION_IDLE_SECONDS``
    raises ``NotFound`` with ``"reason": "session_expired"``.
    """
    conversation = conversation_get(tenant=session.client.tenant, public_id=conversation_id)
    # updated_at moves with every saved reply, so it is the time of the last activity.
    idle = timedelta(seconds=settings.WEBSOCKET_SESSION_IDLE_SECONDS)
    if timezone.now() - conversation.updated_at > idle:
        raise NotFound(
            "The conversation's session expired after "
            f"{settings.WEBSOCKET_SESSION_IDLE_SECONDS} seconds without a message; start a "
            "new conversation.",
            extra={"reason": SESSION_EXPIRED},
        )
    return conversation


def session_restored_event(conversation: Conversation) -> Event:
    """Build the ``session_restored`` frame: the conversation and its cart snapshot.

    The cart is the snapshot the merchant last confirmed, so restoring calls no webhook.
    """
    # NOTE: always empty, because neither assistant waits for client input (a checklist or a
    # quick reply) between messages. The field is kept for the protocol's clients.
    pending_tools: list[Event] = []
    return {
        "type": "session_restored",
        "conversation_id": conversation.public_id,
        "store_id": conversation.store_id,
        "selected_items": list(conversation.cart["items"]),
        "total": conversation.cart["total"],
        "pending_tools": pending_tools,
    }


def conversation_started_event(conversation: Conversation, *, assistant: str) -> Event:
    return {
        "type": "conversation_started",
        "conversation_id": conversation.public_id,
        "store_id": conversation.store_id,
        "session_id": conversation.session_id,
        "assistant": assistant,
    }


@dataclass(frozen=True)
class PreparedMessage:
    conversation: Conversation
    created: bool


def message_conversation_prepare(
    *, session: SocketSession, text: str, conversation_id: str | None
) -> PreparedMessage:
    """Check a shopper message and find or start its conversation.

    Raise ``message_too_large``, and the errors of ``session_key_check`` for a key that
    can no longer chat, before anything is written. Without ``conversation_id`` a
    new conversation is started, which needs the ``store_id`` of the ``auth`` frame and
    counts against the daily conversation limit like ``POST /api/v1/conversations``, with
    the ``language`` of the ``auth`` frame.
    """
    message_text_validate(text)
    session_key_check(session=session)
    if conversation_id is not None:
        conversation = session_conversation_get(session=session, conversation_id=conversation_id)
        return PreparedMessage(conversation=conversation, created=False)
    if session.store_id is None:
        raise InvalidInput(
            "A new conversation needs a store id.",
            fields={
                "store_id": [
                    "Send store_id in the auth message, or conversation_id in this message."
                ]
            },
        )
    conversation = conversation_create(
        tenant=session.client.tenant,
        store_id=session.store_id,
        identity=session.identity,
        language=session.language,
    )
    return PreparedMessage(conversation=conversation, created=True)


def turn_events_forward(
    turn: ConversationTurn, *, emit: Callable[[Event], None], cancelled: threading.Event
) -> None:
    """Hand each event of a started turn to ``emit`` until the reply ends or is cancelled.

    A cancelled turn (its socket closed) stops at the next event, as a Server-Sent Events
    stream does when its client goes away: closing the generator saves the reply with the
    events produced so far and ``"interrupted": "client_disconnected"``. The lease is
    released in every case.

    ``response_complete`` is handed over only after the generator has ended and released
    the conversation's lease, so that a client may send its next message at once.
    """
    events = turn.events()
    complete: Event | None = None
    try:
        for event in events:
            if cancelled.is_set():
                break
            if event["type"] == EventType.RESPONSE_COMPLETE.value:
                complete = event
                continue
            emit(event)
    finally:
        try:
            events.close()
        finally:
            turn.close()
    if complete is not None:
        emit(complete)


@dataclass
class ConnectionRateWindow:
    """The per-connection rate limit: at most ``max_messages`` in any ``window_seconds``.

    It counts the ``message`` and ``action`` frames of one socket in memory, whatever their
    outcome, except those it rejects itself. A limit of 0 means no limit.
    """

    max_messages: int
    window_seconds: int
    _frame_times: deque[float] = field(default_factory=deque, init=False)

    def take(self, *, now: float | None = None) -> None:
        """Count one frame; raise ``rate_limit_exceeded`` with ``retry_after`` when full."""
        if not self.max_messages:
            return
        now = time.monotonic() if now is None else now
        while self._frame_times and self._frame_times[0] <= now - self.window_seconds:
            self._frame_times.popleft()
        if len(self._frame_times) >= self.max_messages:
            leaves_window_in = self._frame_times[0] + self.window_seconds - now
            retry_after = max(1, math.ceil(leaves_window_in))
            raise LimitExceeded(
                f"Too many messages on this connection: at most {self.max_messages} in "
                f"{self.window_seconds} seconds; retry in {retry_after} seconds.",
                code=ErrorCode.RATE_LIMIT_EXCEEDED,
                extra={
                    "retry_after": retry_after,
                    "limit": self.max_messages,
                    "window_seconds": self.window_seconds,
                },
            )
        self._frame_times.append(now)


class SocketLimitReached(Exception):
    """The API key has ``WEBSOCKET_MAX_SOCKETS_PER_KEY`` open sockets already."""


def open_socket_record(*, api_key: ApiKey, limit: int, now: datetime | None = None) -> int:
    """Record an open socket of the key in the database and return the row's id.

    Raise ``SocketLimitReached``, recording nothing, when the key's sockets of every
    process, counted without the rows of stopped processes, already reach ``limit`` (0 means
    no limit). An advisory lock on the key makes concurrent opens of one key, also in
    other processes, count one after another.
    """
    now = timezone.now() if now is None else now
    live_since = now - SOCKET_EXPIRY
    with transaction.atomic():
        _socket_lock_take(api_key=api_key)
        sockets = OpenSocket.objects.filter(tenant_id=api_key.tenant_id, api_key=api_key)
        sockets.filter(heartbeat_at__lt=live_since).delete()
        if limit and sockets.count() >= limit:
            raise SocketLimitReached()
        return OpenSocket.objects.create(
            tenant_id=api_key.tenant_id, api_key=api_key, heartbeat_at=now
        ).pk


def open_socket_delete(*, socket_id: int, api_key: ApiKey) -> None:
    """Delete the row of the closed socket ``socket_id`` of ``api_key``.

    It takes the key's advisory lock, so it waits for a heartbeat that is writing the row
    again, and then deletes that row too.
    """
    with transaction.atomic():
        _socket_lock_take(api_key=api_key)
        OpenSocket.objects.filter(pk=socket_id).delete()


def _socket_lock_take(*, api_key: ApiKey) -> None:
    """Take the transaction's advisory lock on the socket rows of ``api_key``."""
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_SOCKET_LOCK_NAMESPACE, api_key.pk])


@dataclass(frozen=True)
class HeartbeatResult:
    """The outcome of one heartbeat of a process's open sockets."""

    # How many rows of open sockets were written again.
    restored: int = 0
    # The open sockets whose rows were not written again because their key reached its
    # limit. Their process closes them with CLOSE_TOO_MANY_SOCKETS.
    over_limit: tuple[int, ...] = ()


def open_sockets_heartbeat(
    *,
    sockets: dict[int, ApiKey],
    limit: int,
    now: datetime | None = None,
    still_open: Callable[[int], bool] | None = None,
) -> HeartbeatResult:
    """Mark the open sockets ``sockets`` (row id to API key) as still open.

    A row that is gone was deleted as expired by an ``auth`` of its key, which happens
    when heartbeats failed for ``SOCKET_EXPIRY``, such as while the database was
    unreachable. It is written again, so the socket counts against its key's limit. Such
    a socket counts like a new one, so its row is written only while the key has fewer
    than ``limit`` live rows (0 means no limit), oldest socket first. The sockets that do
    not fit are returned in ``over_limit``. A row is written again only while
    ``still_open`` (when given) returns True for its socket, checked under the key's lock,
    so the row of a socket that closed meanwhile stays deleted.
    """
    now = timezone.now() if now is None else now
    updated = OpenSocket.objects.filter(pk__in=sockets).update(heartbeat_at=now)
    if updated == len(sockets):
        return HeartbeatResult()
    present = set(OpenSocket.objects.filter(pk__in=sockets).values_list("pk", flat=True))
    # The rows of a deleted key (or tenant) are deleted with it, and writing them again would
    # violate their foreign keys, failing every heartbeat of the process with them.
    key_ids = {api_key.pk for api_key in sockets.values()}
    existing_keys = set(ApiKey.objects.filter(pk__in=key_ids).values_list("pk", flat=True))
    missing: dict[int, list[int]] = {}
    keys: dict[int, ApiKey] = {}
    for socket_id, api_key in sorted(sockets.items()):
        if socket_id in present or api_key.pk not in existing_keys:
            continue
        missing.setdefault(api_key.pk, []).append(socket_id)
        keys[api_key.pk] = api_key
    restored = 0
    over_limit: list[int] = []
    for key_id, socket_ids in sorted(missing.items()):
        written, left_out = _open_sockets_restore(
            api_key=keys[key_id], socket_ids=socket_ids, limit=limit, now=now, still_open=still_open
        )
        restored += len(written)
        over_limit.extend(left_out)
    return HeartbeatResult(restored=restored, over_limit=tuple(over_limit))


def _open_sockets_restore(
    *,
    api_key: ApiKey,
    socket_ids: list[int],
    limit: int,
    now: datetime,
    still_open: Callable[[int], bool] | None = None,
) -> tuple[list[int], list[int]]:
    """Write the rows of ``socket_ids`` of one key again while the key is under ``limit``.

    Return the ids whose rows were written, the first open ones of ``socket_ids``, and the
    open ones whose rows were not written because of the limit. It takes the
    advisory lock of ``open_socket_record``, so the counts and writes of one key in all
    processes run one after another.
    """
    with transaction.atomic():
        _socket_lock_take(api_key=api_key)
        # A socket's close removes it from the registry before open_socket_delete waits for
        # this lock, so a socket closed by now is left out, and a later close deletes the row.
        if still_open is not None:
            socket_ids = [socket_id for socket_id in socket_ids if still_open(socket_id)]
        live = OpenSocket.objects.filter(
            tenant_id=api_key.tenant_id, api_key=api_key, heartbeat_at__gte=now - SOCKET_EXPIRY
        ).count()
        room = len(socket_ids) if not limit else max(0, limit - live)
        written, left_out = socket_ids[:room], socket_ids[room:]
        rows = [
            OpenSocket(pk=socket_id, tenant_id=api_key.tenant_id, api_key=api_key, heartbeat_at=now)
            for socket_id in written
        ]
        OpenSocket.objects.bulk_create(rows, ignore_conflicts=True)
    return written, left_out


@dataclass(frozen=True)
class _RegisteredSocket:
    api_key: ApiKey
    # Closes the socket when its row cannot be written again within its key's limit.
    close_over_limit: Callable[[], Awaitable[None]]


class OpenSocketRegistry:
    """The ``OpenSocket`` rows of this process's sockets, kept alive by a heartbeat task.

    Each event loop with open sockets runs one task, which refreshes the rows of its
    sockets every ``SOCKET_HEARTBEAT_SECONDS`` on the event loop's default executor. That
    executor is not the pool of the turns, so long replies cannot delay the heartbeat.
    """

    def __init__(self) -> None:
        self._sockets: dict[asyncio.AbstractEventLoop, dict[int, _RegisteredSocket]] = {}
        self._tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def add(
        self,
        socket_id: int,
        *,
        api_key: ApiKey,
        close_over_limit: Callable[[], Awaitable[None]],
    ) -> None:
        loop = asyncio.get_running_loop()
        registered = _RegisteredSocket(api_key=api_key, close_over_limit=close_over_limit)
        self._sockets.setdefault(loop, {})[socket_id] = registered
        if loop not in self._tasks:
            self._tasks[loop] = loop.create_task(self._beat(loop))

    def discard(self, socket_id: int) -> None:
        loop = asyncio.get_running_loop()
        self._sockets.get(loop, {}).pop(socket_id, None)

    def _is_registered(self, loop: asyncio.AbstractEventLoop, socket_id: int) -> bool:
        """Return whether ``socket_id`` is still open; called from the heartbeat's thread."""
        return socket_id in self._sockets.get(loop, {})

    async def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        # Heartbeats that failed in a row. During an outage only the first failure and then
        # every HEARTBEAT_FAILED_LOG_EVERY-th one is logged, with this count.
        failures = 0
        try:
            while True:
                await asyncio.sleep(SOCKET_HEARTBEAT_SECONDS)
                registered = dict(self._sockets.get(loop, {}))
                if not registered:
                    continue
                call = functools.partial(
                    open_sockets_heartbeat,
                    sockets={socket_id: entry.api_key for socket_id, entry in registered.items()},
                    limit=settings.WEBSOCKET_MAX_SOCKETS_PER_KEY,
                    still_open=functools.partial(self._is_registered, loop),
                )
                try:
                    result = await loop.run_in_executor(None, _with_connections, call)
                except DatabaseError as error:
                    # The rows expire after SOCKET_EXPIRY unless a later heartbeat succeeds.
                    failures += 1
                    if failures == 1 or failures % HEARTBEAT_FAILED_LOG_EVERY == 0:
                        logger.warning(
                            "conversations.websocket.heartbeat_failed",
                            extra={
                                "sockets": len(registered),
                                "failures": failures,
                                "error": str(error),
                            },
                        )
                    continue
                if failures:
                    logger.info(
                        "conversations.websocket.heartbeat_recovered",
                        extra={"sockets": len(registered), "failures": failures},
                    )
                    failures = 0
                if result.restored or result.over_limit:
                    logger.warning(
                        "conversations.websocket.socket_rows_restored",
                        extra={
                            "sockets": len(registered),
                            "restored": result.restored,
                            "over_limit": len(result.over_limit),
                        },
                    )
                await self._over_limit_close(loop, registered, result.over_limit)
        finally:
            self._tasks.pop(loop, None)
            self._sockets.pop(loop, None)

    async def _over_limit_close(
        self,
        loop: asyncio.AbstractEventLoop,
        registered: dict[int, _RegisteredSocket],
        socket_ids: tuple[int, ...],
    ) -> None:
        """Stop refreshing the sockets ``socket_ids`` and close them.

        A failed close is logged, so that it does not end the heartbeat of the other sockets.
        """
        for socket_id in socket_ids:
            self._sockets.get(loop, {}).pop(socket_id, None)
        closes = [registered[socket_id].close_over_limit() for socket_id in socket_ids]
        outcomes = await asyncio.gather(*closes, return_exceptions=True)
        for socket_id, outcome in zip(socket_ids, outcomes, strict=True):
            if isinstance(outcome, Exception):
                logger.error(
                    "conversations.websocket.over_limit_close_failed",
                    exc_info=outcome,
                    extra={"socket_id": socket_id},
                )


open_sockets = OpenSocketRegistry()
