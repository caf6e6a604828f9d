"""The boundary to the LLM: chat completions with tools through the ``openai`` client.

Every model call of the project goes through this module. It works with any
OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM, Ollama, ...) and sends
plain or streamed requests. Every failure becomes one of the ``LLMError`` subclasses below.
Each call is logged as ``llm.completion`` (or ``llm.completion_failed``) with the tenant,
the conversation, the model, the token counts, the duration and the provider's request id.

The client's own retries are off. This module retries itself, at most
``LLM_MAX_RETRIES`` times and only while the turn's ``Deadline`` leaves time, so that a
retry never pushes a turn past its deadline.
"""

import email.utils
import functools
import json
import logging
import math
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard, TypeVar
from urllib.parse import urlsplit

import openai
from django.conf import settings
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from conversations.llm_http import deadline_http_client, deadline_scope
from vizochok.text import is_storable_text

logger = logging.getLogger(__name__)

# Self-hosted servers such as vLLM and Ollama ignore the key, but the client requires one.
PLACEHOLDER_API_KEY = "not-needed"
REQUEST_ID_HEADER = "x-request-id"
# Rough size of a token, used only when a server reports no usage or an invalid one.
CHARS_PER_TOKEN_ESTIMATE = 4
# Reported token counts above this, or below 0, are estimated instead. A negative count
# would lower the budgets' counters, and a huge one would overflow them.
# NOTE: the bound is a choice of this project, not a limit of any server.
MAX_REPORTED_TOKENS = 10_000_000
# A retry is not started with less time than this left before the deadline, in seconds.
MIN_ATTEMPT_SECONDS = 1.0
# The longest Retry-After, in seconds, that a retry waits for. The shopper gets no event while
# the turn waits, and each waiting turn occupies a worker, so a longer wait ends the turn.
# NOTE: the bound is a choice of this project, not a limit of any server.
MAX_RETRY_AFTER_SECONDS = 10.0
RETRYABLE_STATUS_CODES = frozenset({408, 409, 429})
# Characters of one completion: its text and refusal, and the id, name and arguments of each
# tool call. About 10,000 tokens at 4 characters per token, far above a shopping reply. A
# larger completion is rejected, so a server cannot fill the reply, its stored events and
# the later requests with megabytes of text.
# NOTE: the bound is a choice of this project. A plain (not streamed) body is read whole
# before it is checked; a stream is cut at the chunk that passes the bound.
MAX_COMPLETION_CHARS = 40_000
# Tool calls one completion may contain. The agent runs at most 50 per message, and a
# completion with thousands of calls would store a tool result for each.
MAX_TOOL_CALLS_PER_COMPLETION = 100
# Finish reasons of a completion that the server ended early: "length" (the token limit or
# the context window was reached) and "content_filter" (the provider's filter removed the
# rest). Its text is cut, and its tool calls may be cut too.
INCOMPLETE_FINISH_REASONS = frozenset({"length", "content_filter"})
BASE_URL_SCHEMES = frozenset({"http", "https"})

# Reasons reported to the client in the ``reason`` field of an ``internal_error`` event.
REASON_UNAVAILABLE = "llm_unavailable"
REASON_TIMEOUT = "llm_timeout"
REASON_REQUEST_REJECTED = "llm_request_rejected"
REASON_INVALID_RESPONSE = "llm_invalid_response"
REASON_INCOMPLETE_RESPONSE = "llm_response_incomplete"


class Deadline:
    """A point in ``time.monotonic()`` time by which a turn must end."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0


class LLMError(Exception):
    """A chat completion failed; ``reason`` is the code reported to the client."""

    default_reason = REASON_UNAVAILABLE

    def __init__(
        self,
        detail: str,
        *,
        model: str = "",
        request_id: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.model = model
        self.request_id = request_id
        self.status_code = status_code
        # Seconds the server asked to wait in a Retry-After header, if it sent one.
        self.retry_after = retry_after
        # The tokens of a plain completion that arrived whole but was rejected, which the
        # caller records like those of an accepted one.
        self.usage: Usage | None = None

    @property
    def reason(self) -> str:
        return self.default_reason

    @property
    def retryable(self) -> bool:
        return False


class LLMConnectionError(LLMError):
    """The endpoint could not be reached, or the connection broke mid-response."""

    @property
    def retryable(self) -> bool:
        return True


class LLMTimeout(LLMError):
    """The endpoint did not respond within the request timeout or the turn deadline."""

    default_reason = REASON_TIMEOUT

    @property
    def retryable(self) -> bool:
        return True


class LLMHTTPError(LLMError):
    """The endpoint returned a 4xx or 5xx status, or sent an error object in a stream."""

    @property
    def reason(self) -> str:
        return REASON_UNAVAILABLE if self.retryable else REASON_REQUEST_REJECTED

    @property
    def retryable(self) -> bool:
        code = self.status_code
        return code is None or code >= 500 or code in RETRYABLE_STATUS_CODES


class LLMInvalidResponse(LLMError):
    """The endpoint returned something other than a usable completion.

    Causes: a body that is not a chat completion (HTML, invalid JSON, JSON nested too
    deeply to parse), no choice or an empty one, tool call arguments that are not a JSON
    object, a call of a tool that was not offered, or a completion over
    ``MAX_COMPLETION_CHARS`` or ``MAX_TOOL_CALLS_PER_COMPLETION``.
    """

    default_reason = REASON_INVALID_RESPONSE


class LLMIncompleteResponse(LLMError):
    """The server ended the completion early: its finish reason is "length" or "content_filter"."""

    default_reason = REASON_INCOMPLETE_RESPONSE


class LLMConfigurationError(LLMError):
    """``OPENAI_BASE_URL`` cannot be used, so no request was sent."""


@dataclass(frozen=True)
class LLMContext:
    """The tenant and conversation a call is made for, for logs."""

    tenant_id: int
    conversation_id: str


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    # Chat messages in the OpenAI format, system prompt first.
    messages: list[dict[str, Any]]
    # Tool definitions in the OpenAI "tools" format.
    tools: list[dict[str, Any]] = field(default_factory=list)
    # Tool names a tool call may use. It can list more than ``tools``: the caller then
    # rejects a call of a tool it did not offer itself, with a tool result for the model.
    # An empty value means the names in ``tools``.
    accepted_tool_names: Collection[str] = ()
    temperature: float | None = None

    def tool_names(self) -> frozenset[str]:
        if self.accepted_tool_names:
            return frozenset(self.accepted_tool_names)
        return frozenset(tool["function"]["name"] for tool in self.tools)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    # The arguments exactly as the model sent them, kept for the conversation history.
    raw_arguments: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # True when the server reported no usage and the counts were estimated from text length.
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    model: str
    text: str
    tool_calls: list[ToolCall]
    finish_reason: str | None
    usage: Usage
    request_id: str | None
    duration_ms: int

    @property
    def incomplete(self) -> bool:
        """Tell whether the server ended the completion early, so its tool calls were dropped."""
        return _ended_early(self.finish_reason)

    def assistant_message(self) -> dict[str, Any]:
        """Return the completion as an assistant message for the next request's history."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.raw_arguments},
                }
                for call in self.tool_calls
            ]
        return message


def chat_completion(
    request: CompletionRequest, *, context: LLMContext, deadline: Deadline
) -> Completion:
    """Send ``request`` as one plain (not streamed) chat completion and return the answer."""
    return _with_retries(
        lambda attempt: _plain_attempt(request, context, deadline, attempt), context, deadline
    )


def chat_completion_stream(
    request: CompletionRequest, *, context: LLMContext, deadline: Deadline
) -> "CompletionStream":
    """Send ``request`` as a streamed chat completion; iterate the result for text deltas."""
    return CompletionStream(request=request, context=context, deadline=deadline)


class CompletionStream:
    """Text deltas of a streamed completion; ``completion`` is set once iteration ends.

    A failed request is retried while no delta has been handed out yet. A failure after
    that raises, because the deltas already reached the shopper.

    ``unfinished_usage`` lists an estimate for each attempt that received a chunk but did
    not complete: it failed, or the caller closed the stream. The server processed its
    prompt, so the caller records these tokens like those of ``completion``.
    """

    def __init__(self, *, request: CompletionRequest, context: LLMContext, deadline: Deadline):
        self.request = request
        self.context = context
        self.deadline = deadline
        self.completion: Completion | None = None
        self.unfinished_usage: list[Usage] = []
        self._stream: openai.Stream[ChatCompletionChunk] | None = None
        # The chunks of the attempt in progress.
        self._assembly: _StreamAssembly | None = None

    def __iter__(self) -> Iterator[str]:
        attempt = 1
        while True:
            yielded = False
            try:
                for delta in self._attempt(attempt):
                    yielded = True
                    yield delta
                return
            except LLMError as error:
                self._end_unfinished_attempt()
                delay = None if yielded else _retry_delay(error, attempt, self.deadline)
                if delay is None:
                    raise
            _wait_before_retry(self.context, attempt, delay)
            attempt += 1

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._end_unfinished_attempt()

    def _end_unfinished_attempt(self) -> None:
        """Add the estimated usage of the attempt in progress if it has chunks but no result."""
        assembly, self._assembly = self._assembly, None
        if assembly is None or assembly.chunks == 0 or self.completion is not None:
            return
        usage = assembly.unfinished_usage(self.request)
        self.unfinished_usage.append(usage)
        logger.info(
            "llm.completion_unfinished",
            extra={
                "tenant_id": self.context.tenant_id,
                "conversation_id": self.context.conversation_id,
                "model": self.request.model,
                "stream": True,
                "chunks": assembly.chunks,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "usage_estimated": usage.estimated,
            },
        )

    def _attempt(self, attempt: int) -> Iterator[str]:
        started = time.monotonic()
        request_id: str | None = None
        assembly = _StreamAssembly()
        self._assembly = assembly
        try:
            # The deadline scope bounds every socket read, so a server that trickles bytes
            # or SSE comments, which yield no chunk, is cut at the deadline too.
            with deadline_scope(self.deadline):
                self._stream = _client().chat.completions.create(
                    **_request_kwargs(self.request, self.deadline),
                    stream=True,
                    **_stream_options(),
                )
                request_id = self._stream.response.headers.get(REQUEST_ID_HEADER)
                _event_stream_check(self._stream.response)
                for chunk in self._stream:
                    text = assembly.add(chunk)
                    if text:
                        yield text
                    if self.deadline.expired():
                        raise LLMTimeout("The turn deadline passed during the streamed response.")
            tail = assembly.end_text()
            self.completion = assembly.completion(
                self.request, request_id=request_id, duration_ms=_since(started)
            )
            # Sent only after the completion was accepted, so an invalid one is still retried.
            if tail:
                yield tail
        except LLMError as error:
            error.model, error.request_id = self.request.model, error.request_id or request_id
            _log_failure(self.context, self.request, error, started, attempt, stream=True)
            raise
        except Exception as error:
            mapped = _mapped_error(error, self.request.model, request_id)
            _log_failure(self.context, self.request, mapped, started, attempt, stream=True)
            raise mapped from error
        finally:
            self.close()
        _log_completion(self.context, self.completion, attempt, stream=True)


_Result = TypeVar("_Result")
# A tool call as the server sent it: id, function name, arguments (JSON text).
_RawToolCall = tuple[str | None, str | None, str | None]


def _with_retries(
    send: Callable[[int], _Result], context: LLMContext, deadline: Deadline
) -> _Result:
    attempt = 1
    while True:
        try:
            return send(attempt)
        except LLMError as error:
            delay = _retry_delay(error, attempt, deadline)
            if delay is None:
                raise
        _wait_before_retry(context, attempt, delay)
        attempt += 1


def _retry_delay(error: LLMError, attempt: int, deadline: Deadline) -> float | None:
    """Return the seconds to wait before retrying after ``error``, or None for no retry.

    The wait is ``LLM_RETRY_DELAY_SECONDS``, or the server's Retry-After when that is longer.
    A Retry-After over ``MAX_RETRY_AFTER_SECONDS`` means no retry. A retry must also leave
    ``MIN_ATTEMPT_SECONDS`` before the deadline after the wait.
    """
    if not error.retryable or attempt > settings.LLM_MAX_RETRIES:
        return None
    delay = settings.LLM_RETRY_DELAY_SECONDS
    if error.retry_after is not None:
        if error.retry_after > MAX_RETRY_AFTER_SECONDS:
            return None
        delay = max(delay, error.retry_after)
    if deadline.remaining() - delay < MIN_ATTEMPT_SECONDS:
        return None
    return delay


def _wait_before_retry(context: LLMContext, attempt: int, delay: float) -> None:
    logger.info(
        "llm.completion_retry",
        extra={
            "tenant_id": context.tenant_id,
            "conversation_id": context.conversation_id,
            "attempt": attempt + 1,
            "delay_seconds": delay,
        },
    )
    time.sleep(delay)


def _plain_attempt(
    request: CompletionRequest, context: LLMContext, deadline: Deadline, attempt: int
) -> Completion:
    started = time.monotonic()
    request_id: str | None = None
    parsed: object = None
    body_chars = 0
    try:
        with deadline_scope(deadline):
            raw = _client().chat.completions.with_raw_response.create(
                **_request_kwargs(request, deadline)
            )
            request_id = raw.headers.get(REQUEST_ID_HEADER)
            parsed = raw.parse()
            body_chars = len(raw.text)
        completion = _completion_from_plain(
            parsed, request, request_id=request_id, duration_ms=_since(started)
        )
    except LLMError as error:
        error.model, error.request_id = request.model, error.request_id or request_id
        _rejected_usage_attach(error, parsed, request, context, body_chars=body_chars)
        _log_failure(context, request, error, started, attempt, stream=False)
        raise
    except Exception as error:
        mapped = _mapped_error(error, request.model, request_id)
        _rejected_usage_attach(mapped, parsed, request, context, body_chars=body_chars)
        _log_failure(context, request, mapped, started, attempt, stream=False)
        raise mapped from error
    _log_completion(context, completion, attempt, stream=False)
    return completion


def _rejected_usage_attach(
    error: LLMError,
    parsed: object,
    request: CompletionRequest,
    context: LLMContext,
    *,
    body_chars: int,
) -> None:
    """Set ``error.usage`` when the response body is a chat completion that was rejected.

    The server processed the prompt of such a completion (an unknown tool, invalid
    arguments, a completion over the size limits), as it did for a stream that broke after
    its first chunk. Its usage is the reported one, or an estimate from the body's length.
    """
    if not isinstance(parsed, ChatCompletion):
        return
    reported = getattr(parsed, "usage", None)
    error.usage = _usage(reported, request, "", [], completion_chars=body_chars)
    logger.info(
        "llm.completion_unfinished",
        extra={
            "tenant_id": context.tenant_id,
            "conversation_id": context.conversation_id,
            "model": request.model,
            "stream": False,
            "prompt_tokens": error.usage.prompt_tokens,
            "completion_tokens": error.usage.completion_tokens,
            "usage_estimated": error.usage.estimated,
        },
    )


@functools.lru_cache(maxsize=8)
def _cached_client(base_url: str, api_key: str) -> openai.OpenAI:
    # One client per endpoint and key, shared by the threads of a process: its connection
    # pool is thread-safe and reusing it saves a TCP (and TLS) handshake per call.
    return openai.OpenAI(
        base_url=base_url or None,
        api_key=api_key or PLACEHOLDER_API_KEY,
        timeout=settings.LLM_REQUEST_TIMEOUT_SECONDS,
        max_retries=0,
        http_client=deadline_http_client(
            base_url=base_url, timeout=settings.LLM_REQUEST_TIMEOUT_SECONDS
        ),
    )


def _client() -> openai.OpenAI:
    _base_url_check(settings.OPENAI_BASE_URL)
    return _cached_client(settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY)


def _base_url_check(base_url: str) -> None:
    """Raise ``LLMConfigurationError`` unless ``base_url`` is empty or an http(s) URL.

    A URL with a user name or password is rejected too: the HTTP client sends them as Basic
    authentication in place of the API key, and its request log shows the URL. The errors
    never repeat the URL, which may contain a secret.
    """
    if not base_url:
        return
    # urlsplit drops tabs and line breaks, and the HTTP client then rejects the URL with an
    # error of its own, which no caller catches.
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in base_url):
        raise LLMConfigurationError(
            "OPENAI_BASE_URL contains a control character, such as a tab or a line break; "
            "remove it."
        )
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        # An invalid port or IPv6 address.
        raise LLMConfigurationError("OPENAI_BASE_URL is not a valid URL.") from None
    if parts.scheme not in BASE_URL_SCHEMES or not host:
        scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise LLMConfigurationError(
            f"OPENAI_BASE_URL must be an http or https URL with a host, got {scheme}; set it "
            "to a URL such as http://127.0.0.1:8000/v1."
        )
    if parts.username is not None or parts.password is not None:
        raise LLMConfigurationError(
            "OPENAI_BASE_URL contains a user name or password; remove them and set the key "
            "in OPENAI_API_KEY."
        )


def _request_kwargs(request: CompletionRequest, deadline: Deadline) -> dict[str, Any]:
    timeout = min(settings.LLM_REQUEST_TIMEOUT_SECONDS, deadline.remaining())
    if timeout <= 0:
        raise LLMTimeout("The turn deadline passed before the request was sent.")
    kwargs: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "timeout": timeout,
    }
    if request.tools:
        kwargs["tools"] = request.tools
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    return kwargs


def _stream_options() -> dict[str, Any]:
    if not settings.LLM_STREAM_USAGE:
        return {}
    return {"stream_options": {"include_usage": True}}


def _mapped_error(error: Exception, model: str, request_id: str | None) -> LLMError:
    """Translate an exception of the openai client (or of parsing) into an ``LLMError``."""
    fields: dict[str, Any] = {"model": model, "request_id": request_id}
    if isinstance(error, openai.APITimeoutError):
        return LLMTimeout("The request timed out.", **fields)
    if isinstance(error, openai.APIConnectionError):
        return LLMConnectionError(f"Connection failed: {error}", **fields)
    if isinstance(error, openai.APIStatusError):
        fields["request_id"] = error.request_id or request_id
        return LLMHTTPError(
            f"HTTP {error.status_code}: {_short(error.message)}",
            status_code=error.status_code,
            retry_after=_retry_after_seconds(error.response.headers),
            **fields,
        )
    if isinstance(error, openai.APIResponseValidationError):
        return LLMInvalidResponse(f"The response failed validation: {error}", **fields)
    if isinstance(error, openai.APIError):
        # The server sent an {"error": ...} object inside a stream.
        return LLMHTTPError(f"The server reported an error: {_short(error.message)}", **fields)
    if isinstance(error, ValueError | TypeError | AttributeError | LookupError):
        # json.JSONDecodeError is a ValueError. Missing fields surface as the other types,
        # and "choices" sent as an object as a KeyError.
        return LLMInvalidResponse(f"The response is not a chat completion: {error}", **fields)
    if isinstance(error, RecursionError):
        # JSON nested deeper than the parser's limit of about 1,000 levels, in a body or in
        # a stream chunk.
        return LLMInvalidResponse(
            "The response is not a chat completion: JSON nested too deeply.", **fields
        )
    raise error


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Return the wait in a Retry-After header, in seconds, or None without a valid one.

    The header contains either seconds or an HTTP date. A date in the past means no wait.
    """
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            date = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if date.tzinfo is None:
            # parsedate_to_datetime returns a naive datetime for the zone "-0000", which is UTC.
            date = date.replace(tzinfo=UTC)
        seconds = max(0.0, (date - datetime.now(UTC)).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _completion_from_plain(
    parsed: object, request: CompletionRequest, *, request_id: str | None, duration_ms: int
) -> Completion:
    if not isinstance(parsed, ChatCompletion):
        # The client returns the body as text when the server did not send JSON.
        raise LLMInvalidResponse("The response body is not JSON.")
    _error_object_check(getattr(parsed, "error", None))
    choices = parsed.choices or []
    if not choices or choices[0].message is None:
        raise LLMInvalidResponse("The response has no choice.")
    message = choices[0].message
    finish_reason = choices[0].finish_reason
    raw_calls: list[_RawToolCall] = []
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is None:
            raise LLMInvalidResponse(f"The model made a tool call of type {call.type!r}.")
        arguments = _arguments_text(function.arguments)
        if arguments is not None and not isinstance(arguments, str):
            # Checked here because _tool_calls would read false, 0 or [] as no arguments.
            raise LLMInvalidResponse(
                f"A tool call has {type(arguments).__name__} arguments, not a JSON object."
            )
        raw_calls.append((call.id, function.name, arguments))
    _tool_call_count_check(len(raw_calls))
    # A refusal comes in its own field and is part of the reply. Both fields are joined, as
    # in a stream, so blank content does not hide a refusal.
    text = (message.content or "") + (message.refusal or "")
    _size_check(len(text) + sum(_raw_call_size(raw_call) for raw_call in raw_calls))
    text = _storable_text(text)
    tool_calls = [] if _ended_early(finish_reason) else _tool_calls(raw_calls, request)
    usage = _usage(parsed.usage, request, text, tool_calls)
    return _checked_completion(
        Completion(
            model=request.model,
            text=text,
            tool_calls=tool_calls,
            finish_reason=finish_reason,
            usage=usage,
            request_id=request_id,
            duration_ms=duration_ms,
        )
    )


def _error_object_check(error: object) -> None:
    """Raise ``LLMHTTPError`` when a 200 response carries an error object in place of choices.

    Some servers and proxies report a failure of the model that way, in a plain body or as
    the JSON body of a streamed request. It is treated like an error object inside a stream.
    """
    if error is None:
        return
    message = error.get("message") if isinstance(error, dict) else error
    raise LLMHTTPError(f"The server reported an error: {_short(str(message))}")


def _event_stream_check(response: Any) -> None:
    """Raise when the server responded to a streamed request with JSON, not an SSE stream.

    The error object of such a body is reported as the server's error.
    """
    if not response.headers.get("content-type", "").startswith("application/json"):
        return
    try:
        body = json.loads(response.read())
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        _error_object_check(body.get("error"))
    raise LLMInvalidResponse(
        "The server returned a JSON body, not Server-Sent Events, for a streamed request; "
        "set LLM_STREAM=0 if it does not stream."
    )


def _arguments_text(arguments: str | None) -> str | None:
    """Return tool call arguments sent as a JSON object as JSON text, and others unchanged.

    OpenAI sends the arguments as a string of JSON text. Some servers send the object itself,
    which the client passes on unchecked, as it passes any other JSON type.
    """
    if isinstance(arguments, dict):
        return json.dumps(arguments, ensure_ascii=False)
    return arguments


@dataclass
class _StreamAssembly:
    """Collects the chunks of a streamed completion into one ``Completion``."""

    text: list[str] = field(default_factory=list)
    # Tool call parts in the order the calls began: [id, name, argument fragments].
    calls: list[list[Any]] = field(default_factory=list)
    # The position in ``calls`` of the call that the deltas of each index continue. Deltas
    # without an index are stored under None.
    call_positions: dict[int | None, int] = field(default_factory=dict)
    finish_reason: str | None = None
    reported_usage: Any = None
    chunks: int = 0
    # Characters received so far, counted as MAX_COMPLETION_CHARS counts them.
    size: int = 0
    # The first half of a surrogate pair that ended the last text delta. It is held back
    # until the next delta, which may begin with the second half.
    held_surrogate: str = ""

    def add(self, chunk: object) -> str:
        """Add one chunk; return its text delta, which may be empty."""
        if not isinstance(chunk, ChatCompletionChunk):
            raise LLMInvalidResponse("A stream chunk is not a chat completion chunk.")
        self.chunks += 1
        if chunk.usage is not None:
            self.reported_usage = chunk.usage
        delta_text = ""
        for choice in chunk.choices or []:
            # Some servers send their only choice without an index.
            if choice.index is not None and choice.index != 0:
                continue
            self.finish_reason = choice.finish_reason or self.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            content = (delta.content or "") + (delta.refusal or "")
            self.size += len(content)
            delta_text += self._joined_text(content)
            for part in delta.tool_calls or []:
                self._add_tool_call_part(part)
            _size_check(self.size)
        if delta_text:
            self.text.append(delta_text)
        return delta_text

    def _add_tool_call_part(self, part: ChoiceDeltaToolCall) -> None:
        """Add one tool call delta: the first id and name it sends, and each argument piece.

        A server may send the id and name again in later deltas of the same call, and those
        repeats are dropped, so they count once against MAX_COMPLETION_CHARS, as in a plain
        completion.
        """
        call = self._call_of(part)
        name = arguments = None
        if part.function is not None:
            name, arguments = part.function.name, _arguments_text(part.function.arguments)
        for value in (part.id, name, arguments):
            if value is not None and not isinstance(value, str):
                raise LLMInvalidResponse(
                    f"A streamed tool call has a {type(value).__name__} where a string is expected."
                )
        if part.id and not call[0]:
            call[0] = part.id
            self.size += len(part.id)
        if name and not call[1]:
            call[1] = name
            self.size += len(name)
        if arguments:
            call[2].append(arguments)
            self.size += len(arguments)

    def _call_of(self, part: ChoiceDeltaToolCall) -> list[Any]:
        """Return the call that ``part`` continues, or a new call that it begins.

        OpenAI sends the index of the call with each delta. Some servers send each call whole
        in one delta without an index, or with index 0 for every call. So a delta begins a new
        call when its index is new, or when it has an id other than the call's at that index.
        """
        index = part.index if isinstance(part.index, int) else None
        position = self.call_positions.get(index)
        if position is None or (part.id and self.calls[position][0] not in ("", part.id)):
            # NOTE: a delta without an index and without an id continues the call before it,
            # so whole calls sent that way run together and their arguments fail to parse.
            self.calls.append(["", "", []])
            _tool_call_count_check(len(self.calls))
            position = self.call_positions[index] = len(self.calls) - 1
        return self.calls[position]

    def _joined_text(self, content: str) -> str:
        """Return ``content`` storable, joined with a surrogate half held from the delta before.

        A server that splits a character outside the BMP between two chunks sends its halves
        as unpaired surrogates.
        """
        content = self.held_surrogate + content
        self.held_surrogate = ""
        if content and "\ud800" <= content[-1] <= "\udbff":
            content, self.held_surrogate = content[:-1], content[-1]
        return _storable_text(content)

    def end_text(self) -> str:
        """Add and return the text still held when the stream ended, which may be empty.

        A held half has no second half left, so it becomes U+FFFD like any unpaired surrogate.
        """
        text = _storable_text(self.held_surrogate)
        self.held_surrogate = ""
        if text:
            self.text.append(text)
        return text

    def unfinished_usage(self, request: CompletionRequest) -> Usage:
        """Return the usage of a stream that stopped early, estimated unless it was reported."""
        arguments = "".join("".join(fragments) for _, _, fragments in self.calls)
        return _usage(self.reported_usage, request, "".join(self.text) + arguments, [])

    def completion(
        self, request: CompletionRequest, *, request_id: str | None, duration_ms: int
    ) -> Completion:
        if self.chunks == 0:
            raise LLMInvalidResponse("The stream ended without any chunk.")
        if self.finish_reason is None:
            # Every complete stream names a finish reason in its last choice chunk.
            raise LLMConnectionError("The stream ended before its last chunk.")
        raw_calls = [(call_id, name, "".join(arguments)) for call_id, name, arguments in self.calls]
        text = "".join(self.text)
        tool_calls = [] if _ended_early(self.finish_reason) else _tool_calls(raw_calls, request)
        return _checked_completion(
            Completion(
                model=request.model,
                text=text,
                tool_calls=tool_calls,
                finish_reason=self.finish_reason,
                usage=_usage(self.reported_usage, request, text, tool_calls),
                request_id=request_id,
                duration_ms=duration_ms,
            )
        )


def _tool_calls(raw_calls: Sequence[_RawToolCall], request: CompletionRequest) -> list[ToolCall]:
    accepted = request.tool_names()
    calls: list[ToolCall] = []
    used_ids: set[str] = set()
    for index, (call_id, name, raw_arguments) in enumerate(raw_calls):
        if not name or name not in accepted:
            raise LLMInvalidResponse(f"The model called an unknown tool: {_short(str(name))!r}.")
        # The id is stored in the conversation's history with the call.
        if call_id and not is_storable_text(call_id):
            raise LLMInvalidResponse(
                f"The id of the {name} call contains a NUL character or an unpaired "
                f"surrogate: {_short(call_id)!r}."
            )
        text = raw_arguments or ""
        # The arguments often quote the shopper's message, and the detail of the error is
        # logged, so it names their length and the parser's error, never the text.
        try:
            arguments = json.loads(text) if text.strip() else {}
        # RecursionError means nesting deeper than the parser's limit of about 1,000 levels.
        except RecursionError as error:
            raise LLMInvalidResponse(
                f"The arguments of the {name} call ({len(text)} characters) are nested too "
                "deeply to parse as JSON."
            ) from error
        except ValueError as error:
            raise LLMInvalidResponse(
                f"The arguments of the {name} call ({len(text)} characters) are not valid "
                f"JSON: {_json_error_position(error)}."
            ) from error
        if not isinstance(arguments, dict):
            raise LLMInvalidResponse(f"The arguments of the {name} call are not a JSON object.")
        if not _storable_value(arguments):
            raise LLMInvalidResponse(
                f"The arguments of the {name} call ({len(text)} characters) contain a NUL "
                "character or an unpaired surrogate."
            )
        call_id = _unique_call_id(call_id, index=index, used=used_ids)
        used_ids.add(call_id)
        calls.append(
            ToolCall(
                id=call_id,
                name=name,
                arguments=arguments,
                raw_arguments=text or "{}",
            )
        )
    return calls


def _unique_call_id(call_id: str | None, *, index: int, used: set[str]) -> str:
    """Return ``call_id``, or a generated id when it is empty or an earlier call has it.

    Each tool result names its call by id, so two calls of one completion with the same id
    would make their results ambiguous, and the stored history would repeat the clash in
    every later request. Some self-hosted servers leave the id out or repeat it.
    """
    if call_id and call_id not in used:
        return call_id
    candidate = f"call_{index}"
    suffix = 0
    while candidate in used:
        suffix += 1
        candidate = f"call_{index}_{suffix}"
    return candidate


def _storable_text(text: str) -> str:
    """Return ``text`` with NUL characters and unpaired surrogates replaced by U+FFFD.

    PostgreSQL stores neither, and an unpaired surrogate cannot be encoded as UTF-8 for the
    client. Adjacent halves of a pair are joined into their character.
    """
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # The UTF-16 round trip joins adjacent halves and replaces the unpaired ones.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _storable_value(value: Any) -> bool:
    """Return whether no string in a decoded JSON value contains NUL or an unpaired surrogate.

    The walk uses a stack, because the value may nest as deep as the JSON parser allows.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and not is_storable_text(item):
            return False
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _ended_early(finish_reason: object) -> bool:
    # A server may send any JSON value as the finish reason, and a list is not hashable.
    return isinstance(finish_reason, str) and finish_reason in INCOMPLETE_FINISH_REASONS


def _tool_call_count_check(count: int) -> None:
    if count > MAX_TOOL_CALLS_PER_COMPLETION:
        raise LLMInvalidResponse(
            f"The completion has more than {MAX_TOOL_CALLS_PER_COMPLETION} tool calls."
        )


def _size_check(chars: int) -> None:
    if chars > MAX_COMPLETION_CHARS:
        raise LLMInvalidResponse(
            f"The completion is longer than {MAX_COMPLETION_CHARS} characters of text and "
            "tool calls."
        )


def _raw_call_size(raw_call: _RawToolCall) -> int:
    # The parts are strings unless the server sent other JSON types, which _tool_calls
    # rejects later.
    return sum(len(part) for part in raw_call if isinstance(part, str))


def _checked_completion(completion: Completion) -> Completion:
    """Return ``completion``, or raise when it is empty and was not ended early.

    The caller reports an incomplete completion, empty or not, after recording its usage.
    """
    if completion.incomplete:
        return completion
    if not completion.text.strip() and not completion.tool_calls:
        raise LLMInvalidResponse(
            f"The choice has neither text nor tool calls (finish_reason "
            f"{completion.finish_reason!r})."
        )
    return completion


def _usage(
    reported: Any,
    request: CompletionRequest,
    text: str,
    tool_calls: list[ToolCall],
    *,
    completion_chars: int = 0,
) -> Usage:
    """Return the usage the server reported, or an estimate when it reported none.

    Counts that are not integers from 0 to ``MAX_REPORTED_TOKENS`` are estimated too. The
    estimate of the completion counts ``text``, the arguments of ``tool_calls`` and
    ``completion_chars`` more characters.
    """
    prompt_tokens = getattr(reported, "prompt_tokens", None)
    completion_tokens = getattr(reported, "completion_tokens", None)
    if _usable_count(prompt_tokens) and _usable_count(completion_tokens):
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    prompt_chars = len(json.dumps(request.messages, ensure_ascii=False)) + len(
        json.dumps(request.tools, ensure_ascii=False)
    )
    completion_chars += len(text) + sum(len(call.raw_arguments) for call in tool_calls)
    return Usage(
        prompt_tokens=_estimated_tokens(prompt_chars),
        completion_tokens=_estimated_tokens(completion_chars),
        estimated=True,
    )


def _usable_count(value: object) -> TypeGuard[int]:
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return 0 <= value <= MAX_REPORTED_TOKENS


def _estimated_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN_ESTIMATE)


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _json_error_position(error: ValueError) -> str:
    """Return the parser's reason and position for ``error``, without the parsed text.

    A ``JSONDecodeError`` message contains no input. Any other ``ValueError``, such as
    Python's limit of 4,300 digits for an integer, is named by its type only, because its
    message may quote the input.
    """
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at character {error.pos}"
    return type(error).__name__


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"


def _log_completion(
    context: LLMContext, completion: Completion | None, attempt: int, *, stream: bool
) -> None:
    if completion is None:
        return
    logger.info(
        "llm.completion",
        extra={
            "tenant_id": context.tenant_id,
            "conversation_id": context.conversation_id,
            "model": completion.model,
            "prompt_tokens": completion.usage.prompt_tokens,
            "completion_tokens": completion.usage.completion_tokens,
            "usage_estimated": completion.usage.estimated,
            "duration_ms": completion.duration_ms,
            "request_id": completion.request_id,
            "finish_reason": completion.finish_reason,
            "tool_calls": len(completion.tool_calls),
            "stream": stream,
            "attempt": attempt,
        },
    )


def _log_failure(
    context: LLMContext,
    request: CompletionRequest,
    error: LLMError,
    started: float,
    attempt: int,
    *,
    stream: bool,
) -> None:
    logger.warning(
        "llm.completion_failed",
        extra={
            "tenant_id": context.tenant_id,
            "conversation_id": context.conversation_id,
            "model": request.model,
            "reason": error.reason,
            "error": type(error).__name__,
            "detail": error.detail,
            "status_code": error.status_code,
            "retry_after": error.retry_after,
            "request_id": error.request_id,
            "duration_ms": _since(started),
            "stream": stream,
            "attempt": attempt,
        },
    )


def llm_error_fields(error: LLMError) -> dict[str, Any]:
    """Return the fields that identify a failed call, for the caller's own log lines."""
    return {
        "reason": error.reason,
        "model": error.model,
        "request_id": error.request_id,
        "status_code": error.status_code,
        "retry_after": error.retry_after,
    }
