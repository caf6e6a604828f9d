"""Helpers for tests that need the database to be unreachable."""

import contextlib
import socket
from collections.abc import Iterator

from django.db import connection


def closed_port() -> int:
    """Return a port of 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def connection_to_closed_port() -> int:
    """Close the default connection and point it at a closed port of 127.0.0.1; return it.

    The caller restores the saved ``HOST`` and ``PORT``, as ``database_at_closed_port`` does.
    """
    port = closed_port()
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(port))
    return port


@contextlib.contextmanager
def database_at_closed_port() -> Iterator[int]:
    """Point the default connection at a closed port of 127.0.0.1; yield that port.

    Only transaction tests may use it: the test database's connection is closed first.
    """
    saved = {key: connection.settings_dict[key] for key in ("HOST", "PORT")}
    port = connection_to_closed_port()
    try:
        yield port
    finally:
        connection.close()
        connection.settings_dict.update(saved)
