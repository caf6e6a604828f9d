"""Tests of the deadline-bound HTTP client of the LLM endpoint, against sockets on 127.0.0.1."""

import socket
from collections.abc import Iterator

import httpx2
import pytest

from conversations.llm_http import deadline_http_client, deadline_scope


class StepDeadline:
    """A deadline whose ``remaining`` returns the given values in turn, then the last one."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def remaining(self) -> float:
        if len(self.values) > 1:
            return self.values.pop(0)
        return self.values[0]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP socket on 127.0.0.1 that accepts connections and never sends a byte."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(2.0)
        yield server


def test_expired_deadline_before_tls_closes_socket(listener):
    port = listener.getsockname()[1]
    client = deadline_http_client(base_url=f"https://127.0.0.1:{port}/v1", timeout=2.0)
    # The connect gets time, and the deadline has passed when the TLS handshake starts.
    deadline = StepDeadline(1.0, 0.0)

    with pytest.raises(httpx2.ConnectTimeout) as raised, deadline_scope(deadline):
        client.get(f"https://127.0.0.1:{port}/v1/models")

    accepted, _ = listener.accept()
    with accepted:
        accepted.settimeout(2.0)
        # The client closed its end, so the server reads the end of the stream and no
        # TLS hello.
        assert accepted.recv(1024) == b""
    # The error is still referenced, so the client closed the socket before the garbage collector could.
    assert raised.value is not None
    client.close()
