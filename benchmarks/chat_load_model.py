"""A scripted OpenAI-compatible chat completions server for benchmarks/chat_load.py.

Unlike the queue of responses in the tests' server, it chooses each response from the
request alone, so any number of conversations can use it at once. The last user message picks the
tool calls:

- ``знайди X``: ``search_products`` with ``X``, then a short text;
- ``додай X``: ``search_products`` with ``X``, then ``add_to_cart`` with the first SKU
  found, then a short text (a text alone when the search found nothing). ``додай перший``
  ("add the first one") searches with the latest ``знайди`` query of the conversation, so
  that the offline assistant and the agent get the same messages;
- ``покажи кошик``: ``view_cart``, then a short text;
- anything else: a short text.

Every answer reports ``PROMPT_TOKENS`` and ``COMPLETION_TOKENS`` as its usage, streamed or
not. ``GET /stats`` returns the calls and tokens served so far, which chat_load.py compares
with the tokens that the app recorded. Usage::

    python benchmarks/chat_load_model.py --port 8003 --delay 0.5

It prints ``listening on http://127.0.0.1:PORT`` once it accepts requests (``--port 0``
picks a free port).
"""

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMPLETIONS_PATH = "/v1/chat/completions"
STATS_PATH = "/stats"
PROMPT_TOKENS = 100
COMPLETION_TOKENS = 20
# Characters of text per streamed chunk.
STREAM_PIECE_CHARS = 8
REPLY_TEXT = "Готово. Ось що я знайшов у магазині, гарного дня!"
NOT_FOUND_TEXT = "Нічого такого не знайшов."
COMMAND = re.compile(r"^\s*(знайди|додай|покажи кошик)\s*(.*)$", re.IGNORECASE)


class ModelStats:
    """Calls and tokens served, shared by the request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.tool_call_answers = 0
        self.tokens = 0

    def count(self, *, with_tool_calls: bool) -> None:
        with self._lock:
            self.calls += 1
            self.tool_call_answers += int(with_tool_calls)
            self.tokens += PROMPT_TOKENS + COMPLETION_TOKENS

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "calls": self.calls,
                "tool_call_answers": self.tool_call_answers,
                "tokens": self.tokens,
            }


def plan_answer(messages: list[dict[str, Any]]) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """Return the tool calls and the text of the next response to ``messages``."""
    last_user = max(index for index, message in enumerate(messages) if message["role"] == "user")
    content = messages[last_user]["content"]
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    tool_results = [message for message in messages[last_user + 1 :] if message["role"] == "tool"]
    match = COMMAND.match(text)
    verb, argument = (match.group(1).lower(), match.group(2).strip()) if match else ("", "")

    if verb == "додай" and argument.lower() == "перший":
        argument = _last_search(messages[:last_user]) or argument
    if verb in ("знайди", "додай") and not tool_results:
        return [("search_products", {"query": argument or text})], ""
    if verb == "додай" and len(tool_results) == 1:
        sku = _first_sku(tool_results[0]["content"])
        if sku is None:
            return [], NOT_FOUND_TEXT
        return [("add_to_cart", {"sku": sku, "quantity": 1})], ""
    if verb == "покажи кошик" and not tool_results:
        return [("view_cart", {})], ""
    return [], REPLY_TEXT


def _last_search(messages: list[dict[str, Any]]) -> str | None:
    """Return the query of the latest "знайди X" among earlier user messages."""
    for message in reversed(messages):
        if message["role"] == "user" and isinstance(message["content"], str):
            match = COMMAND.match(message["content"])
            if match and match.group(1).lower() == "знайди":
                return match.group(2).strip()
    return None


def _first_sku(tool_result: str) -> str | None:
    try:
        products = json.loads(tool_result).get("products") or []
    except (ValueError, AttributeError):
        return None
    return products[0]["sku"] if products else None


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


class ScriptedModelHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stats: ModelStats
    delay: float

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: a line per request would cost the benchmark time."""

    def do_GET(self) -> None:
        if self.path != STATS_PATH:
            self._send_json(404, {"error": {"message": "not found"}})
            return
        self._send_json(200, self.stats.as_dict())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length))
        if self.path.split("?")[0] != COMPLETIONS_PATH:
            self._send_json(404, {"error": {"message": "not found"}})
            return
        calls, text = plan_answer(request["messages"])
        self.stats.count(with_tool_calls=bool(calls))
        if self.delay:
            time.sleep(self.delay)
        tool_calls = [
            {
                "id": f"call_{number}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
            }
            for number, (name, arguments) in enumerate(calls, start=1)
        ]
        finish_reason = "tool_calls" if tool_calls else "stop"
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
        base = {"id": "chatcmpl-bench", "created": int(time.time()), "model": request["model"]}
        try:
            if request.get("stream"):
                self._stream(base, text, tool_calls, finish_reason, usage, request)
            else:
                message: dict[str, Any] = {"role": "assistant", "content": text or None}
                if tool_calls:
                    message["tool_calls"] = tool_calls
                choice = {"index": 0, "message": message, "finish_reason": finish_reason}
                self._send_json(
                    200,
                    {**base, "object": "chat.completion", "choices": [choice], "usage": usage},
                )
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stream(
        self,
        base: dict[str, Any],
        text: str,
        tool_calls: list[dict[str, Any]],
        finish_reason: str,
        usage: dict[str, int],
        request: dict[str, Any],
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = {**base, "object": "chat.completion.chunk"}

        def delta(fields: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": fields, "finish_reason": finish}
            return _sse({**chunk, "choices": [choice]})

        self.wfile.write(delta({"role": "assistant", "content": ""}))
        for start in range(0, len(text), STREAM_PIECE_CHARS):
            self.wfile.write(delta({"content": text[start : start + STREAM_PIECE_CHARS]}))
        for index, tool_call in enumerate(tool_calls):
            self.wfile.write(delta({"tool_calls": [{"index": index, **tool_call}]}))
        self.wfile.write(delta({}, finish_reason))
        if (request.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(_sse({**chunk, "choices": [], "usage": usage}))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True
    # Every shopper's turn may open a connection at the same moment.
    request_queue_size = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="Port on 127.0.0.1; 0 picks one.")
    parser.add_argument(
        "--delay",
        type=float,
        default=0.0,
        help="Seconds to wait before each response, as a model's time to first token.",
    )
    args = parser.parse_args()

    handler = type("Handler", (ScriptedModelHandler,), {"stats": ModelStats(), "delay": args.delay})
    server = ModelServer(("127.0.0.1", args.port), handler)
    sys.stdout.write(f"listening on http://127.0.0.1:{server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
