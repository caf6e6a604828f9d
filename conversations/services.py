"""Writes of the conversations app: starting a conversation and processing a message."""

import logging
import re
import secrets
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import date

from django.db import DatabaseError, transaction
from django.db.models import Q

from conversations import events
from conversations.assistants import Assistant, HistoryEntry, Turn, get_assistant
from conversations.events import CartSnapshot, Event, EventType
from conversations.identity import ANONYMOUS_SESSION_PREFIX, ShopperIdentity
from conversations.language import LANGUAGES, UKRAINIAN, detect_language
from conversations.leases import TurnLease, turn_lease_acquire
from conversations.limits import (
    conversation_limit_take,
    message_count_return,
    message_limits_take,
)
from conversations.models import MAX_IDEMPOTENCY_KEY_LENGTH, Conversation, Message
from conversations.tools import ShoppingTools
from tenants.models import AssistantSettings, Tenant
from vizochok.exceptions import (
    Conflict,
    ErrorCode,
    IdempotencyKeyReused,
    LimitExceeded,
    PayloadTooLarge,
)

logger = logging.getLogger(__name__)

# A shopper message is at most 64 KB of UTF-8, the limit of the chat protocol.
MAX_MESSAGE_BYTES = 64 * 1024
# Earlier messages handed to the assistant with each turn.
HISTORY_LIMIT = 20
# Key of the conversation's language in its state: the language that the client sent when
# it started the conversation, then the language of the last turn.
STATE_LANGUAGE = "language"
# Metadata value of a reply whose client disconnected before it was complete.
INTERRUPTED_CLIENT_DISCONNECTED = "client_disconnected"
# Reason of the reply recorded for a shopper message whose turn never ended (its worker
# stopped); also the ``reason`` of that reply's ``internal_error`` event.
INTERRUPTED_TURN_LOST = "interrupted"
# Printable ASCII (0x20 to 0x7E), the characters that an idempotency key may contain, with
# no space at either end. An HTTP server drops the spaces around a header's value, so a
# WebSocket key with such a space could never be replayed over HTTP.
_IDEMPOTENCY_KEY_PATTERN = re.compile(
    rf"[\x21-\x7e](?:[\x20-\x7e]{{0,{MAX_IDEMPOTENCY_KEY_LENGTH - 2}}}[\x21-\x7e])?"
)
# The field error of an invalid idempotency key, on every transport.
IDEMPOTENCY_KEY_INVALID = (
    f"Must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters of printable ASCII, without a "
    "space at the start or end."
)


def conversation_create(
    *,
    tenant: Tenant,
    store_id: str,
    identity: ShopperIdentity,
    language: str | None = None,
) -> Conversation:
    """Start a conversation of ``identity``; raise ``LimitExceeded`` over the daily limit.

    The merchant finds the cart by the trusted user id, or by a generated session id for an
    anonymous shopper. ``identity`` must come from ``shopper_identity_resolve``. The
    client's ``language``, one of ``LANGUAGES``, is stored as the conversation's language,
    so the reply to a first message whose language cannot be detected uses it instead of
    the tenant's ``default_language``.
    """
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"Unknown language {language!r}; expected one of {LANGUAGES}.")
    session_id = identity.user_id or f"{ANONYMOUS_SESSION_PREFIX}{secrets.token_urlsafe(16)}"
    # One transaction, so that a failed insert does not keep the count it took.
    with transaction.atomic():
        conversation_limit_take(tenant=tenant, identity=identity.limit_key)
        conversation = Conversation.objects.create(
            tenant=tenant,
            store_id=store_id,
            user_id=identity.user_id,
            session_id=session_id,
            limit_identity=identity.limit_key,
            state={STATE_LANGUAGE: language} if language is not None else {},
        )
    logger.info(
        "conversations.conversation.created",
        extra={
            "tenant_id": tenant.pk,
            "conversation_id": conversation.public_id,
            "store_id": store_id,
            "has_user_id": bool(identity.user_id),
            "language": language,
        },
    )
    return conversation


def message_too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The message is larger than {MAX_MESSAGE_BYTES} bytes; send a shorter text.",
        code=ErrorCode.MESSAGE_TOO_LARGE,
        extra={"max_size": MAX_MESSAGE_BYTES},
    )


def message_text_validate(text: str) -> None:
    """Raise ``message_too_large`` (HTTP 413) for text over ``MAX_MESSAGE_BYTES``."""
    if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise message_too_large()


def idempotency_key_is_valid(key: str) -> bool:
    """Return whether ``key`` is 1 to 255 characters of printable ASCII without edge spaces."""
    return _IDEMPOTENCY_KEY_PATTERN.fullmatch(key) is not None


@dataclass
class ConversationTurn:
    """Process one shopper message and yield the events of the reply.

    Steps: take the conversation's lease (``agent_busy`` if another turn has it), check the
    rate and daily limits, answer a shopper message left without a reply by a stopped
    worker, save the shopper's message, load the merchant's cart until one load succeeded,
    run the assistant, save its message with every event, and end with ``response_complete``.

    The tools write the cart snapshot as soon as the merchant confirms a change, not at the
    end of the turn. The merchant's cart has changed by then, so a failure later in the turn
    must not roll the snapshot back. An unexpected error becomes an
    ``internal_error`` event and the reply is saved with the events sent up to then.

    Run it outside ``transaction.atomic`` (see ``conversations.leases``). Errors raised
    before the first event (``message_too_large``, ``agent_busy``, the limits) leave nothing
    written.

    ``run`` does everything in one generator. A streaming response calls ``start`` first,
    so that these two errors become normal HTTP errors, then iterates ``events`` and
    calls ``close`` when the response ends. If the client goes away, closing the
    generator stops the work at the next event. The reply is then saved with the events
    produced so far and ``"interrupted": "client_disconnected"`` in its metadata.

    A turn that ends before the shopper's message is saved (its client went away before
    the first event, or the database failed first) takes back the daily message count
    that ``start`` took, so a message that was not stored is not counted.

    With an ``idempotency_key`` that a shopper message of this conversation was stored with,
    the turn is a replay. ``start`` then takes no limit, and ``events`` yields the stored
    reply's events with the current cart in the last ``cart_changed``, calling no assistant
    or webhook. ``start`` raises ``idempotency_key_reused`` when that message has another
    text, and ``agent_busy`` while its turn still runs.
    """

    conversation: Conversation
    text: str
    assistant: Assistant | None = None
    # The client's idempotency key (the Idempotency-Key header, or the ``idempotency_key``
    # field of a WebSocket message), stored with the shopper's message. The caller checks it
    # with ``idempotency_key_is_valid``.
    idempotency_key: str | None = None
    # The assistant's saved message, set when ``run`` has finished, or by ``start`` for a
    # replay.
    reply: Message | None = field(default=None, init=False)
    # Whether ``start`` found the stored reply of this turn's idempotency key.
    replayed: bool = field(default=False, init=False)
    _lease: TurnLease | None = field(default=None, init=False)
    # The UTC day whose daily message count ``start`` took, until the message is saved.
    _counted_day: date | None = field(default=None, init=False)
    # The lease that ``start`` took and failed to release, which ``close`` releases later.
    _unreleased_lease: TurnLease | None = field(default=None, init=False)

    def run(self) -> Iterator[Event]:
        self.start()
        yield from self.events()

    def start(self) -> None:
        """Check the text, take the conversation's lease and count the message.

        Raise 413 for a text over the limit and 409 while another turn runs. Raise 422 for an
        idempotency key stored with another text and 429 over a rate or daily limit. Nothing
        is written then. Any other error releases the lease before it is raised. A replay
        (see the class) returns without a lease.
        """
        if self._lease is not None or self.replayed:
            return
        message_text_validate(self.text)
        # A reply stored for the key is final, so it is replayed without the lease. Without
        # a reply the key's turn may still run, and the lease decides.
        if self._replay_stored_reply(lease=None):
            return
        lease = self._take_lease()
        try:
            replayed = self._replay_stored_reply(lease=lease)
        except Exception:
            self._lease_release_logged(lease)
            raise
        if replayed:
            # The reply is stored, so a failed release does not fail the replay.
            self._lease_release_logged(lease)
            return
        try:
            self._counted_day = message_limits_take(conversation=self.conversation)
        except LimitExceeded as error:
            lease.release()
            logger.info(
                "conversations.turn.limited", extra={**self._log_fields(), "code": error.code}
            )
            raise
        except Exception:
            # A failed query (a deadlock, a statement timeout) would otherwise keep the lease,
            # and every retry would get agent_busy until the lease expired.
            self._lease_release_logged(lease)
            raise
        self._lease = lease

    def events(self) -> Generator[Event, None, None]:
        """Yield the events of the reply; ``start`` must have succeeded."""
        if self.replayed:
            yield from _replayed_events(self.reply_message(), cart=self.conversation.cart)
            return
        lease = self._lease
        if lease is None:
            raise RuntimeError("The turn has not started; call start() first.")
        try:
            yield from self._process(lease)
        finally:
            self._unsaved_count_return()
            self._lease_release_logged(lease)

    def close(self) -> bool:
        """Release the lease of a started turn whose events were not consumed to the end.

        Safe to call after the events finished: the lease is then released already, and a
        later turn's lease has another start time, so it is left alone. A turn whose events
        never started gets its daily message count back. After a lost database connection
        the caller may call it again once the database is back: it also releases a lease
        that ``start`` failed to release. Return whether a held lease was released.
        """
        self._unsaved_count_return()
        lease = self._lease or self._unreleased_lease
        released = lease.release() if lease is not None else False
        self._unreleased_lease = None
        return released

    def reply_message(self) -> Message:
        """Return the assistant's saved message; valid once ``run`` has been consumed."""
        if self.reply is None:
            raise RuntimeError("The turn has not finished; consume run() first.")
        return self.reply

    def _unsaved_count_return(self) -> None:
        day = self._counted_day
        if day is None:
            return
        self._counted_day = None
        try:
            message_count_return(conversation=self.conversation, day=day)
        except DatabaseError:
            # Not raised, so that it does not hide the error that ended the turn.
            # NOTE: the identity then keeps one count too many for that day.
            logger.exception("conversations.turn.count_return_failed", extra=self._log_fields())
            return
        logger.info("conversations.turn.count_returned", extra=self._log_fields())

    def _replay_stored_reply(self, *, lease: TurnLease | None) -> bool:
        """Set ``reply`` to the stored reply of this turn's idempotency key, if it has one.

        Return whether it did. Raise ``idempotency_key_reused`` when the key's shopper
        message has another text. Under the ``lease`` a key's message without a reply was
        left by a stopped turn, so it gets the ``interrupted`` reply, which is replayed.
        """
        if self.idempotency_key is None:
            return False
        shopper_message = self.conversation.messages.filter(
            role=Message.Role.USER, idempotency_key=self.idempotency_key
        ).first()
        if shopper_message is None:
            return False
        if shopper_message.text != self.text:
            logger.info(
                "conversations.turn.idempotency_key_reused",
                extra={**self._log_fields(), "message_id": shopper_message.public_id},
            )
            raise IdempotencyKeyReused(
                "This idempotency key was sent with another message text in this conversation; "
                "send a new key with each new message."
            )
        reply = _reply_to(shopper_message)
        if reply is None and lease is not None:
            reply = self._close_abandoned_turn()
        if reply is None:
            return False
        self.reply = reply
        self.replayed = True
        logger.info(
            "conversations.turn.replayed",
            extra={**self._log_fields(), "message_id": reply.public_id},
        )
        return True

    def _take_lease(self) -> TurnLease:
        lease = turn_lease_acquire(conversation=self.conversation)
        if lease is None:
            logger.info("conversations.turn.busy", extra=self._log_fields())
            raise Conflict(
                "Another message of this conversation is being processed; retry when it is done.",
                code=ErrorCode.AGENT_BUSY,
            )
        # Another process may have finished a turn since the caller read the row.
        try:
            self.conversation.refresh_from_db()
        except Exception:
            self._lease_release_logged(lease)
            raise
        return lease

    def _lease_release_logged(self, lease: TurnLease) -> None:
        """Release ``lease``, or log a database failure and keep the lease for ``close``."""
        try:
            lease.release()
        except DatabaseError:
            # Not raised, so that it does not hide the error that ended the turn, or fail a
            # reply that is complete. Unless ``close`` succeeds later, the lease expires after
            # lease_duration(), and messages get agent_busy until then.
            self._unreleased_lease = lease
            logger.exception("conversations.turn.lease_release_failed", extra=self._log_fields())

    def _process(self, lease: TurnLease) -> Iterator[Event]:
        is_first_message = not self.conversation.messages.exists()
        if not is_first_message:
            self._close_abandoned_turn()
        turn = self._build_turn(lease, first_message=is_first_message)
        self._save_shopper_message(turn.language)
        self._counted_day = None
        assistant = self.assistant or get_assistant(self.conversation.tenant)
        sent: list[Event] = []
        replies = self._assistant_events(assistant, turn)
        try:
            for event in replies:
                sent.append(event)
                yield event
        except GeneratorExit:
            # The client went away, also when the error event of a failed assistant was
            # the one it missed. Stop the assistant and keep what happened so far.
            self._save_interrupted(lease, turn, assistant.name, sent, replies)
            raise
        sent.append(events.response_complete())
        self._save_reply(lease, turn, assistant.name, sent)
        yield sent[-1]

    def _assistant_events(self, assistant: Assistant, turn: Turn) -> Iterator[Event]:
        """Yield the assistant's events, then an ``internal_error`` event if it raised.

        The turn is the boundary between the assistant and the client: whatever the
        assistant raises is logged with an id and reported as an event, so the client
        always gets response_complete and the reply is saved.
        """
        try:
            self._load_cart(turn.tools)
            yield from assistant.respond(turn)
        except Exception as error:
            yield self._internal_error(error)

    def _save_interrupted(
        self,
        lease: TurnLease,
        turn: Turn,
        assistant_name: str,
        sent: list[Event],
        replies: Iterator[Event],
    ) -> None:
        """Stop the assistant and save the reply of a turn whose client disconnected.

        A failure here is logged and not raised, so that closing the stream still ends it.
        """
        try:
            _close_iterator(replies)
            turn.metadata["interrupted"] = INTERRUPTED_CLIENT_DISCONNECTED
            self._save_reply(lease, turn, assistant_name, sent)
        except Exception:
            logger.exception("conversations.turn.interrupted_save_failed", extra=self._log_fields())
            return
        logger.info(
            "conversations.turn.interrupted", extra={**self._log_fields(), "events": len(sent)}
        )

    def _build_turn(self, lease: TurnLease, *, first_message: bool) -> Turn:
        state = self.conversation.state
        # NOTE: with an English conversation language, a Cyrillic message that fits both
        # Ukrainian and Russian is Ukrainian, even where the tenant's default is Russian.
        fallback = state.get(STATE_LANGUAGE) or self._default_language()
        language = detect_language(self.text, fallback=fallback)
        return Turn(
            conversation=self.conversation,
            text=self.text,
            tools=ShoppingTools(conversation=self.conversation, lease=lease),
            language=language,
            history=self._history(),
            first_message=first_message,
        )

    def _default_language(self) -> str:
        language = (
            AssistantSettings.objects.filter(tenant=self.conversation.tenant)
            .values_list("default_language", flat=True)
            .first()
        )
        return language or UKRAINIAN

    def _history(self) -> list[HistoryEntry]:
        latest = self.conversation.messages.order_by("-created_at", "-pk")[:HISTORY_LIMIT]
        return [
            HistoryEntry(role=message.role, text=message.text, llm_messages=message.llm_messages)
            for message in reversed(latest)
        ]

    def _save_shopper_message(self, language: str) -> None:
        Message.objects.create(
            tenant=self.conversation.tenant,
            conversation=self.conversation,
            role=Message.Role.USER,
            text=self.text,
            metadata={"language": language},
            idempotency_key=self.idempotency_key or "",
        )

    def _load_cart(self, tools: ShoppingTools) -> None:
        """Load the merchant's cart with the first message processed while cart GET is set.

        Cart GET is sent once per conversation, so after a failure the conversation keeps
        the changes it makes itself. A failure is logged by the tools, and the turn goes on.
        """
        tools.cart_load()

    def _close_abandoned_turn(self) -> Message | None:
        """Answer a shopper message whose turn never ended, because its worker stopped.

        Such a message is the last one of the conversation, and its turn's lease expired
        before this turn could take it. The reply saved here contains only an
        ``internal_error`` event with reason ``interrupted``, so the history keeps
        alternating between shopper and assistant. Return that reply, or None when the last
        message has a reply.
        """
        last = self.conversation.messages.order_by("-created_at", "-pk").first()
        if last is None or last.role != Message.Role.USER:
            return None
        sent = [
            events.error(ErrorCode.INTERNAL_ERROR, reason=INTERRUPTED_TURN_LOST),
            events.response_complete(),
        ]
        reply = Message.objects.create(
            tenant=self.conversation.tenant,
            conversation=self.conversation,
            role=Message.Role.ASSISTANT,
            text="",
            events=sent,
            metadata={"assistant": None, "interrupted": INTERRUPTED_TURN_LOST},
        )
        logger.warning(
            "conversations.turn.abandoned_closed",
            extra={**self._log_fields(), "message_id": last.public_id},
        )
        return reply

    def _internal_error(self, error: Exception) -> Event:
        error_id = uuid.uuid4().hex
        logger.error(
            "conversations.turn.failed",
            exc_info=error,
            extra={**self._log_fields(), "error_id": error_id},
        )
        return events.error(ErrorCode.INTERNAL_ERROR, error_id=error_id)

    def _save_reply(
        self, lease: TurnLease, turn: Turn, assistant_name: str, sent: list[Event]
    ) -> None:
        self.conversation.state[STATE_LANGUAGE] = turn.language
        with transaction.atomic():
            lease.save(self.conversation, ["state"])
            self.reply = Message.objects.create(
                tenant=self.conversation.tenant,
                conversation=self.conversation,
                role=Message.Role.ASSISTANT,
                text=reply_text(sent),
                events=sent,
                metadata={**turn.metadata, "assistant": assistant_name},
                llm_messages=turn.llm_messages,
            )
        logger.info(
            "conversations.turn.completed",
            extra={**self._log_fields(), "assistant": assistant_name, "events": len(sent)},
        )

    def _log_fields(self) -> dict[str, object]:
        return {
            "tenant_id": self.conversation.tenant_id,
            "conversation_id": self.conversation.public_id,
        }


def reply_text(sent: list[Event]) -> str:
    """Return the text of a reply: its text blocks, separated by a blank line."""
    blocks: list[str] = []
    current: list[str] = []
    for event in sent:
        if event["type"] == EventType.TEXT_DELTA.value:
            current.append(event["delta"])
        elif event["type"] == EventType.TEXT_END.value and current:
            blocks.append("".join(current))
            current = []
    if current:
        blocks.append("".join(current))
    return "\n\n".join(blocks)


def _replayed_events(reply: Message, *, cart: CartSnapshot) -> list[Event]:
    """Return the stored events of ``reply``, ending with ``response_complete``.

    A reply saved after its client disconnected lacks that last event, which a client
    waits for before it sends the next message. The last ``cart_changed`` event gets the
    ``items`` and ``total`` of ``cart``, the conversation's cart now. A client shows the cart
    of the last such event, and later turns may have changed the cart since the reply.
    """
    stored: list[Event] = list(reply.events)
    changes = [
        index for index, event in enumerate(stored) if event["type"] == EventType.CART_CHANGED.value
    ]
    if changes:
        last = changes[-1]
        stored[last] = {
            **stored[last],
            "items": [dict(item) for item in cart["items"]],
            "total": cart["total"],
        }
    if not stored or stored[-1]["type"] != EventType.RESPONSE_COMPLETE.value:
        stored.append(events.response_complete())
    return stored


def _reply_to(shopper_message: Message) -> Message | None:
    """Return the assistant's reply to ``shopper_message``, or None if none was saved.

    A conversation runs one turn at a time, and a turn saves its reply after its shopper
    message, so the reply is the first assistant message after it.
    """
    return (
        Message.objects.filter(
            conversation_id=shopper_message.conversation_id, role=Message.Role.ASSISTANT
        )
        .filter(
            Q(created_at__gt=shopper_message.created_at)
            | Q(created_at=shopper_message.created_at, pk__gt=shopper_message.pk)
        )
        .order_by("created_at", "pk")
        .first()
    )


def _close_iterator(iterator: Iterator[Event]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
