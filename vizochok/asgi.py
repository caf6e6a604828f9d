"""ASGI entry point for uvicorn, which serves the WebSocket chat endpoint.

``uvicorn vizochok.asgi:application`` runs next to gunicorn, which keeps serving HTTP; a
proxy sends ``/api/v1/ws/`` to this process (docs/deployment.md). HTTP requests that reach
it anyway, such as a load balancer's health check, get the same Django views.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vizochok.settings")

# Set up Django before the consumer's modules import models.
http_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from conversations.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {"http": http_application, "websocket": URLRouter(websocket_urlpatterns)}
)
