"""The demo conversation's terminal output."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import pytest

from demo.conversation import _money, exit_on_llm_failure, play_conversation
from tests.local_http import serving

LLM_FAILURE = {
    "type": "error",
    "code": "internal_error",
    "reason": "llm_unavailable",
    "error_id": "err_1",
}


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1.005, "1.01 грн"), (45.9, "45.90 грн"), (10, "10.00 грн"), (0.0, "0.00 грн"), (None, "")],
)
def test_money_rounds_halves_up(value, shown):
    assert _money(value) == shown


@contextmanager
def _chat_api_failing_llm() -> Iterator[tuple[str, list[str]]]:
    """Serve a chat API whose every reply is the LLM agent's llm_unavailable error."""
    posted: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            self.rfile.read(length)
            posted.append(self.path)
            if self.path == "/api/v1/conversations":
                self._send("application/json", json.dumps({"conversation_id": "conv_1"}))
            elif self.headers.get("Accept") == "text/event-stream":
                self._send(
                    "text/event-stream", f"event: error\ndata: {json.dumps(LLM_FAILURE)}\n\n"
                )
            else:
                body = {"conversation_id": "conv_1", "events": [LLM_FAILURE]}
                self._send("application/json", json.dumps(body))

        def _send(self, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url, posted


@pytest.mark.parametrize("stream", [True, False])
def test_conversation_stops_at_llm_failure(stream, capsys):
    with _chat_api_failing_llm() as (app_url, posted), pytest.raises(SystemExit) as raised:
        play_conversation(
            app_url=app_url,
            public_key="pk_live_demo",
            user_token_secret="secret",
            store_id="store-1",
            user_id="demo-shopper",
            stream=stream,
        )

    assert posted == ["/api/v1/conversations", "/api/v1/conversations/conv_1/messages"]
    assert str(raised.value).startswith("The LLM agent failed with llm_unavailable")
    assert "unset OPENAI_BASE_URL and OPENAI_API_KEY" in str(raised.value)
    assert "error: internal_error (llm_unavailable)" in capsys.readouterr().out


def test_llm_failure_check_ignores_other_errors():
    events = [
        {"type": "error", "code": "internal_error", "error_id": "err_2"},
        {"type": "error", "code": "rate_limited"},
        {"type": "response_complete"},
    ]

    assert exit_on_llm_failure(events) is None
