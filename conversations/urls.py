from django.urls import path

from conversations.apis import ConversationCreateApi, ConversationDetailApi, MessageCreateApi

urlpatterns = [
    path("conversations", ConversationCreateApi.as_view(), name="conversation-create"),
    path(
        "conversations/<public_id:conversation_id>",
        ConversationDetailApi.as_view(),
        name="conversation-detail",
    ),
    path(
        "conversations/<public_id:conversation_id>/messages",
        MessageCreateApi.as_view(),
        name="message-create",
    ),
]
