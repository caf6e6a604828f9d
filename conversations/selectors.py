"""Reads of the conversations app, always scoped to one tenant."""

from dataclasses import dataclass

from django.db.models import Count, Q

from conversations.models import Conversation, Message
from tenants.models import Tenant
from vizochok.exceptions import InvalidInput, NotFound

# Messages in one response of GET /api/v1/conversations/{id}, unless ``limit`` sets another number.
MESSAGES_PAGE_DEFAULT = 50
MESSAGES_PAGE_MAX = 200


@dataclass(frozen=True)
class MessagePage:
    """Consecutive messages of a conversation, oldest first.

    ``has_more`` is true when older messages exist; pass the first message's id as
    ``before`` to read them.
    """

    messages: list[Message]
    has_more: bool


def conversation_get(*, tenant: Tenant, public_id: str) -> Conversation:
    """Return ``tenant``'s conversation ``public_id``.

    Raise ``NotFound`` for an unknown id and for another tenant's conversation alike, so
    that a caller cannot learn which ids exist.
    """
    # NOTE: the unique index is on public_id alone, so another tenant's id reads one more
    # table row than an unknown id. That timing difference is not hidden, and it can only
    # confirm an id that the caller already holds, because ids carry 128 random bits.
    conversation = (
        Conversation.objects.select_related("tenant")
        .filter(tenant=tenant, public_id=public_id)
        .first()
    )
    if conversation is None:
        raise NotFound("Conversation not found.")
    return conversation


def conversation_messages_page(
    *, conversation: Conversation, limit: int = MESSAGES_PAGE_DEFAULT, before: str | None = None
) -> MessagePage:
    """Return the latest ``limit`` messages of ``conversation`` older than message ``before``.

    Raise ``InvalidInput`` when ``before`` is not a message of this conversation.
    """
    messages = Message.objects.filter(conversation=conversation)
    if before is not None:
        anchor = messages.filter(public_id=before).first()
        if anchor is None:
            raise InvalidInput(
                "Invalid message id.",
                fields={"before": ["No message with this id in this conversation."]},
            )
        messages = messages.filter(
            Q(created_at__lt=anchor.created_at) | Q(created_at=anchor.created_at, pk__lt=anchor.pk)
        )
    latest = list(messages.order_by("-created_at", "-pk")[: limit + 1])
    return MessagePage(messages=list(reversed(latest[:limit])), has_more=len(latest) > limit)


# Conversations in one response of the shopper data export, unless ``limit`` sets another number.
SHOPPER_CONVERSATIONS_PAGE_DEFAULT = 20
SHOPPER_CONVERSATIONS_PAGE_MAX = 100
# Messages in one response of the shopper data export, summed over its conversations. A
# page stops before the conversation that would pass it, so that a shopper with long
# conversations gets fewer conversations per page. The number is a choice of this project.
SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES = 2000


@dataclass(frozen=True)
class ShopperConversationsPage:
    """Conversations of one shopper, newest first, each with all of its messages.

    ``has_more`` is true when older conversations exist, also when the page holds fewer
    than ``limit`` conversations because of ``SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES``.
    Pass the last conversation's id as ``before`` to read them.
    """

    conversations: list[Conversation]
    messages: dict[int, list[Message]]
    has_more: bool


def shopper_conversations_page(
    *,
    tenant: Tenant,
    user_id: str,
    limit: int = SHOPPER_CONVERSATIONS_PAGE_DEFAULT,
    before: str | None = None,
) -> ShopperConversationsPage:
    """Return the latest ``limit`` conversations of ``tenant``'s shopper ``user_id``.

    The page ends early when its conversations would have more than
    ``SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES`` messages together, but it always has the
    first conversation. Raise ``NotFound`` when ``before`` is not a conversation of this
    shopper.
    """
    conversations = Conversation.objects.select_related("tenant").filter(
        tenant=tenant, user_id=user_id
    )
    if before is not None:
        anchor = conversations.filter(public_id=before).first()
        if anchor is None:
            raise NotFound("Conversation not found.")
        conversations = conversations.filter(
            Q(created_at__lt=anchor.created_at) | Q(created_at=anchor.created_at, pk__lt=anchor.pk)
        )
    latest = list(conversations.order_by("-created_at", "-pk")[: limit + 1])
    page = _within_message_budget(latest[:limit])
    messages: dict[int, list[Message]] = {conversation.pk: [] for conversation in page}
    for message in Message.objects.filter(conversation__in=page).order_by(
        "conversation_id", "created_at", "pk"
    ):
        messages[message.conversation_id].append(message)
    return ShopperConversationsPage(
        conversations=page, messages=messages, has_more=len(latest) > len(page)
    )


def _within_message_budget(conversations: list[Conversation]) -> list[Conversation]:
    """Return the leading ``conversations`` whose messages fit the export's page bound.

    The first conversation is always kept.
    """
    counts = dict(
        Message.objects.filter(conversation__in=conversations)
        .order_by()
        .values("conversation_id")
        .annotate(count=Count("pk"))
        .values_list("conversation_id", "count")
    )
    kept: list[Conversation] = []
    total = 0
    for conversation in conversations:
        total += counts.get(conversation.pk, 0)
        if kept and total > SHOPPER_CONVERSATIONS_PAGE_MAX_MESSAGES:
            break
        kept.append(conversation)
    # NOTE: a single conversation is returned whole, so a conversation with more messages
    # than the bound makes a larger response.
    return kept
