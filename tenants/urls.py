from django.urls import path

from tenants.apis import (
    AssistantSettingsApi,
    ConversationEraseApi,
    ShopperApi,
    ShopperConversationsApi,
    TokenUsageApi,
    WebhookSecretRotateApi,
    WebhookSettingsApi,
    WebhookTestApi,
    WidgetSettingsApi,
)

urlpatterns = [
    path("webhooks", WebhookSettingsApi.as_view(), name="admin-webhooks"),
    path(
        "webhooks/rotate-secret",
        WebhookSecretRotateApi.as_view(),
        name="admin-webhooks-rotate-secret",
    ),
    path("webhooks/test", WebhookTestApi.as_view(), name="admin-webhooks-test"),
    path("widget", WidgetSettingsApi.as_view(), name="admin-widget"),
    path("assistant", AssistantSettingsApi.as_view(), name="admin-assistant"),
    path("usage", TokenUsageApi.as_view(), name="admin-usage"),
    # A user id may contain "/", so both routes take the rest of the path, and the longer
    # one comes first.
    # NOTE: a DELETE of a user id ending in "/conversations" reaches the export's route and
    # gets 405, so such a shopper is erased with the erase_shopper command instead.
    path(
        "shoppers/<path:user_id>/conversations",
        ShopperConversationsApi.as_view(),
        name="admin-shopper-conversations",
    ),
    path("shoppers/<path:user_id>", ShopperApi.as_view(), name="admin-shopper"),
    path(
        "conversations/<public_id:conversation_id>",
        ConversationEraseApi.as_view(),
        name="admin-conversation",
    ),
]
