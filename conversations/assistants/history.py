"""The chat history the LLM agent sends with each request, rebuilt from stored messages.

Each earlier shopper message becomes a user message. Each earlier agent reply becomes the
chat messages stored with it (``Message.llm_messages``): assistant messages with tool
calls, the tool results and the final answer. A reply of another assistant, such as the
offline one, becomes one assistant message with its text.

A stored turn may have ended early (an error, a limit, a client disconnect). The history
is repaired so that every tool call has a result and every turn ends with an assistant
answer, because chat completion endpoints reject a tool call without its result.
"""

import json
from collections.abc import Sequence
from typing import Any

from conversations.assistants.base import HistoryEntry
from conversations.assistants.prompts import (
    EMPTY_REPLY_NOTE,
    INTERRUPTED_REPLY_NOTE,
    NOT_RUN_TOOL_RESULT,
)

ChatMessage = dict[str, Any]


def history_messages(history: Sequence[HistoryEntry], *, max_chars: int) -> list[ChatMessage]:
    """Return the chat messages of ``history``, oldest exchanges dropped beyond ``max_chars``.

    An exchange is a shopper message with the reply to it. They are kept or dropped
    together, so the history always starts with a shopper message.
    """
    exchanges = _exchanges(history)
    kept: list[list[ChatMessage]] = []
    used = 0
    for exchange in reversed(exchanges):
        size = sum(_size(message) for message in exchange)
        if used + size > max_chars:
            break
        kept.append(exchange)
        used += size
    return [message for exchange in reversed(kept) for message in exchange]


def completed_transcript(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Return a stored turn with a result for every tool call and a final assistant answer."""
    repaired: list[ChatMessage] = []
    open_calls: list[str] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                continue
            open_calls.remove(call_id)
            repaired.append(message)
            continue
        repaired.extend(_not_run_results(open_calls))
        open_calls = []
        if role == "assistant":
            open_calls = [call["id"] for call in message.get("tool_calls") or []]
            repaired.append(message)
    repaired.extend(_not_run_results(open_calls))
    last = repaired[-1] if repaired else None
    if last is None or last.get("role") != "assistant" or last.get("tool_calls"):
        repaired.append({"role": "assistant", "content": INTERRUPTED_REPLY_NOTE})
    return repaired


def _exchanges(history: Sequence[HistoryEntry]) -> list[list[ChatMessage]]:
    exchanges: list[list[ChatMessage]] = []
    for entry in history:
        if entry.role == "user":
            exchanges.append([{"role": "user", "content": entry.text}])
        elif exchanges:
            exchanges[-1].extend(_reply_messages(entry))
        # A reply without an earlier shopper message (cut off by the history limit) is
        # dropped: a history must start with a shopper message.
    return exchanges


def _reply_messages(entry: HistoryEntry) -> list[ChatMessage]:
    if entry.llm_messages:
        return completed_transcript(entry.llm_messages)
    return [{"role": "assistant", "content": entry.text or EMPTY_REPLY_NOTE}]


def _not_run_results(call_ids: list[str]) -> list[ChatMessage]:
    return [
        {"role": "tool", "tool_call_id": call_id, "content": NOT_RUN_TOOL_RESULT}
        for call_id in call_ids
    ]


def _size(message: ChatMessage) -> int:
    return len(json.dumps(message, ensure_ascii=False))
