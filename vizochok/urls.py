from django.contrib import admin
from django.urls import include, path, re_path, register_converter

from vizochok.converters import PublicIdConverter
from vizochok.views import ApiNotFound

register_converter(PublicIdConverter, "public_id")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("vizochok.api_urls")),
    re_path(r"^api/", ApiNotFound.as_view()),
]

handler400 = "vizochok.views.bad_request"
handler404 = "vizochok.views.not_found"
handler500 = "vizochok.views.server_error"
