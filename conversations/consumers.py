"""The WebSocket chat endpoint, ``/api/v1/ws/chat``: frame parsing and sending.

Every frame is a JSON object with a ``type``; docs/websocket.md describes the protocol. The
work runs in ``conversations.websocket`` on worker threads, so this consumer keeps replying
to ``ping`` frames while a turn runs.
"""

import asyncio
import json
import logging
import threading
import uuid
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from conversations.client_address import ConnectionAddresses
from conversations.events import Event, EventType
from conversations.services import MAX_MESSAGE_BYTES, ConversationTurn, message_too_large
from conversations.websocket import (
    ACTION_NOT_SUPPORTED,
    CLOSE_NOT_AUTHENTICATED,
    CLOSE_PERMISSION_DENIED,
    CLOSE_PONG_TIMEOUT,
    CLOSE_SERVER_ERROR,
    CLOSE_TOO_MANY_SOCKETS,
    CLOSE_TRY_AGAIN_LATER,
    AuthenticationFailed,
    AuthInput,
    ChatScopeMissing,
    ConnectionRateWindow,
    MessageInput,
    SocketLimitReached,
    SocketSession,
    conversation_started_event,
    frame_fields_validate,
    message_conversation_prepare,
    open_socket_delete,
    open_socket_record,
    open_sockets,
    run_sync,
    session_conversation_get,
    session_restored_event,
    socket_authenticate,
    turn_events_forward,
)
from tenants.models import ApiKey
from tenants.permissions import OriginNotAllowed
from vizochok.exceptions import (
    AppError,
    Conflict,
    DatabaseUnavailable,
    ErrorCode,
    InvalidInput,
    SecretUndecryptable,
    error_body,
)

logger = logging.getLogger(__name__)


def _error_frame(error: AppError) -> Event:
    return {"type": "error", **error_body(detail=error.detail, code=error.code, **error.extra)}


def _auth_close_code(error: AppError) -> int:
    # A rejected user token is a 403 too, but it is part of the credentials.
    if isinstance(error, ChatScopeMissing | OriginNotAllowed):
        return CLOSE_PERMISSION_DENIED
    # The deployment's encryption keys are at fault, not the client's credentials.
    if isinstance(error, SecretUndecryptable):
        return CLOSE_SERVER_ERROR
    return CLOSE_NOT_AUTHENTICATED


class ChatConsumer(AsyncWebsocketConsumer):
    """One chat socket: ``auth`` first, then shopper messages, one turn at a time."""

    async def connect(self) -> None:
        self.session: SocketSession | None = None
        # The socket's OpenSocket row, from auth_ok until the socket closes.
        self.socket_id: int | None = None
        # The key whose limit the socket's row counts against.
        self.socket_api_key: ApiKey | None = None
        self.rate_window: ConnectionRateWindow | None = None
        self.send_lock = asyncio.Lock()
        self.turn_task: asyncio.Task[None] | None = None
        # True from a shopper message until its last frame is sent.
        self.turn_running = False
        self.turn_cancelled = threading.Event()
        # A turn whose lease could not be released because the database was unreachable.
        # The next message of this socket releases it first, so its retry gets no agent_busy.
        self.unreleased_turn: ConversationTurn | None = None
        self.pong_received = asyncio.Event()
        self.closing = False
        self.auth_received = False
        self.background: list[asyncio.Task[None]] = []
        await self.accept()
        self.background.append(asyncio.create_task(self._close_unless_authenticated()))

    async def disconnect(self, code: int) -> None:
        self.closing = True
        for task in self.background:
            task.cancel()
        # A running turn's thread stops at its next event and saves what it has.
        self.turn_cancelled.set()
        logger.info("conversations.websocket.closed", extra={**self._log_fields(), "code": code})
        if self.socket_id is not None and self.socket_api_key is not None:
            await self._socket_record_delete(self.socket_id, self.socket_api_key)
        # On SIGTERM uvicorn waits for this handler before the process exits, so the turn's
        # thread can store the interrupted reply and release the conversation's lease.
        if self.turn_task is not None:
            await asyncio.wait({self.turn_task})
        try:
            await self._unreleased_turn_close()
        except (DatabaseError, DatabaseUnavailable) as error:
            # The lease then expires after lease_duration().
            logger.warning(
                "conversations.websocket.lease_release_failed",
                extra={**self._log_fields(), "error": str(error)},
            )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        if self.session is None:
            self.auth_received = True
            try:
                frame = self._parse(text_data, bytes_data)
            except AppError as error:
                await self._reject(error, close_code=CLOSE_NOT_AUTHENTICATED)
                return
            await self._authenticate(frame)
            return
        try:
            await self._dispatch_frame(self._parse(text_data, bytes_data))
        except AppError as error:
            logger.info(
                "conversations.websocket.frame_rejected",
                extra={**self._log_fields(), "code": str(error.code)},
            )
            await self._send(_error_frame(error))

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        if text_data is None:
            raise InvalidInput("Send JSON objects as text frames, not binary frames.")
        # Every character is at least one byte of UTF-8, so a frame with more characters than
        # the limit is rejected without encoding it. Encoding a frame of uvicorn's maximum
        # size, 16 MiB, would block the event loop for milliseconds.
        if len(text_data) > MAX_MESSAGE_BYTES:
            raise message_too_large()
        if len(text_data.encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise message_too_large()
        try:
            frame = json.loads(text_data)
        except ValueError as error:
            raise InvalidInput("The message is not valid JSON.") from error
        except RecursionError as error:
            # 64 KB of brackets nest deeper than the decoder's recursion limit.
            raise InvalidInput("The message is nested too deeply.") from error
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise InvalidInput(
                "The message is invalid.",
                fields={"type": ["Expected a JSON object with a string 'type'."]},
            )
        return frame

    # Authentication

    async def _authenticate(self, frame: dict[str, Any]) -> None:
        """Check the first frame's key, record the socket, and restore a named conversation.

        A rejected frame closes the socket with the close code of its error.
        """
        if frame["type"] != "auth":
            await self._reject(
                AppError(
                    "The first message must be of type 'auth'.",
                    code=ErrorCode.NOT_AUTHENTICATED,
                ),
                close_code=CLOSE_NOT_AUTHENTICATED,
            )
            return
        try:
            fields = frame_fields_validate(AuthInput, frame)
            session = await run_sync(
                socket_authenticate,
                token=fields["token"],
                user_id=fields.get("user_id"),
                user_token=fields.get("user_token"),
                store_id=fields.get("store_id"),
                language=fields.get("language"),
                origin=self._header("origin"),
                path=self.scope["path"],
                addresses=ConnectionAddresses.from_scope(self.scope),
            )
        except DatabaseUnavailable as error:
            await self._auth_failed(error, log_fields={})
            return
        except AppError as error:
            close_code = _auth_close_code(error)
            logger.info(
                "conversations.websocket.auth_rejected",
                extra={"code": str(error.code), "close_code": close_code},
            )
            await self._reject(error, close_code=close_code)
            return
        except Exception as error:
            await self._auth_failed(error, log_fields={})
            return

        api_key = session.client.api_key
        try:
            self.socket_id = await run_sync(
                open_socket_record,
                api_key=api_key,
                limit=settings.WEBSOCKET_MAX_SOCKETS_PER_KEY,
            )
        except SocketLimitReached:
            logger.info(
                "conversations.websocket.too_many_sockets",
                extra={"tenant_id": session.client.tenant.pk, "api_key": api_key.prefix},
            )
            self.closing = True
            await self.close(code=CLOSE_TOO_MANY_SOCKETS, reason="Too many sockets for this key.")
            return
        except Exception as error:
            await self._auth_failed(
                error,
                log_fields={"tenant_id": session.client.tenant.pk, "api_key": api_key.prefix},
            )
            return

        self.socket_api_key = api_key
        open_sockets.add(self.socket_id, api_key=api_key, close_over_limit=self._close_over_limit)
        self.session = session
        self.rate_window = ConnectionRateWindow(
            max_messages=session.limits.rate_limit_messages,
            window_seconds=session.limits.rate_limit_window_seconds,
        )
        self.background.append(asyncio.create_task(self._heartbeat()))
        logger.info("conversations.websocket.authenticated", extra=self._log_fields())
        await self._send({"type": "auth_ok", "assistant": session.assistant})

        conversation_id = fields.get("conversation_id")
        if conversation_id is not None:
            await self._session_restore(session, conversation_id)

    async def _session_restore(self, session: SocketSession, conversation_id: str) -> None:
        try:
            conversation = await run_sync(
                session_conversation_get, session=session, conversation_id=conversation_id
            )
        except DatabaseUnavailable as error:
            # The socket stays authenticated, as after a rejected restore.
            await self._failure_report(error, log_event="conversations.websocket.restore_failed")
            return
        except AppError as error:
            # The socket stays authenticated, so the client can start a new conversation.
            logger.info(
                "conversations.websocket.restore_rejected",
                extra={**self._log_fields(), "code": str(error.code)},
            )
            await self._send(_error_frame(error))
            return
        except Exception as error:
            # The socket stays authenticated, as after a rejected restore, so the client can
            # still send messages.
            await self._failure_report(error, log_event="conversations.websocket.restore_failed")
            return
        await self._send(session_restored_event(conversation))

    async def _socket_record_delete(self, socket_id: int, api_key: ApiKey) -> None:
        # Discarded first: a heartbeat that writes missing rows again skips it from now on.
        open_sockets.discard(socket_id)
        try:
            await run_sync(open_socket_delete, socket_id=socket_id, api_key=api_key)
        except (DatabaseError, DatabaseUnavailable) as error:
            # Without heartbeats the row stops counting after SOCKET_EXPIRY.
            logger.warning(
                "conversations.websocket.socket_delete_failed",
                extra={**self._log_fields(), "socket_id": socket_id, "error": str(error)},
            )

    async def _close_over_limit(self) -> None:
        """Close this socket, whose row was not written again because its key is at the limit.

        After a database outage the socket's row may have been deleted as expired, and other
        sockets of the key may have taken its place. The socket then counts like a new one.
        """
        if self.closing:
            return
        logger.info(
            "conversations.websocket.over_limit_closed",
            extra={**self._log_fields(), "socket_id": self.socket_id},
        )
        self.closing = True
        await self.close(code=CLOSE_TOO_MANY_SOCKETS, reason="Too many sockets for this key.")

    async def _close_unless_authenticated(self) -> None:
        await asyncio.sleep(settings.WEBSOCKET_AUTH_TIMEOUT_SECONDS)
        if not self.auth_received and not self.closing:
            timeout = settings.WEBSOCKET_AUTH_TIMEOUT_SECONDS
            await self._reject(
                AppError(
                    f"No auth message within {timeout:g} seconds of connecting.",
                    code=ErrorCode.NOT_AUTHENTICATED,
                ),
                close_code=CLOSE_NOT_AUTHENTICATED,
            )

    async def _auth_failed(self, error: Exception, *, log_fields: dict[str, object]) -> None:
        """Report an unexpected failure while checking ``auth`` and close the socket.

        Nothing was recorded for the socket, so the client may reconnect and send ``auth``
        again. An unreachable database closes it with 1013 (try again later), any other
        failure with 1011.
        """
        await self._failure_report(
            error, log_event="conversations.websocket.auth_failed", log_fields=log_fields
        )
        self.closing = True
        if isinstance(error, DatabaseUnavailable):
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
        else:
            await self.close(code=CLOSE_SERVER_ERROR)

    async def _reject(self, error: AppError, *, close_code: int) -> None:
        await self._send(_error_frame(error))
        self.closing = True
        await self.close(code=close_code)

    # Frames of an authenticated socket

    async def _dispatch_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "ping":
            await self._send({"type": "pong"})
        elif kind == "pong":
            self.pong_received.set()
        elif kind == "message":
            self._rate_take()
            self._turn_begin(frame_fields_validate(MessageInput, frame))
        elif kind == "action":
            self._rate_take()
            # NOTE: no assistant sends product cards with actions, quick replies or
            # checklists yet, so there is no action to carry out.
            raise AppError(
                "Actions are not supported yet; send the shopper's choice as a message.",
                code=ErrorCode.INVALID_JSON,
                extra={"reason": ACTION_NOT_SUPPORTED},
            )
        elif kind == "auth":
            raise InvalidInput("This connection is authenticated already.")
        else:
            raise InvalidInput(
                "The message is invalid.",
                fields={"type": [f"Unknown message type {kind[:50]!r}."]},
            )

    def _rate_take(self) -> None:
        assert self.rate_window is not None
        self.rate_window.take()

    def _turn_begin(self, fields: dict[str, Any]) -> None:
        if self.turn_running:
            raise Conflict(
                "A message of this connection is being processed; send the next one after "
                "response_complete.",
                code=ErrorCode.AGENT_BUSY,
            )
        self.turn_cancelled = threading.Event()
        self.turn_running = True
        self.turn_task = asyncio.create_task(self._turn_run(fields))

    async def _turn_run(self, fields: dict[str, Any]) -> None:
        session = self.session
        assert session is not None
        try:
            await self._turn_run_steps(session, fields)
        except Exception as error:
            await self._failure_report(error, log_event="conversations.websocket.turn_failed")
        finally:
            # A later turn of this socket may have started after response_complete.
            if self.turn_task is asyncio.current_task():
                self.turn_running = False

    async def _turn_run_steps(self, session: SocketSession, fields: dict[str, Any]) -> None:
        """Start the turn of a validated ``message`` frame and send its events.

        A frame with the ``idempotency_key`` of a stored shopper message gets that
        message's stored reply, as ``ConversationTurn`` replays it for the REST API.
        """
        text = fields["text"]
        turn: ConversationTurn | None = None
        try:
            await self._unreleased_turn_close()
            prepared = await run_sync(
                message_conversation_prepare,
                session=session,
                text=text,
                conversation_id=fields.get("conversation_id"),
            )
            if prepared.created:
                started = conversation_started_event(
                    prepared.conversation, assistant=session.assistant
                )
                await self._send(started)
            turn = ConversationTurn(
                conversation=prepared.conversation,
                text=text,
                idempotency_key=fields.get("idempotency_key"),
            )
            await run_sync(turn.start)
        except (AuthenticationFailed, ChatScopeMissing, OriginNotAllowed) as error:
            # The key was revoked, its tenant deactivated or its permissions narrowed after
            # auth_ok, so the socket is closed as if its auth frame had been rejected.
            logger.info(
                "conversations.websocket.key_rejected",
                extra={**self._log_fields(), "code": str(error.code)},
            )
            await self._reject(error, close_code=_auth_close_code(error))
            return
        except DatabaseUnavailable as error:
            if turn is not None:
                # ``start`` may have taken the lease and failed to release it.
                self.unreleased_turn = turn
            await self._failure_report(error, log_event="conversations.websocket.turn_failed")
            return
        except AppError as error:
            logger.info(
                "conversations.websocket.message_rejected",
                extra={**self._log_fields(), "code": str(error.code)},
            )
            await self._send(_error_frame(error))
            return
        await self._turn_stream(turn)

    async def _turn_stream(self, turn: ConversationTurn) -> None:
        """Send the events of a started turn as its worker thread produces them."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        cancelled = self.turn_cancelled

        def emit(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        forwarding = asyncio.ensure_future(
            run_sync(turn_events_forward, turn, emit=emit, cancelled=cancelled)
        )
        forwarding.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                if event["type"] == EventType.RESPONSE_COMPLETE.value:
                    # The lease is released already; the next message may start now.
                    self.turn_running = False
                if not await self._send(event):
                    # The socket closed; the thread stops at its next event.
                    cancelled.set()
            await forwarding
        except Exception as error:
            if isinstance(error, DatabaseUnavailable):
                self.unreleased_turn = turn
            await self._failure_report(error, log_event="conversations.websocket.turn_failed")

    async def _unreleased_turn_close(self) -> None:
        """Release the lease of this socket's turn that ended with the database unreachable.

        Raise ``DatabaseUnavailable`` while the database is still unreachable. Nothing is
        released when the turn failed before taking the lease, or when its lease expired and
        another turn took the conversation over.
        """
        turn = self.unreleased_turn
        if turn is None:
            return
        released = await run_sync(turn.close)
        self.unreleased_turn = None
        if released:
            logger.info("conversations.websocket.lease_released_late", extra=self._log_fields())

    async def _failure_report(
        self, error: Exception, *, log_event: str, log_fields: dict[str, object] | None = None
    ) -> None:
        """Log an unexpected failure once and send its ``error`` frame.

        The turn itself reports the assistant's errors as events. ``log_event`` is the
        constant event name of the log line. A refused or lost database connection is sent
        as ``database_unavailable`` with ``retry_after`` and logged without a traceback,
        as the REST API does. Any other failure is sent as ``internal_error`` with an
        ``error_id`` that its log line carries too.
        """
        fields = {**self._log_fields(), **(log_fields or {})}
        if isinstance(error, DatabaseUnavailable):
            cause = error.__cause__ or error
            logger.error(
                log_event,
                extra={
                    **fields,
                    "code": ErrorCode.DATABASE_UNAVAILABLE.value,
                    "error_type": type(cause).__name__,
                    "error": str(cause).strip(),
                },
            )
            await self._send(_error_frame(error))
            return
        error_id = uuid.uuid4().hex
        logger.error(log_event, exc_info=error, extra={**fields, "error_id": error_id})
        await self._send(
            {"type": "error", "code": ErrorCode.INTERNAL_ERROR.value, "error_id": error_id}
        )

    # Heartbeat

    async def _heartbeat(self) -> None:
        """Send ``ping`` every interval; close the socket when no ``pong`` follows in time."""
        while not self.closing:
            await asyncio.sleep(settings.WEBSOCKET_PING_INTERVAL_SECONDS)
            self.pong_received.clear()
            await self._send({"type": "ping"})
            try:
                await asyncio.wait_for(
                    self.pong_received.wait(), timeout=settings.WEBSOCKET_PONG_TIMEOUT_SECONDS
                )
            except TimeoutError:
                logger.info("conversations.websocket.pong_timeout", extra=self._log_fields())
                self.closing = True
                await self.close(code=CLOSE_PONG_TIMEOUT)
                return

    # Helpers

    async def _send(self, frame: Event) -> bool:
        """Send one frame; return False when the socket is closing or closed."""
        if self.closing:
            return False
        text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        async with self.send_lock:
            try:
                await self.send(text_data=text)
            except (OSError, RuntimeError):
                # uvicorn raises ClientDisconnected (an OSError) for a client that went
                # away, and RuntimeError after the socket was closed.
                self.closing = True
                self.turn_cancelled.set()
                return False
        return True

    def _header(self, name: str) -> str | None:
        expected = name.encode("latin-1")
        for key, value in self.scope.get("headers", []):
            if key.lower() == expected:
                return str(value.decode("latin-1"))
        return None

    def _log_fields(self) -> dict[str, object]:
        if self.session is None:
            return {}
        return {
            "tenant_id": self.session.client.tenant.pk,
            "api_key": self.session.client.api_key.prefix,
        }
