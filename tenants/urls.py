from django.urls import path

from tenants.apis import (
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
]
