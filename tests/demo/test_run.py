"""The demo's start-up wait for its servers (demo/run.py)."""

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from demo.run import wait_until_healthy


@contextmanager
def _server_returning(statuses: list[int]) -> Iterator[str]:
    """Serve each status of ``statuses`` in turn, then the last one for every request."""
    remaining = list(statuses)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = remaining.pop(0) if len(remaining) > 1 else remaining[0]
            body = b'{"ok": true}' if status == 200 else b"error"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def idle_process() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_client_error_stops_wait_at_once(idle_process):
    with _server_returning([400]) as url:
        started = time.monotonic()
        with pytest.raises(SystemExit) as raised:
            wait_until_healthy(url, idle_process, "app")
        assert time.monotonic() - started < 5
        assert "HTTP 400" in str(raised.value)
        assert ".demo/app.log" in str(raised.value)


def test_server_error_is_retried(idle_process):
    with _server_returning([503, 503, 200]) as url:
        wait_until_healthy(url, idle_process, "app")
