"""Admin API for a tenant's own webhook and widget settings (secret sk_ keys only)."""

from datetime import timedelta

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.authentication import ApiClient, request_client
from tenants.models import MAX_ORIGIN_LENGTH, WebhookSettings
from tenants.permissions import IsSecretKey
from tenants.services import (
    MAX_ROTATION_OVERLAP_HOURS,
    webhook_secret_set,
    webhook_settings_get_or_create,
    webhook_settings_update,
    widget_allowed_origins_set,
)
from vizochok.serializers import (
    IdentifierField,
    StrictFloatField,
    StrictInputSerializer,
    StrictIntegerField,
    StringField,
)
from webhooks.diagnostics import TEST_STORE_ID, webhook_test_send
from webhooks.models import WebhookKind


class AdminApi(APIView):
    permission_classes = [IsSecretKey]

    def client(self, request: Request) -> ApiClient:
        return request_client(request)


class WebhookSettingsApi(AdminApi):
    """``GET`` / ``PATCH /api/v1/admin/webhooks``: the secret itself is never returned."""

    class InputSerializer(StrictInputSerializer):
        products_url = StringField(max_length=2000, allow_blank=True, required=False)
        cart_url = StringField(max_length=2000, allow_blank=True, required=False)
        cart_get_url = StringField(max_length=2000, allow_blank=True, required=False)
        secret = StringField(
            max_length=200, allow_blank=True, required=False, trim_whitespace=False
        )
        timeout_seconds = StrictIntegerField(min_value=1, max_value=30, required=False)

    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = WebhookSettings
            fields = ["products_url", "cart_url", "cart_get_url", "has_secret", "timeout_seconds"]

    def get(self, request: Request) -> Response:
        webhook_settings = webhook_settings_get_or_create(tenant=self.client(request).tenant)
        return Response(self.OutputSerializer(webhook_settings).data)

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

    class InputSerializer(StrictInputSerializer):
        overlap_hours = StrictFloatField(
            min_value=0, max_value=MAX_ROTATION_OVERLAP_HOURS, default=24
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
                "active_from": promote_at.isoformat() if promote_at else None,
            }
        )


class WebhookTestApi(AdminApi):
    """``POST /api/v1/admin/webhooks/test``: send one signed sample request and report on it.

    A merchant failure is a normal answer (``"ok": false`` with ``error``), never an error
    status; only an unconfigured webhook gets 400 ``webhook_not_configured``.
    """

    class InputSerializer(StrictInputSerializer):
        kind = serializers.ChoiceField(choices=WebhookKind.values, default=WebhookKind.PRODUCTS)
        store_id = IdentifierField(max_length=100, default=TEST_STORE_ID)

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

    class InputSerializer(StrictInputSerializer):
        widget_allowed_origins = serializers.ListField(
            child=StringField(max_length=MAX_ORIGIN_LENGTH), allow_empty=True
        )

    def get(self, request: Request) -> Response:
        tenant = self.client(request).tenant
        return Response({"widget_allowed_origins": tenant.widget_allowed_origins})

    def patch(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        origins = widget_allowed_origins_set(
            tenant=self.client(request).tenant,
            origins=serializer.validated_data["widget_allowed_origins"],
        )
        return Response({"ok": True, "widget_allowed_origins": origins})
