from django.urls import path

from tenants.apis import WebhookSecretRotateApi, WebhookSettingsApi, WebhookTestApi

urlpatterns = [
    path("webhooks", WebhookSettingsApi.as_view(), name="admin-webhooks"),
    path(
        "webhooks/rotate-secret",
        WebhookSecretRotateApi.as_view(),
        name="admin-webhooks-rotate-secret",
    ),
    path("webhooks/test", WebhookTestApi.as_view(), name="admin-webhooks-test"),
]
