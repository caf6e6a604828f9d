"""Helpers for agent tests that talk to the chat API, in JSON or as Server-Sent Events."""

import json

from conversations.models import Conversation

MESSAGES_URL = "/api/v1/conversations/{}/messages"


def send_stream(client, conversation: Conversation, text: str):
    """Post one message asking for Server-Sent Events; return the response and its events."""
    response = client.post(
        MESSAGES_URL.format(conversation.public_id),
        {"text": text},
        format="json",
        HTTP_ACCEPT="text/event-stream",
    )
    assert response.status_code == 200, response
    body = b"".join(response.streaming_content).decode()
    return response, sse_events(body)


def sse_events(body: str) -> list[dict]:
    """Parse an SSE body; check that every event name matches its data's type."""
    parsed = []
    for block in body.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"event", "data"}, block
        event = json.loads(fields["data"])
        assert event["type"] == fields["event"]
        parsed.append(event)
    return parsed


def types_of(sent: list[dict]) -> list[str]:
    """Return the event types, with each run of text_delta events shown once."""
    types: list[str] = []
    for event in sent:
        if not (event["type"] == "text_delta" and types and types[-1] == "text_delta"):
            types.append(event["type"])
    return types


def cards_of(sent: list[dict]) -> list[dict]:
    return [card for event in sent if event["type"] == "product_cards" for card in event["items"]]
