"""Server-Sent Events for the message endpoint: one SSE message per event of a reply.

A client asks for a stream with ``Accept: text/event-stream``. Each event is sent as soon as
the assistant produces it::

    event: text_delta
    data: {"type":"text_delta","delta":"Ось"}

The ``data`` line is the same JSON object that the JSON response lists, on one line (JSON
escapes newlines inside strings). The stream opens with a comment line, so that the status
line and headers leave at once, and ends after ``response_complete``.
"""

import json
import logging
import uuid
from collections.abc import Iterator

from django.db import DatabaseError
from django.http import StreamingHttpResponse
from rest_framework.request import Request

from conversations import events
from conversations.events import Event
from conversations.services import ConversationTurn
from vizochok.exceptions import DATABASE_RETRY_AFTER_SECONDS, ErrorCode, database_unreachable

logger = logging.getLogger(__name__)

EVENT_STREAM_MEDIA_TYPE = "text/event-stream"
STREAM_OPENING = b": stream opened\n\n"


def wants_event_stream(request: Request) -> bool:
    """Return whether the Accept header lists ``text/event-stream`` with a non-zero quality."""
    for media_range in request.headers.get("Accept", "").split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        if media_type.lower() != EVENT_STREAM_MEDIA_TYPE:
            continue
        quality = next(
            (
                value
                for key, _, value in (p.partition("=") for p in parameters)
                if key.strip().lower() == "q"
            ),
            "1",
        )
        try:
            return float(quality) > 0
        except ValueError:
            return True
    return False


def sse_message(event: Event) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


class EventStream:
    """The body of a streaming response for a started ``ConversationTurn``.

    The WSGI server calls ``close`` when the response ends, also when writing to a client
    that went away failed. Closing stops the turn at its next event and releases the
    conversation's lease, even if the stream never started.

    The status line is sent before the turn runs, so an error that the turn raises (a lost
    database connection, a lease taken over) ends the stream with an ``error`` event and
    ``response_complete`` instead of cutting it off.
    """

    def __init__(self, turn: ConversationTurn) -> None:
        self._turn = turn
        self._events = turn.events()
        self._opened = False
        self._failed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if not self._opened:
            self._opened = True
            return STREAM_OPENING
        if self._failed:
            raise StopIteration
        try:
            event = next(self._events)
        except StopIteration:
            raise
        except Exception as error:
            self._failed = True
            return b"".join(sse_message(event) for event in self._failure_events(error))
        return sse_message(event)

    def _failure_events(self, error: Exception) -> list[Event]:
        """Log an error that ended the turn and return the events that end the stream.

        A refused or lost database connection becomes ``database_unavailable``, as in a
        JSON response. Any other error becomes ``internal_error`` with the ``error_id`` of
        its log line.
        """
        conversation = self._turn.conversation
        fields = {"tenant_id": conversation.tenant_id, "conversation_id": conversation.public_id}
        if database_unreachable(error):
            logger.error(
                "conversations.stream.failed",
                extra={
                    **fields,
                    "code": ErrorCode.DATABASE_UNAVAILABLE.value,
                    "error_type": type(error).__name__,
                    "error": str(error).strip(),
                },
            )
            failure = events.error(
                ErrorCode.DATABASE_UNAVAILABLE, retry_after=DATABASE_RETRY_AFTER_SECONDS
            )
        else:
            error_id = uuid.uuid4().hex
            logger.error(
                "conversations.stream.failed",
                exc_info=error,
                extra={**fields, "code": ErrorCode.INTERNAL_ERROR.value, "error_id": error_id},
            )
            failure = events.error(ErrorCode.INTERNAL_ERROR, error_id=error_id)
        return [failure, events.response_complete()]

    def close(self) -> None:
        try:
            self._events.close()
        finally:
            try:
                self._turn.close()
            except DatabaseError as error:
                # Not raised, because the WSGI server would log a traceback. The lease expires
                # after lease_duration().
                conversation = self._turn.conversation
                logger.warning(
                    "conversations.turn.lease_release_failed",
                    extra={
                        "tenant_id": conversation.tenant_id,
                        "conversation_id": conversation.public_id,
                        "error": str(error).strip(),
                    },
                )


def event_stream_response(turn: ConversationTurn) -> StreamingHttpResponse:
    """Return the streaming response of a turn whose ``start`` succeeded."""
    response = StreamingHttpResponse(
        EventStream(turn), content_type=f"{EVENT_STREAM_MEDIA_TYPE}; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    # nginx buffers proxied responses unless this header turns it off, which would hold
    # back the events until the reply is complete.
    response["X-Accel-Buffering"] = "no"
    return response
