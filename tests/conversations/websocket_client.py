"""A WebSocket chat client for tests: uvicorn on 127.0.0.1 in a thread, and frame helpers.

The server runs in a thread of the test process, so it uses the test database and the
``settings`` fixture's overrides. Tests that use it need ``transaction=True``, so that the
server's writes are visible to them.
"""

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from websockets.datastructures import HeadersLike
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from vizochok.asgi import application

RECEIVE_TIMEOUT = 20


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread


@contextlib.contextmanager
def running_server() -> Iterator[RunningServer]:
    """Run uvicorn with the ASGI application on a free port in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Without proxy headers, as docs/deployment.md starts uvicorn, so that the scope's client
    # is the direct peer and TRUSTED_PROXY_COUNT alone decides about X-Forwarded-For.
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    try:
        yield RunningServer(
            url=f"ws://127.0.0.1:{port}/api/v1/ws/chat", server=server, thread=thread
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def open_socket(
    url: str, *, origin: str | None = None, headers: HeadersLike | None = None
) -> ClientConnection:
    return connect(
        url,
        origin=origin,  # type: ignore[arg-type]
        additional_headers=headers,
        open_timeout=5,
    )


def receive(ws: ClientConnection) -> dict:
    return json.loads(ws.recv(timeout=RECEIVE_TIMEOUT))


def send_frame(ws: ClientConnection, frame: dict) -> None:
    ws.send(json.dumps(frame, ensure_ascii=False))


def authenticate(ws: ClientConnection, token: str, **fields) -> dict:
    send_frame(ws, {"type": "auth", "token": token, **fields})
    return receive(ws)


def reply_events(ws: ClientConnection) -> list[dict]:
    """Receive frames up to and including ``response_complete``."""
    frames = [receive(ws)]
    while frames[-1]["type"] != "response_complete":
        frames.append(receive(ws))
    return frames


def close_code(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=RECEIVE_TIMEOUT)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def assert_open(ws: ClientConnection) -> None:
    send_frame(ws, {"type": "ping"})
    assert receive(ws) == {"type": "pong"}
