"""Read-only admin pages of conversations, their messages and the tenants' daily token usage."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from conversations.models import Conversation, Message, TokenUsage
from tenants.admin import TenantListFilter


class _ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessageInline(_ReadOnlyMixin, admin.TabularInline):
    model = Message
    fields = readonly_fields = ("created_at", "role", "text", "events", "metadata")
    ordering = ["created_at", "pk"]
    extra = 0
    show_change_link = False


@admin.register(Conversation)
class ConversationAdmin(_ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["public_id", "tenant", "store_id", "session_id", "created_at", "updated_at"]
    list_filter = [("tenant", TenantListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["public_id", "session_id", "user_id", "=tenant__slug"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "public_id",
        "tenant",
        "store_id",
        "session_id",
        "user_id",
        "cart",
        "cart_loaded_at",
        "state",
        "tokens_used",
        "turn_started_at",
        "created_at",
        "updated_at",
    )
    inlines = [MessageInline]


@admin.register(TokenUsage)
class TokenUsageAdmin(_ReadOnlyMixin, admin.ModelAdmin):
    list_display = fields = readonly_fields = (
        "tenant",
        "date",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "requests",
        "reserved_tokens",
    )
    list_filter = [("tenant", TenantListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["=tenant__slug"]
    date_hierarchy = "date"

    @admin.display(description="total tokens")
    def total_tokens(self, usage: TokenUsage) -> int:
        return usage.total_tokens
