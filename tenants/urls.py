from django.urls import path

from tenants.apis import WebhookSecretRotateApi, WebhookSettingsApi

urlpatterns = [
    path("webhooks", WebhookSettingsApi.as_view(), name="admin-webhooks"),
    path(
        "webhooks/rotate-secret",
        WebhookSecretRotateApi.as_view(),
        name="admin-webhooks-rotate-secret",
    ),
]
