"""Reads of the conversations app, always scoped to one tenant."""

from django.db.models import Prefetch

from conversations.models import Conversation, Message
from tenants.models import Tenant
from vizochok.exceptions import NotFound


def conversation_get(
    *, tenant: Tenant, public_id: str, with_messages: bool = False
) -> Conversation:
    """Return ``tenant``'s conversation ``public_id``.

    Raise ``NotFound`` for an unknown id and for another tenant's conversation alike, so
    that a caller cannot learn which ids exist.
    """
    queryset = Conversation.objects.select_related("tenant").filter(tenant=tenant)
    if with_messages:
        queryset = queryset.prefetch_related(
            Prefetch("messages", queryset=Message.objects.order_by("created_at", "pk"))
        )
    conversation = queryset.filter(public_id=public_id).first()
    if conversation is None:
        raise NotFound("Conversation not found.")
    return conversation
