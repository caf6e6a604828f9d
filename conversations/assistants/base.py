"""The interface every assistant implements."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from conversations.events import Event
from conversations.models import Conversation
from conversations.tools import ShoppingTools


@dataclass(frozen=True)
class HistoryEntry:
    """One earlier message of the conversation: ``role`` is "user" or "assistant".

    ``llm_messages`` holds an LLM agent's stored chat messages of that turn (tool calls,
    tool results and answers); it is empty for shopper messages and other assistants.
    """

    role: str
    text: str
    llm_messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Turn:
    """Everything an assistant gets to answer one shopper message.

    The assistant may read and extend ``conversation.state`` under its own key; the turn
    saves the state when the reply is saved. ``metadata`` is merged into the metadata of the
    assistant's message, for example the detected intent or the tokens a model used.
    """

    conversation: Conversation
    text: str
    tools: ShoppingTools
    # "uk", "en" or "ru": the language of the shopper's message, which replies must use.
    language: str
    # Earlier messages, oldest first; the current message is in ``text``, not here.
    history: list[HistoryEntry] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # True for the first shopper message of the conversation.
    first_message: bool = False
    # An LLM agent's chat messages of this turn, saved with the reply as its history.
    llm_messages: list[dict[str, Any]] = field(default_factory=list)


class Assistant(Protocol):
    """Something that answers a shopper message with a sequence of events.

    ``respond`` yields events in the order the client should receive them (``status``,
    ``text_delta``, ``text_end``, ``product_cards``, ``cart_changed``, ``error``), but not
    ``response_complete``, which the turn adds. It reaches the catalog and the cart only
    through ``turn.tools``. An exception it raises becomes an ``internal_error`` event.
    """

    name: str

    def respond(self, turn: Turn) -> Iterator[Event]: ...
