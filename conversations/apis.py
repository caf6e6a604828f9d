"""REST endpoints of the chat: start a conversation, send a message, read a conversation."""

from typing import Any, cast

from django.core.exceptions import RequestDataTooBig
from django.http.response import HttpResponseBase
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.assistants import AgentAssistant, OfflineAssistant, assistant_name
from conversations.client_address import ConnectionAddresses
from conversations.events import CartSnapshot, EventType
from conversations.identity import shopper_identity_resolve
from conversations.language import LANGUAGES
from conversations.models import Conversation
from conversations.selectors import (
    MESSAGES_PAGE_DEFAULT,
    MESSAGES_PAGE_MAX,
    conversation_get,
    conversation_messages_page,
)
from conversations.services import (
    IDEMPOTENCY_KEY_INVALID,
    ConversationTurn,
    conversation_create,
    idempotency_key_is_valid,
    message_too_large,
)
from conversations.streaming import event_stream_response, wants_event_stream
from tenants.authentication import ApiClient
from tenants.permissions import HasChatScope, WidgetOriginAllowed
from vizochok.exceptions import InvalidInput, LimitExceeded
from vizochok.openapi import error_responses, type_hint_schema
from vizochok.serializers import (
    IdentifierField,
    StrictChoiceField,
    StrictInputSerializer,
    StringField,
)

_CHAT_TAG = "chat"

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


@extend_schema_serializer(component_name="ChatEvent")
class ChatEventSchema(serializers.Serializer):
    """One event of a reply, for the OpenAPI document only, because events are plain dicts."""

    type = serializers.ChoiceField(
        # The (value, name) pairs that ENUM_NAME_OVERRIDES derives from EventType.
        choices=[(event_type.value, event_type.name) for event_type in EventType],
        help_text="The other fields depend on the type; docs/chat-api.md lists them.",
    )


@extend_schema_field(ChatEventSchema(many=True))
class EventListField(serializers.JSONField):
    """A stored list of events, returned as stored."""


@extend_schema_field(type_hint_schema(CartSnapshot))
class CartField(serializers.JSONField):
    """A stored cart snapshot, returned as stored."""


# The document lists the assistant names that ``assistant_name`` returns.
_ASSISTANT_SCHEMA = extend_schema_field(
    serializers.ChoiceField(choices=[AgentAssistant.name, OfflineAssistant.name])
)


# One Server-Sent Events message of a streamed reply, by its fields. OpenAPI 3.1 has no
# keyword for the items of a stream, so the schema of text/event-stream describes one
# message, which is how schemathesis 4 validates a stream.
_SSE_MESSAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "description": "The event's `type`."},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/ChatEvent"},
        },
    },
    "required": ["event", "data"],
}


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


def _idempotency_key(request: Request) -> str | None:
    """Return the request's ``Idempotency-Key`` header, or None without one.

    Raise ``invalid_json`` with a ``fields`` entry for the header unless the value is 1 to
    255 characters of printable ASCII without a space at either end.
    """
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is None:
        return None
    if not idempotency_key_is_valid(key):
        raise InvalidInput(
            "The Idempotency-Key header is invalid.",
            fields={IDEMPOTENCY_KEY_HEADER: [IDEMPOTENCY_KEY_INVALID]},
        )
    return key


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

    @extend_schema_serializer(component_name="ConversationCreate")
    class InputSerializer(StrictInputSerializer):
        store_id = IdentifierField(max_length=100)
        user_id = IdentifierField(max_length=200, required=False, allow_null=True)
        user_token = IdentifierField(max_length=200, required=False, allow_null=True)
        language = StrictChoiceField(
            choices=LANGUAGES,
            required=False,
            allow_null=True,
            help_text=(
                "The client's language, for a first message whose language cannot be "
                "detected, such as `молоко` (Ukrainian or Russian) or `2`. Without it the "
                "tenant's default language is used."
            ),
        )

    @extend_schema_serializer(component_name="ConversationCreated")
    class OutputSerializer(serializers.Serializer):
        conversation_id = serializers.CharField(source="public_id")
        store_id = serializers.CharField()
        session_id = serializers.CharField()
        created_at = serializers.DateTimeField()
        # The assistant that will reply, so that a client can name the offline one
        # before its first reply.
        assistant = serializers.SerializerMethodField()

        @_ASSISTANT_SCHEMA
        def get_assistant(self, conversation: Conversation) -> str:
            return assistant_name(tenant=conversation.tenant)

    @extend_schema(
        tags=[_CHAT_TAG],
        summary="Start a conversation",
        description=(
            "A `user_id` sent with a public key needs a `user_token` that the merchant's "
            "server issued for it."
        ),
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            **error_responses(
                400,
                401,
                403,
                413,
                429,
                status_403=(
                    "`permission_denied`: the key lacks the `chat` scope, the `user_token` was "
                    "rejected, or the `Origin` is not allowed; `reason` says which."
                ),
                status_429=(
                    "`user_conversation_limit`: the identity started its maximum of "
                    "conversations for the UTC day; `resets_at` says when that ends."
                ),
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        client = _client(request)
        identity = shopper_identity_resolve(
            client=client,
            user_id=serializer.validated_data.get("user_id"),
            user_token=serializer.validated_data.get("user_token"),
            addresses=ConnectionAddresses.from_request(request),
        )
        conversation = conversation_create(
            tenant=client.tenant,
            store_id=serializer.validated_data["store_id"],
            identity=identity,
            language=serializer.validated_data.get("language"),
        )
        return Response(self.OutputSerializer(conversation).data, status=status.HTTP_201_CREATED)


class ConversationDetailApi(APIView):
    """Return a conversation with one page of its messages, the latest by default."""

    permission_classes = [HasChatScope, WidgetOriginAllowed]

    @extend_schema_serializer(component_name="ConversationQuery")
    class QuerySerializer(serializers.Serializer):
        limit = serializers.IntegerField(
            min_value=1, max_value=MESSAGES_PAGE_MAX, default=MESSAGES_PAGE_DEFAULT
        )
        before = serializers.CharField(max_length=40, required=False)

    @extend_schema_serializer(component_name="Conversation")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="Message")
        class MessageSerializer(serializers.Serializer):
            message_id = serializers.CharField(source="public_id")
            role = serializers.CharField()
            text = serializers.CharField()
            events = EventListField()
            metadata = serializers.JSONField(
                help_text="The shopper message's `language`, or what the assistant recorded."
            )
            created_at = serializers.DateTimeField()

        conversation_id = serializers.CharField(source="public_id")
        store_id = serializers.CharField()
        session_id = serializers.CharField()
        user_id = serializers.SerializerMethodField()
        cart = CartField(help_text="The cart as the merchant last confirmed it.")
        created_at = serializers.DateTimeField()
        updated_at = serializers.DateTimeField()
        # The assistant that will reply to the next message, as when the conversation started.
        assistant = serializers.SerializerMethodField()

        def get_user_id(self, conversation: Any) -> str | None:
            return conversation.user_id or None

        @_ASSISTANT_SCHEMA
        def get_assistant(self, conversation: Conversation) -> str:
            return assistant_name(tenant=conversation.tenant)

    # The response body, for the OpenAPI document only, because ``get`` builds it as a dict.
    # A class statement here could not name OutputSerializer.MessageSerializer in its body.
    PageSerializer = extend_schema_serializer(component_name="ConversationPage")(
        type(
            "PageSerializer",
            (OutputSerializer,),
            {
                "messages": OutputSerializer.MessageSerializer(many=True),
                "has_more_messages": serializers.BooleanField(),
            },
        )
    )

    @extend_schema(
        tags=[_CHAT_TAG],
        summary="Read a conversation",
        description=(
            "Returns the conversation with one page of its messages, oldest first: the latest "
            "ones, or those before the message `before`."
        ),
        parameters=[QuerySerializer],
        responses={
            200: PageSerializer,
            **error_responses(
                400,
                401,
                403,
                404,
                status_404="`not_found`: no such conversation for the caller's tenant.",
            ),
        },
    )
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
    limits) are JSON error responses in both modes. A request with the
    ``Idempotency-Key`` of a stored shopper message gets that message's stored reply in either
    mode.
    """

    permission_classes = [HasChatScope, WidgetOriginAllowed]

    @extend_schema_serializer(component_name="MessageCreate")
    class InputSerializer(StrictInputSerializer):
        text = StringField()

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        # Every Response of this view is JSON, also for a client that accepts only
        # text/event-stream: the stream itself is a StreamingHttpResponse, not a Response.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        tags=[_CHAT_TAG],
        summary="Send a message",
        description=(
            "Returns the assistant's reply as a list of events, or streams the same events as "
            "Server-Sent Events with `Accept: text/event-stream`. Errors found before the reply "
            "starts are JSON error responses in both modes."
        ),
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                name=IDEMPOTENCY_KEY_HEADER,
                location=OpenApiParameter.HEADER,
                required=False,
                type=str,
                description=(
                    "A key that the client generates for each new message, 1 to 255 "
                    "characters of printable ASCII without a space at either end, and sends "
                    "again when it retries the message. A retry with the key of a stored "
                    "message gets that message's reply again, without a new reply; "
                    "docs/chat-api.md describes it."
                ),
            )
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                response=inline_serializer(
                    "MessageReply",
                    {
                        "conversation_id": serializers.CharField(),
                        "message_id": serializers.CharField(
                            help_text="The id of the assistant's message."
                        ),
                        "events": EventListField(),
                    },
                ),
                description="The reply: JSON by default, or a Server-Sent Events stream.",
            ),
            (200, "text/event-stream"): OpenApiResponse(
                response=_SSE_MESSAGE_SCHEMA,
                description=(
                    "With `Accept: text/event-stream`: one SSE message per event, whose "
                    "`event:` is the event's type and whose `data:` is the event as JSON. The "
                    "schema describes one message, as tools that read SSE streams apply it. "
                    "The stream ends with `response_complete`; docs/streaming.md describes it."
                ),
            ),
            **error_responses(
                400,
                401,
                403,
                404,
                409,
                413,
                422,
                429,
                status_404="`not_found`: no such conversation for the caller's tenant.",
                status_422=(
                    "`idempotency_key_reused`: the `Idempotency-Key` was sent with another "
                    "message text in this conversation."
                ),
                status_413=(
                    "`message_too_large`: `text` is over 65,536 bytes of UTF-8, or the body "
                    "is over 5 MiB."
                ),
                status_429=(
                    "`rate_limit_exceeded` (with `retry_after` and a `Retry-After` header) or "
                    "`user_message_limit` (with `resets_at`)."
                ),
            ),
        },
    )
    def post(self, request: Request, conversation_id: str) -> HttpResponseBase:
        conversation = conversation_get(tenant=_client(request).tenant, public_id=conversation_id)
        serializer = self.InputSerializer(data=_message_data(request))
        serializer.is_valid(raise_exception=True)
        turn = ConversationTurn(
            conversation=conversation,
            text=serializer.validated_data["text"],
            idempotency_key=_idempotency_key(request),
        )
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
