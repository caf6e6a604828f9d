"""Assistants that answer shopper messages, and the choice of one for a tenant."""

from django.conf import settings

from conversations.assistants.agent import AgentAssistant
from conversations.assistants.base import Assistant, HistoryEntry, Turn
from conversations.assistants.offline import OfflineAssistant
from tenants.models import Tenant

__all__ = [
    "AgentAssistant",
    "Assistant",
    "HistoryEntry",
    "OfflineAssistant",
    "Turn",
    "assistant_name",
    "get_assistant",
    "llm_configured",
]


def llm_configured() -> bool:
    return bool(settings.OPENAI_BASE_URL or settings.OPENAI_API_KEY)


def assistant_name(*, tenant: Tenant) -> str:
    """Return the ``name`` of the assistant that replies to ``tenant``'s shoppers.

    It is the value that replies store as ``metadata.assistant``: ``"agent"`` or
    ``"offline"``, chosen as ``get_assistant`` chooses.
    """
    return AgentAssistant.name if llm_configured() else OfflineAssistant.name


def get_assistant(tenant: Tenant) -> Assistant:
    """Return the assistant that answers ``tenant``'s shoppers.

    The LLM agent answers when OPENAI_BASE_URL or OPENAI_API_KEY is set, the offline
    assistant otherwise. Every tenant of a deployment gets the same kind.
    """
    if llm_configured():
        return AgentAssistant()
    return OfflineAssistant()
