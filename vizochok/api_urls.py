"""Routes of the public HTTP API, version 1."""

from django.urls import include, path, re_path

from vizochok.openapi import SchemaApi
from vizochok.views import ApiNotFound, HealthApi

urlpatterns = [
    path("health", HealthApi.as_view(), name="health"),
    path("schema", SchemaApi.as_view(), name="schema"),
    path("admin/", include("tenants.urls")),
    path("catalog/", include("catalog.urls")),
    path("", include("conversations.urls")),
    # Last: any other path under the API answers with the JSON 404, also in debug mode,
    # where Django would otherwise render its HTML debug page.
    re_path(r"", ApiNotFound.as_view()),
]
