"""The LLM agent: a model with the shopping tools, behind the ``Assistant`` interface.

One turn is a loop of model calls. Each request contains the system prompt, the
conversation's history and the tool results so far. When the model asks for tools, they run through a
``ToolCallRunner`` (so the tool layer's guards apply) and the loop goes on. When it
answers with text only, the turn ends.

Limits, each reported as an ``error`` event after which the turn ends normally:

- the conversation's token budget (``session_token_limit``), checked before every call;
- the tenant's daily and monthly token budgets: every model call first reserves an
  estimate of its tokens in them (``conversations.usage``), and a call that does not fit
  is not sent;
- ``max_tool_rounds`` rounds of tool calls (``max_rounds_exceeded``);
- ``AGENT_TURN_TIMEOUT_SECONDS`` for the whole turn (``internal_error`` with reason
  ``turn_timeout``). The deadline is checked before every model call and tool call, and a
  model request never gets more time than is left. A webhook call already running is not
  interrupted, so a turn can overrun by at most one webhook call (its timeout, retry
  included).

A failed model call, or an answer that the server ended early (finish reason ``length`` or
``content_filter``), ends the turn with ``internal_error`` and the reason from
``conversations.llm``. Cart changes that the merchant confirmed before the failure stay,
and their ``cart_changed`` events are sent before the error.
"""

import json
import logging
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from conversations import events
from conversations.assistants.base import Turn
from conversations.assistants.history import history_messages
from conversations.assistants.prompts import (
    LANGUAGE_NAMES,
    SYSTEM_PROMPT,
    TENANT_INSTRUCTIONS_HEADER,
    TURN_CONTEXT_TEMPLATE,
)
from conversations.events import Event, StatusCode
from conversations.llm import (
    Completion,
    CompletionRequest,
    Deadline,
    LLMContext,
    LLMError,
    LLMIncompleteResponse,
    LLMInvalidResponse,
    ToolCall,
    Usage,
    chat_completion,
    chat_completion_stream,
    llm_error_fields,
)
from conversations.tool_calls import (
    CART_TOOL_NAMES,
    TOOL_NAMES,
    ToolCallRunner,
    cart_tool_output,
    tool_definitions,
    tool_result_content,
)
from conversations.usage import (
    TokenLimitReached,
    TokenReservation,
    llm_usage_record,
    token_estimate,
    token_reservation_create,
    token_reservation_release,
)
from tenants.models import AssistantSettings
from vizochok.exceptions import ErrorCode

logger = logging.getLogger(__name__)

ASSISTANT_NAME = "agent"
# The reason of the internal_error event sent when a turn runs out of time.
REASON_TURN_TIMEOUT = "turn_timeout"
CART_VIEW_TOOL = "view_cart"
# Id of the view_cart call that shows the model the cart at the start of each turn.
CART_CONTEXT_CALL_ID = "call_cart_at_turn_start"
# Tools that wait for the products webhook, announced with a "searching" status.
SEARCH_TOOL_NAMES = frozenset({"search_products"})


@dataclass(frozen=True)
class AgentConfig:
    """The settings one turn runs with: the tenant's, falling back to the deployment's."""

    complex_model: str
    fast_model: str
    temperature: float | None
    system_prompt_addition: str
    disabled_tools: frozenset[str]
    max_tool_rounds: int
    session_token_limit: int
    stream: bool
    history_max_chars: int
    turn_timeout_seconds: float

    @classmethod
    def for_settings(cls, assistant_settings: AssistantSettings) -> "AgentConfig":
        return cls(
            complex_model=assistant_settings.complex_model or settings.LLM_COMPLEX_MODEL,
            fast_model=assistant_settings.fast_model or settings.LLM_FAST_MODEL,
            temperature=(
                float(assistant_settings.temperature) if settings.LLM_SEND_TEMPERATURE else None
            ),
            system_prompt_addition=assistant_settings.system_prompt_addition.strip(),
            disabled_tools=frozenset(assistant_settings.disabled_tools or ()),
            max_tool_rounds=assistant_settings.max_tool_rounds,
            session_token_limit=assistant_settings.session_token_limit,
            stream=settings.LLM_STREAM,
            history_max_chars=settings.LLM_HISTORY_MAX_CHARS,
            turn_timeout_seconds=settings.AGENT_TURN_TIMEOUT_SECONDS,
        )


class AgentAssistant:
    """Answers with an LLM through any OpenAI-compatible chat completions endpoint."""

    name = ASSISTANT_NAME

    def respond(self, turn: Turn) -> Iterator[Event]:
        tenant = turn.conversation.tenant
        assistant_settings = AssistantSettings.objects.filter(
            tenant=tenant
        ).first() or AssistantSettings(tenant=tenant)
        agent_turn = _AgentTurn(
            turn=turn,
            assistant_settings=assistant_settings,
            config=AgentConfig.for_settings(assistant_settings),
        )
        yield from agent_turn.run()


class _PartialText(Exception):
    """A streamed completion failed after some of its text was sent."""

    def __init__(self, error: LLMError) -> None:
        super().__init__(str(error))
        self.error = error


class _TurnEnded(Exception):
    """Ends the model loop early; ``events`` are the last ones to send."""

    def __init__(self, *final_events: Event) -> None:
        super().__init__()
        self.events = list(final_events)


@dataclass
class _AgentTurn:
    turn: Turn
    assistant_settings: AssistantSettings
    config: AgentConfig
    deadline: Deadline = field(init=False)
    runner: ToolCallRunner = field(init=False)
    messages: list[dict[str, Any]] = field(init=False)
    # cart_changed and product_cards events wait here until the text about them is sent.
    pending: list[Event] = field(default_factory=list)
    model_calls: int = 0
    tool_rounds: int = 0
    # The tenant budgets' reservation of the model call that is running, if any.
    reservation: TokenReservation | None = None

    def __post_init__(self) -> None:
        self.deadline = Deadline(self.config.turn_timeout_seconds)
        self.runner = ToolCallRunner(tools=self.turn.tools, disabled=self.config.disabled_tools)
        self.messages = []
        self.turn.metadata.update(
            models=[], model_calls=0, tool_rounds=0, prompt_tokens=0, completion_tokens=0
        )

    @property
    def conversation_id(self) -> str:
        return self.turn.conversation.public_id

    def run(self) -> Iterator[Event]:
        try:
            self.messages = self._initial_messages()
            while True:
                self._check_before_model_call()
                completion = yield from self._call_model()
                if not completion.tool_calls:
                    break
                if self.tool_rounds >= self.config.max_tool_rounds:
                    raise _TurnEnded(self._limit_error(ErrorCode.MAX_ROUNDS_EXCEEDED))
                self.tool_rounds += 1
                self.turn.metadata["tool_rounds"] = self.tool_rounds
                yield from self._run_tools(completion.tool_calls)
        except _TurnEnded as ended:
            yield from self._flush()
            yield from ended.events
            return
        except LLMError as error:
            yield from self._flush()
            yield self._llm_error(error)
            return
        except Exception:
            # The turn reports the error; cart changes made before it must still reach
            # the client.
            yield from self._flush()
            raise
        yield from self._flush()

    # Limits

    def _reserve_tokens(self, request: CompletionRequest) -> TokenReservation:
        """Reserve the request's estimated tokens in the tenant budgets, or end the turn."""
        request_json = json.dumps(
            {"messages": request.messages, "tools": request.tools}, ensure_ascii=False
        )
        try:
            return token_reservation_create(
                tenant=self.turn.conversation.tenant,
                assistant_settings=self.assistant_settings,
                tokens=token_estimate(request_chars=len(request_json)),
            )
        except TokenLimitReached as error:
            raise _TurnEnded(self._limit_error(error.code)) from None

    def _check_before_model_call(self) -> None:
        if self.deadline.expired():
            raise _TurnEnded(self._timeout_error())
        limit = self.config.session_token_limit
        if limit and self.turn.conversation.tokens_used >= limit:
            raise _TurnEnded(self._limit_error(ErrorCode.SESSION_TOKEN_LIMIT))

    def _limit_error(self, code: ErrorCode) -> Event:
        logger.info(
            "conversations.agent.limit_reached",
            extra={**self._log_fields(), "code": code.value, "tool_rounds": self.tool_rounds},
        )
        self.turn.metadata["failure"] = code.value
        return events.error(code)

    def _timeout_error(self, error: LLMError | None = None) -> Event:
        """Report the passed deadline; ``error`` is the model call it cut short, if any."""
        error_id = uuid.uuid4().hex
        logger.warning(
            "conversations.agent.turn_timeout",
            extra={
                **self._log_fields(),
                **(llm_error_fields(error) if error is not None else {}),
                "error_id": error_id,
                "timeout_seconds": self.deadline.seconds,
                "model_calls": self.model_calls,
            },
        )
        self.turn.metadata["failure"] = REASON_TURN_TIMEOUT
        return events.error(ErrorCode.INTERNAL_ERROR, reason=REASON_TURN_TIMEOUT, error_id=error_id)

    def _llm_error(self, error: LLMError) -> Event:
        if self.deadline.expired():
            return self._timeout_error(error)
        error_id = uuid.uuid4().hex
        logger.error(
            "conversations.agent.llm_failed",
            extra={
                **self._log_fields(),
                **llm_error_fields(error),
                "error_id": error_id,
                "detail": error.detail,
            },
        )
        self.turn.metadata["failure"] = error.reason
        return events.error(ErrorCode.INTERNAL_ERROR, reason=error.reason, error_id=error_id)

    # Model calls

    def _initial_messages(self) -> list[dict[str, Any]]:
        history = history_messages(self.turn.history, max_chars=self.config.history_max_chars)
        return [
            {"role": "system", "content": self._system_prompt()},
            *history,
            *self._cart_context(),
            {"role": "user", "content": self.turn.text},
        ]

    def _system_prompt(self) -> str:
        parts = [SYSTEM_PROMPT.strip()]
        if self.config.system_prompt_addition:
            parts.append(f"{TENANT_INSTRUCTIONS_HEADER}\n{self.config.system_prompt_addition}")
        parts.append(
            TURN_CONTEXT_TEMPLATE.format(
                language=self.turn.language,
                language_name=LANGUAGE_NAMES.get(self.turn.language, self.turn.language),
            )
        )
        return "\n\n".join(parts)

    def _cart_context(self) -> list[dict[str, Any]]:
        """Return a view_cart call and its result that show the cart this turn starts with.

        The cart contains merchant text (product names), so it travels as a tool result, which
        the prompt declares to be data, not inside the system prompt. These two messages are
        rebuilt every turn and never stored.
        """
        cart = self.turn.tools.view_cart()
        if CART_VIEW_TOOL in self.config.disabled_tools:
            return []
        if not cart["items"] and self.turn.tools.cart_complete:
            return []
        call = {
            "id": CART_CONTEXT_CALL_ID,
            "type": "function",
            "function": {"name": CART_VIEW_TOOL, "arguments": "{}"},
        }
        return [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {
                "role": "tool",
                "tool_call_id": CART_CONTEXT_CALL_ID,
                "content": tool_result_content(cart_tool_output(self.turn.tools, cart)),
            },
        ]

    def _model(self) -> str:
        """Return the complex model for the first call of a conversation, else the fast one."""
        if self.turn.first_message and self.model_calls == 0:
            return self.config.complex_model
        return self.config.fast_model

    def _call_model(self) -> Generator[Event, None, Completion]:
        """Reserve the tokens of one request, then send it, stream its text as events and
        record its usage; return the completion."""
        request = CompletionRequest(
            model=self._model(),
            messages=self.messages,
            tools=tool_definitions(disabled=self.config.disabled_tools),
            accepted_tool_names=TOOL_NAMES,
            temperature=self.config.temperature,
        )
        self.reservation = self._reserve_tokens(request)
        try:
            return (yield from self._send(request))
        finally:
            # A call that failed before any usage was recorded used none of its reservation.
            token_reservation_release(reservation=self.reservation)
            self.reservation = None

    def _send(self, request: CompletionRequest) -> Generator[Event, None, Completion]:
        self.model_calls += 1
        self.turn.metadata["model_calls"] = self.model_calls
        self.turn.metadata["models"].append(request.model)
        context = LLMContext(
            tenant_id=self.turn.conversation.tenant_id, conversation_id=self.conversation_id
        )
        text_sent = False
        try:
            if self.config.stream:
                completion = yield from self._streamed(request, context)
                text_sent = bool(completion.text)
            else:
                completion = self._plain(request, context)
                if completion.text:
                    text_sent = True
                    yield events.text_delta(completion.text)
        except _PartialText as partial:
            # Deltas of a failed stream have reached the client: close their text block.
            yield events.text_end()
            raise partial.error from None
        self._record(completion)
        if text_sent:
            yield events.text_end()
            yield from self._flush()
        if completion.incomplete:
            # The text sent stays, as after a broken stream, and the tool calls were dropped,
            # because their arguments may be cut too.
            raise LLMIncompleteResponse(
                f"The server ended the completion early (finish_reason "
                f"{completion.finish_reason!r}).",
                model=completion.model,
                request_id=completion.request_id,
            )
        return completion

    def _streamed(
        self, request: CompletionRequest, context: LLMContext
    ) -> Generator[Event, None, Completion]:
        """Stream one completion's text as ``text_delta`` events; return the completion."""
        stream = chat_completion_stream(request, context=context, deadline=self.deadline)
        text_sent = False
        try:
            for delta in stream:
                text_sent = True
                yield events.text_delta(delta)
        except LLMError as error:
            if text_sent:
                raise _PartialText(error) from error
            raise
        finally:
            # Closes the HTTP response also when the client went away mid-stream.
            stream.close()
            for usage in stream.unfinished_usage:
                self._record_usage(usage)
        if stream.completion is None:
            raise LLMInvalidResponse("The stream ended without a completion.")
        return stream.completion

    def _plain(self, request: CompletionRequest, context: LLMContext) -> Completion:
        """Send one plain request, and record the tokens of a completion that was rejected."""
        try:
            return chat_completion(request, context=context, deadline=self.deadline)
        except LLMError as error:
            if error.usage is not None:
                self._record_usage(error.usage)
            raise

    def _record(self, completion: Completion) -> None:
        self._record_usage(completion.usage)
        if not completion.text and not completion.tool_calls:
            # An incomplete completion may be empty, and servers reject an assistant message
            # with neither content nor tool calls in the history.
            return
        message = completion.assistant_message()
        self.messages.append(message)
        self.turn.llm_messages.append(message)

    def _record_usage(self, usage: Usage) -> None:
        llm_usage_record(
            conversation=self.turn.conversation, usage=usage, reservation=self.reservation
        )
        metadata = self.turn.metadata
        metadata["prompt_tokens"] += usage.prompt_tokens
        metadata["completion_tokens"] += usage.completion_tokens
        if usage.estimated:
            metadata["usage_estimated"] = True

    # Tools

    def _run_tools(self, calls: list[ToolCall]) -> Iterator[Event]:
        announced: StatusCode | None = None
        for call in calls:
            if self.deadline.expired():
                raise _TurnEnded(self._timeout_error())
            status = _status_of(call.name)
            if status is not None and status != announced:
                announced = status
                yield events.status(status)
            outcome = self.runner.call(call.name, call.arguments)
            self.pending.extend(outcome.events)
            message = {
                "role": "tool",
                "tool_call_id": call.id,
                "content": tool_result_content(outcome.output),
            }
            self.messages.append(message)
            self.turn.llm_messages.append(message)
            logger.info(
                "conversations.agent.tool_called",
                extra={
                    **self._log_fields(),
                    "tool": call.name,
                    "ok": outcome.output.get("ok"),
                    "duplicate": outcome.output.get("duplicate", False),
                    "events": len(outcome.events),
                },
            )

    def _flush(self) -> Iterator[Event]:
        pending, self.pending = self.pending, []
        yield from pending

    def _log_fields(self) -> dict[str, Any]:
        return {
            "tenant_id": self.turn.conversation.tenant_id,
            "conversation_id": self.conversation_id,
        }


def _status_of(tool_name: str) -> StatusCode | None:
    """Return the progress status a tool call announces, if it waits for the merchant."""
    if tool_name in SEARCH_TOOL_NAMES:
        return StatusCode.SEARCHING
    if tool_name in CART_TOOL_NAMES:
        return StatusCode.UPDATING_CART
    return None
