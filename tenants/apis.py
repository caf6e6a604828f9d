"""Admin API for a tenant's own settings and shoppers' data (secret sk_ keys only)."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.validators import MaxLengthValidator
from django.db.models import Field
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.apis import ConversationDetailApi
from conversations.models import Conversation, Message
from conversations.retention import (
    DeletedCounts,
    conversation_erase,
    shopper_data_erase,
    shopper_user_id_problem,
)
from conversations.selectors import (
    SHOPPER_CONVERSATIONS_PAGE_DEFAULT,
    SHOPPER_CONVERSATIONS_PAGE_MAX,
    TOKEN_USAGE_DAYS_DEFAULT,
    TOKEN_USAGE_DAYS_MAX,
    shopper_conversations_page,
    token_usage_report,
)
from tenants.authentication import ApiClient, request_client
from tenants.models import MAX_ORIGIN_LENGTH, AssistantSettings, WebhookSettings
from tenants.permissions import IsSecretKey
from tenants.services import (
    ASSISTANT_SETTINGS_FIELDS,
    MAX_ROTATION_OVERLAP_HOURS,
    MAX_SYSTEM_PROMPT_ADDITION_LENGTH,
    assistant_settings_get_or_create,
    assistant_settings_update,
    webhook_secret_set,
    webhook_settings_get_or_create,
    webhook_settings_update,
    widget_allowed_origins_set,
)
from vizochok.exceptions import InvalidInput
from vizochok.openapi import error_responses
from vizochok.serializers import (
    IdentifierField,
    StrictDecimalField,
    StrictFloatField,
    StrictInputSerializer,
    StrictIntegerField,
    StringField,
    documented_bounds,
)
from webhooks.diagnostics import TEST_STORE_ID, webhook_test_send
from webhooks.models import WebhookKind

_ADMIN_TAG = "admin"


class AdminApi(APIView):
    permission_classes = [IsSecretKey]

    def client(self, request: Request) -> ApiClient:
        return request_client(request)


class WebhookSettingsApi(AdminApi):
    """``GET`` / ``PATCH /api/v1/admin/webhooks``: the secret itself is never returned."""

    @extend_schema_serializer(component_name="WebhookSettingsUpdate")
    class InputSerializer(StrictInputSerializer):
        products_url = StringField(max_length=2000, allow_blank=True, required=False)
        cart_url = StringField(max_length=2000, allow_blank=True, required=False)
        cart_get_url = StringField(max_length=2000, allow_blank=True, required=False)
        secret = StringField(
            max_length=200, allow_blank=True, required=False, trim_whitespace=False
        )
        timeout_seconds = StrictIntegerField(min_value=1, max_value=30, required=False)

    @extend_schema_serializer(component_name="WebhookSettings")
    class OutputSerializer(serializers.ModelSerializer):
        # Plain strings, not URIs, because a URL that is not set is an empty string.
        products_url = serializers.CharField(read_only=True, help_text="Empty when not set.")
        cart_url = serializers.CharField(read_only=True, help_text="Empty when not set.")
        cart_get_url = serializers.CharField(read_only=True, help_text="Empty when not set.")

        class Meta:
            model = WebhookSettings
            fields = ["products_url", "cart_url", "cart_get_url", "has_secret", "timeout_seconds"]
            # Output only, so that the OpenAPI document marks every field as always present.
            read_only_fields = fields

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Read the webhook settings",
        responses={200: OutputSerializer, **error_responses(401, 403)},
    )
    def get(self, request: Request) -> Response:
        webhook_settings = webhook_settings_get_or_create(tenant=self.client(request).tenant)
        return Response(self.OutputSerializer(webhook_settings).data)

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Change the webhook settings",
        description=(
            "Changes the fields sent and keeps the others. The first change that sets a URL "
            "of a tenant without a signing secret generates one and returns it once as "
            "`secret`. A `secret` in the request installs that secret at once."
        ),
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "WebhookSettingsUpdated",
                {
                    "ok": serializers.BooleanField(),
                    "has_secret": serializers.BooleanField(),
                    "secret": serializers.CharField(
                        required=False, help_text="A generated signing secret, shown once."
                    ),
                },
            ),
            **error_responses(400, 401, 403, 413),
        },
    )
    def patch(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        update = webhook_settings_update(
            tenant=self.client(request).tenant, **serializer.validated_data
        )
        body: dict[str, object] = {"ok": True, "has_secret": update.webhook_settings.has_secret}
        if update.generated_secret is not None:
            # Shown once: the merchant configures its verifier with it.
            body["secret"] = update.generated_secret
        return Response(body)


class WebhookSecretRotateApi(AdminApi):
    """``POST /api/v1/admin/webhooks/rotate-secret``: issue the next signing secret once."""

    @extend_schema_serializer(component_name="WebhookSecretRotation")
    class InputSerializer(StrictInputSerializer):
        overlap_hours = StrictFloatField(
            min_value=0, max_value=MAX_ROTATION_OVERLAP_HOURS, default=24
        )

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Rotate the webhook signing secret",
        description=(
            "Generates the next signing secret and returns it once. During the overlap, "
            "requests carry a second signature made with it; an overlap of 0 replaces the "
            "secret at once."
        ),
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "WebhookSecretRotated",
                {
                    "ok": serializers.BooleanField(),
                    "secret": serializers.CharField(),
                    "active_from": serializers.DateTimeField(
                        allow_null=True,
                        help_text="When the new secret becomes the current one; null when "
                        "it already is.",
                    ),
                },
            ),
            **error_responses(400, 401, 403, 413),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        overlap = timedelta(hours=serializer.validated_data["overlap_hours"])
        webhook_settings = webhook_settings_get_or_create(tenant=self.client(request).tenant)
        secret = webhook_secret_set(webhook_settings=webhook_settings, overlap=overlap)
        promote_at = webhook_settings.next_secret_promote_at
        return Response(
            {
                "ok": True,
                "secret": secret,
                # Formatted as the API's other timestamps, with "Z" for UTC.
                "active_from": (
                    serializers.DateTimeField().to_representation(promote_at)
                    if promote_at
                    else None
                ),
            }
        )


class WebhookTestApi(AdminApi):
    """``POST /api/v1/admin/webhooks/test``: send one signed sample request and report on it.

    A merchant failure is a normal answer (``"ok": false`` with ``error``), never an error
    status; only an unconfigured webhook gets 400 ``webhook_not_configured``.
    """

    @extend_schema_serializer(component_name="WebhookTestRequest")
    class InputSerializer(StrictInputSerializer):
        kind = serializers.ChoiceField(choices=WebhookKind.values, default=WebhookKind.PRODUCTS)
        store_id = IdentifierField(max_length=100, default=TEST_STORE_ID)

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Send a test request to a webhook",
        description=(
            "Sends one signed sample request to the merchant's webhook and reports the "
            "outcome. A merchant failure is a 200 with `ok` false and `error`."
        ),
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "WebhookTestResult",
                {
                    "kind": serializers.ChoiceField(choices=WebhookKind.values),
                    "ok": serializers.BooleanField(),
                    "status_code": serializers.IntegerField(
                        allow_null=True, help_text="The merchant's HTTP status, if it answered."
                    ),
                    "latency_ms": serializers.IntegerField(allow_null=True),
                    "response": serializers.JSONField(
                        required=False, help_text="The validated response, when `ok` is true."
                    ),
                    "error": serializers.CharField(
                        required=False, help_text="What failed, when `ok` is false."
                    ),
                    "error_code": serializers.CharField(
                        required=False,
                        help_text="A stable code of the failure, such as `http_503`.",
                    ),
                },
            ),
            **error_responses(
                400,
                401,
                403,
                413,
                status_400=(
                    "`invalid_json` for an invalid body, or `webhook_not_configured` when the "
                    "webhook's URL or the signing secret is not set."
                ),
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = webhook_test_send(
            tenant=self.client(request).tenant,
            kind=WebhookKind(serializer.validated_data["kind"]),
            store_id=serializer.validated_data["store_id"],
        )
        return Response(result.as_dict())


class WidgetSettingsApi(AdminApi):
    """``GET`` / ``PATCH /api/v1/admin/widget``: the origins allowed to chat from a browser."""

    @extend_schema_serializer(component_name="WidgetSettings")
    class InputSerializer(StrictInputSerializer):
        widget_allowed_origins = serializers.ListField(
            child=StringField(max_length=MAX_ORIGIN_LENGTH), allow_empty=True
        )

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Read the widget's allowed origins",
        responses={200: InputSerializer, **error_responses(401, 403)},
    )
    def get(self, request: Request) -> Response:
        tenant = self.client(request).tenant
        return Response({"widget_allowed_origins": tenant.widget_allowed_origins})

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Replace the widget's allowed origins",
        description="Replaces the whole list and returns it as stored, normalized.",
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "WidgetSettingsUpdated",
                {
                    "ok": serializers.BooleanField(),
                    "widget_allowed_origins": serializers.ListField(child=serializers.CharField()),
                },
            ),
            **error_responses(400, 401, 403, 413),
        },
    )
    def patch(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        origins = widget_allowed_origins_set(
            tenant=self.client(request).tenant,
            origins=serializer.validated_data["widget_allowed_origins"],
        )
        return Response({"ok": True, "widget_allowed_origins": origins})


class AssistantSettingsApi(AdminApi):
    """``GET`` / ``PATCH /api/v1/admin/assistant``: the AI settings of the caller's tenant."""

    @extend_schema_serializer(component_name="AssistantSettingsUpdate")
    class InputSerializer(StrictInputSerializer):
        # Types only: services.assistant_settings_clean checks the values, as for the admin.
        complex_model = StringField(allow_blank=True, required=False)
        fast_model = StringField(allow_blank=True, required=False)
        system_prompt_addition = StringField(
            allow_blank=True,
            required=False,
            help_text=f"At most {MAX_SYSTEM_PROMPT_ADDITION_LENGTH} characters.",
        )
        # Names and the language are neither trimmed nor required to be non-blank, so that the
        # service checks them as the admin form sends them.
        disabled_tools = serializers.ListField(
            child=StringField(allow_blank=True, trim_whitespace=False),
            allow_empty=True,
            required=False,
            help_text="Names of the tools that the agent is not offered; replaces the list.",
        )
        temperature = StrictDecimalField(
            required=False, help_text="0 to 2, with at most 2 decimal places."
        )
        default_language = StringField(
            allow_blank=True,
            trim_whitespace=False,
            required=False,
            help_text="`uk`, `en` or `ru`.",
        )
        max_tool_rounds = StrictIntegerField(required=False)
        session_token_limit = StrictIntegerField(required=False)
        daily_token_limit = StrictIntegerField(required=False)
        monthly_token_limit = StrictIntegerField(required=False)
        user_daily_message_limit = StrictIntegerField(required=False)
        user_daily_conversation_limit = StrictIntegerField(required=False)
        anonymous_limit_identity = StringField(
            allow_blank=True,
            trim_whitespace=False,
            required=False,
            help_text="What the daily limits count an anonymous shopper of a public key by: "
            "`api_key` (the default: all such shoppers of the key share one count) or "
            "`client_network` (per client IPv4 address or IPv6 /64).",
        )
        rate_limit_messages = StrictIntegerField(required=False)
        rate_limit_window_seconds = StrictIntegerField(required=False)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # The OpenAPI document shows the model's bounds. The service checks them.
            for field_name, field in self.fields.items():
                model_field = AssistantSettings._meta.get_field(field_name)
                assert isinstance(model_field, Field)
                field.validators = [*field.validators, *documented_bounds(model_field.validators)]
            prompt_field = self.fields["system_prompt_addition"]
            prompt_field.validators = [
                *prompt_field.validators,
                *documented_bounds([MaxLengthValidator(MAX_SYSTEM_PROMPT_ADDITION_LENGTH)]),
            ]

    @extend_schema_serializer(component_name="AssistantSettings")
    class OutputSerializer(serializers.ModelSerializer):
        # A JSON number, as the input takes it.
        temperature = serializers.DecimalField(
            max_digits=3,
            decimal_places=2,
            min_value=Decimal("0"),
            max_value=Decimal("2"),
            coerce_to_string=False,
            read_only=True,
        )

        class Meta:
            model = AssistantSettings
            fields = list(ASSISTANT_SETTINGS_FIELDS)
            # Output only, so that the OpenAPI document marks every field as always present.
            read_only_fields = fields

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Read the AI settings",
        description="Returns every AI setting, creating the defaults if the tenant has none.",
        responses={200: OutputSerializer, **error_responses(401, 403)},
    )
    def get(self, request: Request) -> Response:
        assistant_settings = assistant_settings_get_or_create(tenant=self.client(request).tenant)
        return Response(self.OutputSerializer(assistant_settings).data)

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Change the AI settings",
        description=(
            "Changes the fields sent and keeps the others, with the checks of the Django "
            "admin, and returns every setting as stored. An invalid value changes nothing. "
            "The next shopper message uses the new settings."
        ),
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 413)},
    )
    def patch(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        assistant_settings = assistant_settings_update(
            tenant=self.client(request).tenant, **serializer.validated_data
        )
        return Response(self.OutputSerializer(assistant_settings).data)


class TokenUsageApi(AdminApi):
    """``GET /api/v1/admin/usage``: the tenant's LLM token budgets and its usage of them."""

    @extend_schema_serializer(component_name="TokenUsageQuery")
    class QuerySerializer(serializers.Serializer):
        days = serializers.IntegerField(
            min_value=1,
            max_value=TOKEN_USAGE_DAYS_MAX,
            default=TOKEN_USAGE_DAYS_DEFAULT,
            help_text="How many UTC days, ending today, to list in `days`.",
        )

    @extend_schema_serializer(component_name="TokenUsage")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="TokenUsagePeriod")
        class PeriodSerializer(serializers.Serializer):
            start = serializers.DateField(
                read_only=True, help_text="Today, or the first day of this month (UTC)."
            )
            prompt_tokens = serializers.IntegerField(read_only=True)
            completion_tokens = serializers.IntegerField(read_only=True)
            total_tokens = serializers.IntegerField(read_only=True)
            requests = serializers.IntegerField(read_only=True, help_text="Model calls.")
            reserved_tokens = serializers.IntegerField(
                read_only=True,
                help_text="Estimates held by model calls still running, as the budget's check "
                "counts them.",
            )
            remaining_tokens = serializers.IntegerField(
                read_only=True,
                allow_null=True,
                help_text="The budget less the used and reserved tokens, at least 0, or null "
                "when the budget is 0 (no limit).",
            )

        @extend_schema_serializer(component_name="TokenUsageDay")
        class DaySerializer(serializers.Serializer):
            date = serializers.DateField(read_only=True, help_text="UTC date.")
            prompt_tokens = serializers.IntegerField(read_only=True)
            completion_tokens = serializers.IntegerField(read_only=True)
            total_tokens = serializers.IntegerField(read_only=True)
            requests = serializers.IntegerField(read_only=True, help_text="Model calls.")

        daily_token_limit = serializers.IntegerField(read_only=True, help_text="0 = no limit.")
        monthly_token_limit = serializers.IntegerField(read_only=True, help_text="0 = no limit.")
        today = PeriodSerializer(read_only=True)
        month = PeriodSerializer(read_only=True)
        days = DaySerializer(many=True, read_only=True, help_text="Newest first.")

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Read the LLM token usage",
        description=(
            "Returns the tenant's daily and monthly token budgets, the tokens used today and "
            "this month (UTC) with what remains of each budget, and the usage of each of the "
            "last `days` days, newest first, with zeros on days without model calls."
        ),
        parameters=[QuerySerializer],
        responses={200: OutputSerializer, **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        tenant = self.client(request).tenant
        report = token_usage_report(
            tenant=tenant,
            assistant_settings=assistant_settings_get_or_create(tenant=tenant),
            days=query.validated_data["days"],
        )
        return Response(self.OutputSerializer(report).data)


_USER_ID_PARAMETER = OpenApiParameter(
    "user_id",
    str,
    OpenApiParameter.PATH,
    description=(
        "The shopper's user id, as sent when the conversations were started, percent-encoded."
    ),
)

_DELETED_COUNTS = inline_serializer(
    "ShopperDataDeleted",
    {
        "ok": serializers.BooleanField(),
        "conversations": serializers.IntegerField(),
        "messages": serializers.IntegerField(),
        "usage_rows": serializers.IntegerField(
            help_text="Per-user daily counts of messages and conversations."
        ),
    },
)

_AGENT_BUSY = (
    "`agent_busy`: a message of one of the conversations is being processed; nothing was "
    "deleted. Retry when it is done."
)


def _shopper_user_id(user_id: str) -> str:
    """Return ``user_id`` from the path; raise ``InvalidInput`` if no shopper can have it."""
    problem = shopper_user_id_problem(user_id)
    if problem is not None:
        raise InvalidInput("Invalid user id.", fields={"user_id": [problem]})
    return user_id


def _deleted_body(counts: DeletedCounts) -> dict[str, object]:
    return {"ok": True, **counts.as_dict()}


class ShopperConversationsApi(AdminApi):
    """``GET /api/v1/admin/shoppers/{user_id}/conversations``: export a shopper's data."""

    @extend_schema_serializer(component_name="ShopperConversationsQuery")
    class QuerySerializer(serializers.Serializer):
        limit = serializers.IntegerField(
            min_value=1,
            max_value=SHOPPER_CONVERSATIONS_PAGE_MAX,
            default=SHOPPER_CONVERSATIONS_PAGE_DEFAULT,
        )
        before = serializers.CharField(max_length=40, required=False)

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Export a shopper's conversations",
        description=(
            "Returns the conversations of the tenant's shopper with this user id, newest "
            "first, each with all of its messages in the shape of the chat API's "
            "conversation. Pass the last conversation's id as `before` while `has_more` is "
            "true. Anonymous shoppers have no user id, so their conversations are not listed."
        ),
        parameters=[_USER_ID_PARAMETER, QuerySerializer],
        responses={
            200: inline_serializer(
                "ShopperConversations",
                {
                    "conversations": ConversationDetailApi.PageSerializer(many=True),
                    "has_more": serializers.BooleanField(),
                },
            ),
            **error_responses(
                400,
                401,
                403,
                404,
                status_404="`not_found`: `before` is not a conversation of this shopper.",
            ),
        },
    )
    def get(self, request: Request, user_id: str) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = shopper_conversations_page(
            tenant=self.client(request).tenant,
            user_id=_shopper_user_id(user_id),
            **query.validated_data,
        )
        return Response(
            {
                "conversations": [
                    self._conversation_data(conversation, page.messages[conversation.pk])
                    for conversation in page.conversations
                ],
                "has_more": page.has_more,
            }
        )

    @staticmethod
    def _conversation_data(
        conversation: Conversation, messages: list[Message]
    ) -> dict[str, object]:
        output = ConversationDetailApi.OutputSerializer
        return {
            **output(conversation).data,
            "messages": output.MessageSerializer(messages, many=True).data,
            "has_more_messages": False,
        }


class ShopperApi(AdminApi):
    """``DELETE /api/v1/admin/shoppers/{user_id}``: erase a shopper's data."""

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Delete a shopper's data",
        description=(
            "Deletes, in one transaction, every conversation of the tenant's shopper with "
            "this user id, their messages, and the shopper's daily usage counts, and returns "
            "how many rows went. A user id without data gets zero counts, so a retry is safe."
        ),
        parameters=[_USER_ID_PARAMETER],
        responses={
            200: _DELETED_COUNTS,
            **error_responses(400, 401, 403, 409, status_409=_AGENT_BUSY),
        },
    )
    def delete(self, request: Request, user_id: str) -> Response:
        counts = shopper_data_erase(
            tenant=self.client(request).tenant, user_id=_shopper_user_id(user_id)
        )
        return Response(_deleted_body(counts))


class ConversationEraseApi(AdminApi):
    """``DELETE /api/v1/admin/conversations/{conversation_id}``: erase one conversation."""

    @extend_schema(
        tags=[_ADMIN_TAG],
        summary="Delete a conversation",
        description=(
            "Deletes one conversation of the tenant with its messages, for example an "
            "anonymous shopper's. Daily usage counts are kept, because anonymous shoppers "
            "share theirs."
        ),
        responses={
            200: _DELETED_COUNTS,
            **error_responses(
                401,
                403,
                404,
                409,
                status_404="`not_found`: no such conversation for the caller's tenant.",
                status_409=_AGENT_BUSY,
            ),
        },
    )
    def delete(self, request: Request, conversation_id: str) -> Response:
        counts = conversation_erase(tenant=self.client(request).tenant, public_id=conversation_id)
        return Response(_deleted_body(counts))
