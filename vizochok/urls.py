from django.contrib import admin
from django.urls import include, path, register_converter

from vizochok.converters import PublicIdConverter

register_converter(PublicIdConverter, "public_id")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("vizochok.api_urls")),
]

handler400 = "vizochok.views.bad_request"
handler404 = "vizochok.views.not_found"
handler500 = "vizochok.views.server_error"
