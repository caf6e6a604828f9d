"""Shopper conversations, their messages and the cart as last confirmed by the merchant."""

import secrets

from django.db import models

from tenants.models import ApiKey, Tenant
from vizochok.models import TimestampedModel

# The longest Idempotency-Key header value that a message request may send.
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def new_conversation_id() -> str:
    return f"conv_{secrets.token_urlsafe(16)}"


def new_message_id() -> str:
    return f"msg_{secrets.token_urlsafe(16)}"


def empty_cart() -> dict[str, object]:
    return {"items": [], "total": 0.0}


class Conversation(TimestampedModel):
    public_id = models.CharField(
        max_length=40, unique=True, default=new_conversation_id, editable=False
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="conversations")
    store_id = models.CharField(max_length=100)
    # The shopper's user id when the client sent one, otherwise a generated id. The
    # merchant finds the cart by it.
    session_id = models.CharField(max_length=200)
    # A trusted user id: sent with a secret key, or with a public key and a valid user token.
    user_id = models.CharField(max_length=200, blank=True)
    # What the per-user limits count this conversation's messages by: "user:<user_id>", or
    # "key:<api key id>" for an anonymous shopper; see conversations.identity.
    limit_identity = models.CharField(max_length=220, blank=True)
    # The cart as the merchant last confirmed it: {"items": [CartItem...], "total": float}.
    cart = models.JSONField(default=empty_cart)
    cart_loaded_at = models.DateTimeField(null=True, blank=True)
    # Working memory of the assistant, such as the products shown last.
    state = models.JSONField(default=dict, blank=True)
    # 64-bit, as in TokenUsage: one model call may report up to 20 million tokens (see
    # conversations.llm.MAX_REPORTED_TOKENS), so a 32-bit total overflows after about 107.
    tokens_used = models.PositiveBigIntegerField(default=0)
    # Set while a worker processes a shopper message, so that one conversation runs one turn
    # at a time across processes; see conversations.leases.
    turn_started_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "session_id"], name="conv_tenant_session_idx")]

    def __str__(self) -> str:
        return self.public_id


class Message(TimestampedModel):
    class Role(models.TextChoices):
        USER = "user", "Shopper"
        ASSISTANT = "assistant", "Assistant"

    public_id = models.CharField(max_length=40, unique=True, default=new_message_id, editable=False)
    # NOTE: no constraint makes this the conversation's tenant. The services copy it from
    # the conversation, and tests/vizochok/test_tenant_isolation.py checks the rows they write.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="messages")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    text = models.TextField(blank=True)
    # The events sent to the client for this message, in order.
    events = models.JSONField(default=list, blank=True)
    # Which assistant answered and how: {"assistant": "offline", ...}.
    metadata = models.JSONField(default=dict, blank=True)
    # The LLM agent's chat messages of this turn after the shopper's text: assistant
    # messages with their tool calls, and the tool results. Sent back to the model with
    # later messages; never returned by the API.
    llm_messages = models.JSONField(default=list, blank=True)
    # The Idempotency-Key header of the request that sent a shopper message, or "" without
    # one. A request with the same key in the same conversation gets the stored reply again.
    idempotency_key = models.CharField(
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH, blank=True, default="", editable=False
    )

    class Meta:
        ordering = ["conversation_id", "created_at", "pk"]
        # Serves the rate limit (recent shopper messages) and the pages of the history.
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conv_created_idx")
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="uniq_message_conv_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:40]}"


class TokenUsage(models.Model):
    """LLM tokens one tenant used on one day (UTC), summed over every model call."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="token_usage")
    date = models.DateField()
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    # Tokens reserved for model calls of this day that are still running. Each call reserves
    # an estimate of its tokens from before it is sent until its usage is recorded.
    reserved_tokens = models.PositiveBigIntegerField(db_default=0)

    class Meta:
        ordering = ["tenant_id", "-date"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "date"], name="uniq_token_usage_tenant_date"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.date}: {self.total_tokens} tokens"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UserDailyUsage(models.Model):
    """Shopper messages and conversations of one limit identity on one day (UTC).

    The per-user daily limits are checked and counted with one conditional UPDATE of this
    row, so concurrent requests in different processes cannot pass a limit together.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="user_usage")
    identity = models.CharField(max_length=220)
    date = models.DateField()
    messages = models.PositiveIntegerField(default=0)
    conversations = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["tenant_id", "-date", "identity"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "identity", "date"], name="uniq_user_usage_identity_date"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.identity} {self.date}: {self.messages} messages"


class OpenSocket(models.Model):
    """An authenticated WebSocket chat socket, for the per-key socket limit of all processes.

    The uvicorn process serving the socket deletes the row when the socket closes and
    refreshes ``heartbeat_at`` while it stays open. A row whose heartbeat is older than
    ``conversations.websocket.SOCKET_EXPIRY`` was left by a process that stopped, and is
    not counted.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="open_sockets")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="open_sockets")
    opened_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["api_key", "heartbeat_at"], name="open_socket_key_heartbeat")
        ]

    def __str__(self) -> str:
        return f"Socket {self.pk} of key {self.api_key_id}"
