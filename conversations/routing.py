"""WebSocket routes of the chat, mounted by the ASGI application in vizochok/asgi.py."""

from django.urls import path

from conversations.consumers import ChatConsumer

websocket_urlpatterns = [
    path("api/v1/ws/chat", ChatConsumer.as_asgi()),
]
