"""Routes of the public HTTP API, version 1."""

from django.urls import include, path

from vizochok.views import HealthApi

urlpatterns = [
    path("health", HealthApi.as_view(), name="health"),
    path("admin/", include("tenants.urls")),
    path("catalog/", include("catalog.urls")),
    path("", include("conversations.urls")),
]
