"""REST endpoints of the chat: start a conversation, send a message, read a conversation."""

from typing import Any, cast

from django.core.exceptions import RequestDataTooBig
from django.http.response import HttpResponseBase
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.assistants import assistant_name
from conversations.identity import shopper_identity_resolve
from conversations.models import Conversation
from conversations.selectors import (
    MESSAGES_PAGE_DEFAULT,
    MESSAGES_PAGE_MAX,
    conversation_get,
    conversation_messages_page,
)
from conversations.services import ConversationTurn, conversation_create, message_too_large
from conversations.streaming import event_stream_response, wants_event_stream
from tenants.authentication import ApiClient
from tenants.permissions import HasChatScope, WidgetOriginAllowed
from vizochok.exceptions import LimitExceeded
from vizochok.serializers import IdentifierField, StrictInputSerializer, StringField


def _client(request: Request) -> ApiClient:
    # HasChatScope lets only an ApiClient through.
    return cast(ApiClient, request.user)


def _message_data(request: Request) -> Any:
    """Return the parsed body of a message request.

    Django refuses to read a body over DATA_UPLOAD_MAX_MEMORY_SIZE (5 MiB in the settings).
    Such a body contains a message far over the limit, so it gets ``message_too_large``, not
    ``payload_too_large``.
    """
    try:
        return request.data
    except RequestDataTooBig as error:
        raise message_too_large() from error


class RetryAfterHeaderMixin:
    """Add a ``Retry-After`` header to a 429 response whose error carries ``retry_after``."""

    def handle_exception(self, exc: Exception) -> Response:
        response: Response = super().handle_exception(exc)  # type: ignore[misc]
        if isinstance(exc, LimitExceeded) and "retry_after" in exc.extra:
            response["Retry-After"] = str(exc.extra["retry_after"])
        return response


class ConversationCreateApi(RetryAfterHeaderMixin, APIView):
    """Start a conversation; a ``user_id`` sent with a public key needs a ``user_token``."""

    permission_classes = [HasChatScope, WidgetOriginAllowed]

    class InputSerializer(StrictInputSerializer):
        store_id = IdentifierField(max_length=100)
        user_id = IdentifierField(max_length=200, required=False, allow_null=True)
        user_token = IdentifierField(max_length=200, required=False, allow_null=True)

    class OutputSerializer(serializers.Serializer):
        conversation_id = serializers.CharField(source="public_id")
        store_id = serializers.CharField()
        session_id = serializers.CharField()
        created_at = serializers.DateTimeField()
        # The assistant that will reply, so that a client can name the offline one
        # before its first reply.
        assistant = serializers.SerializerMethodField()

        def get_assistant(self, conversation: Conversation) -> str:
            return assistant_name(tenant=conversation.tenant)

    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        client = _client(request)
        identity = shopper_identity_resolve(
            client=client,
            user_id=serializer.validated_data.get("user_id"),
            user_token=serializer.validated_data.get("user_token"),
        )
        conversation = conversation_create(
            tenant=client.tenant,
            store_id=serializer.validated_data["store_id"],
            identity=identity,
        )
        return Response(self.OutputSerializer(conversation).data, status=status.HTTP_201_CREATED)


class ConversationDetailApi(APIView):
    """Return a conversation with one page of its messages, the latest by default."""

    permission_classes = [HasChatScope, WidgetOriginAllowed]

    class QuerySerializer(serializers.Serializer):
        limit = serializers.IntegerField(
            min_value=1, max_value=MESSAGES_PAGE_MAX, default=MESSAGES_PAGE_DEFAULT
        )
        before = serializers.CharField(max_length=40, required=False)

    class OutputSerializer(serializers.Serializer):
        class MessageSerializer(serializers.Serializer):
            message_id = serializers.CharField(source="public_id")
            role = serializers.CharField()
            text = serializers.CharField()
            events = serializers.JSONField()
            metadata = serializers.JSONField()
            created_at = serializers.DateTimeField()

        conversation_id = serializers.CharField(source="public_id")
        store_id = serializers.CharField()
        session_id = serializers.CharField()
        user_id = serializers.SerializerMethodField()
        cart = serializers.JSONField()
        created_at = serializers.DateTimeField()
        updated_at = serializers.DateTimeField()
        # The assistant that will answer the next message, as when the conversation started.
        assistant = serializers.SerializerMethodField()

        def get_user_id(self, conversation: Any) -> str | None:
            return conversation.user_id or None

        def get_assistant(self, conversation: Conversation) -> str:
            return assistant_name(tenant=conversation.tenant)

    def get(self, request: Request, conversation_id: str) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        conversation = conversation_get(tenant=_client(request).tenant, public_id=conversation_id)
        page = conversation_messages_page(conversation=conversation, **query.validated_data)
        message_serializer = self.OutputSerializer.MessageSerializer(page.messages, many=True)
        return Response(
            {
                **self.OutputSerializer(conversation).data,
                "messages": message_serializer.data,
                "has_more_messages": page.has_more,
            }
        )


class MessageCreateApi(RetryAfterHeaderMixin, APIView):
    """Process a shopper message: a JSON list of events, or Server-Sent Events on request.

    With ``Accept: text/event-stream`` the events are streamed as they happen. Errors found
    before the reply starts (authentication, validation, ``agent_busy``, the rate and daily
    limits) are JSON error responses in both modes.
    """

    permission_classes = [HasChatScope, WidgetOriginAllowed]

    class InputSerializer(StrictInputSerializer):
        text = StringField()

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        # Every Response of this view is JSON, also for a client that accepts only
        # text/event-stream: the stream itself is a StreamingHttpResponse, not a Response.
        return super().perform_content_negotiation(request, force=True)

    def post(self, request: Request, conversation_id: str) -> HttpResponseBase:
        conversation = conversation_get(tenant=_client(request).tenant, public_id=conversation_id)
        serializer = self.InputSerializer(data=_message_data(request))
        serializer.is_valid(raise_exception=True)
        turn = ConversationTurn(conversation=conversation, text=serializer.validated_data["text"])
        if wants_event_stream(request):
            turn.start()
            return event_stream_response(turn)
        sent = list(turn.run())
        return Response(
            {
                "conversation_id": conversation.public_id,
                "message_id": turn.reply_message().public_id,
                "events": sent,
            }
        )
