from django.contrib import admin
from django.urls import include, path, re_path, register_converter

from conversations.widget_views import widget_demo, widget_script
from vizochok.converters import PublicIdConverter
from vizochok.views import ApiNotFound

register_converter(PublicIdConverter, "public_id")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("vizochok.api_urls")),
    re_path(r"^api/", ApiNotFound.as_view()),
    path("widget/v1/vizochok-widget.js", widget_script, name="widget-script"),
    path("widget/demo/", widget_demo, name="widget-demo"),
]

handler400 = "vizochok.views.bad_request"
handler404 = "vizochok.views.not_found"
handler500 = "vizochok.views.server_error"
