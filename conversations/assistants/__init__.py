"""Assistants that answer shopper messages, and the choice of one for a tenant."""

import functools
import logging

from django.conf import settings

from conversations.assistants.base import Assistant, HistoryEntry, Turn
from conversations.assistants.offline import OfflineAssistant
from tenants.models import Tenant

__all__ = ["Assistant", "HistoryEntry", "OfflineAssistant", "Turn", "get_assistant"]

logger = logging.getLogger(__name__)


def llm_configured() -> bool:
    return bool(settings.OPENAI_BASE_URL or settings.OPENAI_API_KEY)


def get_assistant(tenant: Tenant) -> Assistant:
    """Return the assistant that answers ``tenant``'s shoppers.

    The offline assistant answers when neither OPENAI_BASE_URL nor OPENAI_API_KEY is set.
    """
    if llm_configured():
        # TODO: return the LLM agent when an LLM endpoint is configured. It does not exist
        # yet, so the offline assistant answers every tenant.
        _log_llm_agent_missing()
    return OfflineAssistant()


@functools.cache
def _log_llm_agent_missing() -> None:
    """Log once per process, not on every message."""
    logger.warning("conversations.assistant.llm_agent_missing")
