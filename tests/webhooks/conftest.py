"""Fixtures for webhook tests: local HTTP(S) servers on 127.0.0.1, test certificates, and
a guard that fails any test which tries to reach a host outside the loopback range."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

LOOPBACK_HOST = "127.0.0.1"

Behaviour = Callable[["RecordingHandler"], None]


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_address: tuple[str, int]


@dataclass
class ServerLog:
    """What a local server saw, shared between its handler threads and the test."""

    requests: list[ReceivedRequest] = field(default_factory=list)
    connections: int = 0
    server_names: list[str | None] = field(default_factory=list)
    handler_errors: list[BaseException] = field(default_factory=list)
    bytes_sent: int = 0
    handlers_done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class RecordingHandler(BaseHTTPRequestHandler):
    """Records each request, then lets the test's behaviour function write the response."""

    server: _RecordingServer

    def do_GET(self) -> None:
        self._record_and_respond()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output free of access logs."""

    def send_bytes(self, data: bytes) -> None:
        self.wfile.write(data)
        with self.server.log.lock:
            self.server.log.bytes_sent += len(data)

    def _record_and_respond(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        received = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            client_address=(self.client_address[0], self.client_address[1]),
        )
        with self.server.log.lock:
            self.server.log.requests.append(received)
        self.server.behaviour(self)


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5. Tests that connect from 8 threads at once could
    # overflow it on a busy machine, and Linux then drops the SYN, which the client resends
    # only after the 1 s connect timeout.
    request_queue_size = 64

    def __init__(self, behaviour: Behaviour, log: ServerLog, protocol_version: str) -> None:
        self.behaviour = behaviour
        self.log = log
        handler = type("Handler", (RecordingHandler,), {"protocol_version": protocol_version})
        super().__init__((LOOPBACK_HOST, 0), handler)

    def verify_request(self, request: object, client_address: object) -> bool:
        with self.log.lock:
            self.log.connections += 1
        return True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that give up mid-response are expected here, so record instead of printing.
        import sys

        error = sys.exc_info()[1]
        if error is not None:
            with self.log.lock:
                self.log.handler_errors.append(error)

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        super().process_request_thread(request, client_address)
        self.log.handlers_done.set()


class LocalServer:
    """An HTTP or HTTPS server on 127.0.0.1 in a background thread."""

    def __init__(
        self,
        behaviour: Behaviour,
        *,
        tls: ssl.SSLContext | None = None,
        protocol_version: str = "HTTP/1.0",
    ) -> None:
        self.log = ServerLog()
        self._server = _RecordingServer(behaviour, self.log, protocol_version)
        self.scheme = "http"
        if tls is not None:
            tls.sni_callback = self._record_server_name
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.port = self._server.server_address[1]
        # A short poll interval keeps shutdown() fast, because the default 0.5 s adds up over tests.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/", *, host: str = LOOPBACK_HOST) -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _record_server_name(
        self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        with self.log.lock:
            self.log.server_names.append(server_name)


@pytest.fixture
def start_server() -> Iterator[Callable[..., LocalServer]]:
    """Start local servers for one test and stop them afterwards."""
    servers: list[LocalServer] = []

    def start(behaviour: Behaviour, **options: object) -> LocalServer:
        server = LocalServer(behaviour, **options)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def only_loopback_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any code resolves a name or reaches an address outside 127.0.0.0/8.

    urllib3 passes every address it connects to through socket.getaddrinfo, so this guard
    checks each connection attempt before it happens.
    """
    real_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        text = host.decode() if isinstance(host, bytes) else str(host)
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise AssertionError(f"test tried to resolve {text!r} with real DNS") from None
        if not address.is_loopback or address.version != 4:
            raise AssertionError(f"test tried to connect to {text}")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@dataclass(frozen=True)
class CertificateFiles:
    ca_file: Path
    merchant_cert: Path
    merchant_key: Path
    other_cert: Path
    other_key: Path

    def server_context(self, *, name: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if name == "merchant.test":
            context.load_cert_chain(self.merchant_cert, self.merchant_key)
        else:
            context.load_cert_chain(self.other_cert, self.other_key)
        return context


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _create_server_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    key, request, cert = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "pem"))
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName=DNS:{name}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", request.name, "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", request.name, "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", cert.name, "-extfile", extensions.name,
        cwd=directory,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """Create a throw-away CA and server certificates for merchant.test and other.test."""
    directory = tmp_path_factory.mktemp("tls")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Vizochok Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    merchant_cert, merchant_key = _create_server_certificate(directory, "merchant.test")
    other_cert, other_key = _create_server_certificate(directory, "other.test")
    return CertificateFiles(
        ca_file=directory / "ca.pem",
        merchant_cert=merchant_cert,
        merchant_key=merchant_key,
        other_cert=other_cert,
        other_key=other_key,
    )
