"""A scripted OpenAI-compatible chat completions server on 127.0.0.1, for agent tests.

The agent talks to it through the real ``openai`` client over HTTP. Each request to
``POST /v1/chat/completions`` takes the next scripted ``Answer`` and replies with it as a
chat completion, or as OpenAI-style ``chat.completion.chunk`` Server-Sent Events when the
request has ``"stream": true``. Every request is recorded, so tests can check the models,
the tools offered and the messages (tool results included) that the agent sent.

A request that finds the script empty gets HTTP 500 with ``script_exhausted``.
"""

import contextlib
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

COMPLETIONS_PATH = "/v1/chat/completions"
# Characters of text, or of tool call arguments, per stream chunk.
STREAM_PIECE_CHARS = 6


@dataclass(frozen=True)
class Answer:
    """One scripted response.

    ``body`` replaces the whole response (for garbage); otherwise a ``status`` other than
    200 sends an OpenAI error object, and 200 sends a completion with ``text`` and
    ``tool_calls`` (name and arguments, as a dict or as raw JSON text).
    """

    text: str = ""
    tool_calls: tuple[tuple[str, dict[str, Any] | str], ...] = ()
    # A refusal, sent in the message's "refusal" field with no content.
    refusal: str | None = None
    # Ids of the tool calls in order; None numbers them "call_1", "call_2", ...
    call_ids: tuple[str, ...] | None = None
    # (prompt_tokens, completion_tokens), or None to send no usage at all.
    usage: tuple[int, int] | None = (100, 20)
    status: int = 200
    body: bytes | None = None
    content_type: str = "application/json"
    # Seconds to wait before the response, and between stream chunks.
    delay: float = 0.0
    chunk_delay: float = 0.0
    # Stream chunks after which the connection is dropped, to simulate a broken stream.
    drop_after_chunks: int | None = None
    # The finish reason; None sends "tool_calls" with tool calls and "stop" without.
    finish_reason: str | None = None
    # Extra response headers, such as ("Retry-After", "30").
    headers: tuple[tuple[str, str], ...] = ()
    # SSE comment lines (": ping") sent before the first chunk, chunk_delay apart. They reach
    # no caller of the openai client, as servers use them to keep a connection open.
    comment_lines: int = 0
    # Seconds between the bytes of a plain body, which is then sent one byte at a time.
    byte_delay: float = 0.0
    # Send the id and name of a streamed tool call again in each of its argument chunks, as
    # a server may.
    repeat_call_fields: bool = False


def reply(text: str, *, usage: tuple[int, int] | None = (100, 20), **options: Any) -> Answer:
    return Answer(text=text, usage=usage, **options)


def call(name: str, arguments: dict[str, Any] | str | None = None) -> tuple[str, Any]:
    return (name, {} if arguments is None else arguments)


def tool_calls(*calls: tuple[str, Any], text: str = "", **options: Any) -> Answer:
    return Answer(text=text, tool_calls=tuple(calls), **options)


def http_error(
    status: int, message: str = "upstream failure", headers: tuple[tuple[str, str], ...] = ()
) -> Answer:
    return Answer(status=status, text=message, headers=headers)


def raw_body(body: bytes, content_type: str = "application/json") -> Answer:
    return Answer(body=body, content_type=content_type)


@dataclass(frozen=True)
class LLMRequest:
    """A request the server received."""

    body: dict[str, Any]
    # Header names in lower case.
    headers: dict[str, str]

    @property
    def model(self) -> str:
        return self.body["model"]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body["messages"]

    @property
    def tool_names(self) -> list[str]:
        return [tool["function"]["name"] for tool in self.body.get("tools", [])]

    def tool_results(self) -> list[dict[str, Any]]:
        """Return the decoded JSON of every tool message, oldest first."""
        return [json.loads(m["content"]) for m in self.messages if m["role"] == "tool"]


@dataclass
class ScriptedLLM:
    server: ThreadingHTTPServer
    script: deque[Answer] = field(default_factory=deque)
    requests: list[LLMRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    request_ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def add(self, *answers: Answer) -> None:
        with self.lock:
            self.script.extend(answers)

    def next_answer(self, request: LLMRequest) -> tuple[Answer | None, str]:
        with self.lock:
            self.requests.append(request)
            request_id = f"req_test_{next(self.request_ids)}"
            return (self.script.popleft() if self.script else None), request_id

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, message_format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # A request sent through the server as an HTTP proxy names the whole URL.
        if urlsplit(self.path).path != COMPLETIONS_PATH:
            self._send_json(404, {"error": {"message": "not found", "type": "invalid_request"}})
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = LLMRequest(body=json.loads(body), headers=headers)
        answer, request_id = self.server.llm.next_answer(request)
        if answer is None:
            self._send_json(
                500,
                {"error": {"message": "script_exhausted", "type": "server_error"}},
                request_id,
            )
            return
        time.sleep(answer.delay)
        # A client that gave up (a timeout, a closed stream) needs nothing more.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(request, answer, request_id)

    def _answer(self, request: LLMRequest, answer: Answer, request_id: str) -> None:
        headers = answer.headers
        if answer.body is not None:
            self._send(answer.status, answer.body, answer.content_type, request_id, headers)
        elif answer.status != 200:
            error = {"error": {"message": answer.text, "type": "server_error", "code": None}}
            self._send_json(answer.status, error, request_id, headers)
        elif request.body.get("stream"):
            self._stream(request, answer, request_id)
        else:
            body = json.dumps(_completion(request, answer)).encode()
            self._send(200, body, "application/json", request_id, headers, answer.byte_delay)

    def _stream(self, request: LLMRequest, answer: Answer, request_id: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("x-request-id", request_id)
        self.send_header("Connection", "close")
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        include_usage = (request.body.get("stream_options") or {}).get("include_usage")
        for _ in range(answer.comment_lines):
            self.wfile.write(b": ping\n\n")
            self.wfile.flush()
            time.sleep(answer.chunk_delay)
        for number, chunk in enumerate(_chunks(request, answer, include_usage), start=1):
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
            if answer.drop_after_chunks is not None and number >= answer.drop_after_chunks:
                return
            time.sleep(answer.chunk_delay)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _send_json(
        self,
        status: int,
        payload: object,
        request_id: str = "",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        body = json.dumps(payload).encode()
        self._send(status, body, "application/json", request_id, headers)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        request_id: str,
        headers: tuple[tuple[str, str], ...] = (),
        byte_delay: float = 0.0,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if request_id:
            self.send_header("x-request-id", request_id)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if not byte_delay:
            self.wfile.write(body)
            return
        for byte in body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(byte_delay)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # socketserver's default of 5 overflows under concurrent tests
    llm: ScriptedLLM


def start_scripted_llm() -> ScriptedLLM:
    server = _Server(("127.0.0.1", 0), _Handler)
    llm = ScriptedLLM(server=server)
    server.llm = llm
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return llm


def _tool_call_payloads(answer: Answer) -> list[dict[str, Any]]:
    call_ids = answer.call_ids or [
        f"call_{index}" for index in range(1, len(answer.tool_calls) + 1)
    ]
    return [
        {
            "id": call_id,
            "type": "function",
            "function": {
                "name": name,
                "arguments": arguments
                if isinstance(arguments, str)
                else json.dumps(arguments, ensure_ascii=False),
            },
        }
        for call_id, (name, arguments) in zip(call_ids, answer.tool_calls, strict=True)
    ]


def _usage(answer: Answer) -> dict[str, int] | None:
    if answer.usage is None:
        return None
    prompt, completion = answer.usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish_reason(answer: Answer) -> str:
    if answer.finish_reason is not None:
        return answer.finish_reason
    return "tool_calls" if answer.tool_calls else "stop"


def _completion(request: LLMRequest, answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.refusal is not None:
        message["refusal"] = answer.refusal
    if answer.tool_calls:
        message["tool_calls"] = _tool_call_payloads(answer)
    completion: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(answer)}],
    }
    usage = _usage(answer)
    if usage is not None:
        completion["usage"] = usage
    return completion


def _chunks(request: LLMRequest, answer: Answer, include_usage: bool) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    text = answer.text
    deltas.extend(
        {"content": text[start : start + STREAM_PIECE_CHARS]}
        for start in range(0, len(text), STREAM_PIECE_CHARS)
    )
    refusal = answer.refusal or ""
    deltas.extend(
        {"refusal": refusal[start : start + STREAM_PIECE_CHARS]}
        for start in range(0, len(refusal), STREAM_PIECE_CHARS)
    )
    for index, payload in enumerate(_tool_call_payloads(answer)):
        function = payload["function"]
        deltas.append(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": payload["id"],
                        "type": "function",
                        "function": {"name": function["name"], "arguments": ""},
                    }
                ]
            }
        )
        arguments = function["arguments"]
        for start in range(0, len(arguments), STREAM_PIECE_CHARS):
            piece = arguments[start : start + STREAM_PIECE_CHARS]
            part: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
            if answer.repeat_call_fields:
                part["id"] = payload["id"]
                part["type"] = "function"
                part["function"]["name"] = function["name"]
            deltas.append({"tool_calls": [part]})
    chunks = [
        _chunk(request, {"index": 0, "delta": delta, "finish_reason": None}) for delta in deltas
    ]
    chunks.append(
        _chunk(request, {"index": 0, "delta": {}, "finish_reason": _finish_reason(answer)})
    )
    usage = _usage(answer)
    if include_usage and usage is not None:
        chunks.append({**_chunk(request, None), "usage": usage})
    return chunks


def _chunk(request: LLMRequest, choice: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.model,
        "choices": [choice] if choice is not None else [],
    }
