from django.apps import AppConfig


class VizochokConfig(AppConfig):
    name = "vizochok"
    verbose_name = "Vizochok"
