from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class VizochokConfig(AppConfig):
    # The app's config, because this module defines two.
    default = True
    name = "vizochok"
    verbose_name = "Vizochok"


class VizochokAdminConfig(admin_apps.AdminConfig):
    """Django's admin app, whose default site is ``vizochok.admin.VizochokAdminSite``."""

    default = False
    default_site = "vizochok.admin.VizochokAdminSite"
