from django.urls import path

from conversations.apis import ConversationCreateApi, ConversationDetailApi, MessageCreateApi

urlpatterns = [
    path("conversations", ConversationCreateApi.as_view(), name="conversation-create"),
    path(
        "conversations/<str:conversation_id>",
        ConversationDetailApi.as_view(),
        name="conversation-detail",
    ),
    path(
        "conversations/<str:conversation_id>/messages",
        MessageCreateApi.as_view(),
        name="message-create",
    ),
]
