"""Helpers for tests that talk to the chat API."""

import json

from conversations.models import Conversation


def send(client, conversation: Conversation, text: str) -> list[dict]:
    """Post one shopper message and return the events of the reply."""
    response = client.post(
        f"/api/v1/conversations/{conversation.public_id}/messages", {"text": text}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["events"]


def reply_text(sent: list[dict]) -> str:
    return "".join(event["delta"] for event in sent if event["type"] == "text_delta")


def cart_posts(merchant) -> list[dict]:
    """Return the bodies of the cart webhook requests the merchant received, in order."""
    return [
        json.loads(request.body)
        for request in merchant.requests
        if request.method == "POST" and request.path == "/vizochok/cart"
    ]
