"""gunicorn configuration: ``gunicorn -c python:vizochok.gunicorn vizochok.wsgi``.

Threaded workers (gthread), so that a worker serves other requests while one waits on a
merchant webhook or the LLM. Each message being processed, streamed or not, occupies one
thread until its reply is complete, so ``workers × threads`` is the number of messages
processed at once (16 by default). Every value can be overridden with the GUNICORN_*
variables below or command-line flags; see docs/streaming.md.
"""

import os
from datetime import timedelta
from typing import Any

from gunicorn import glogging

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# A reply is bounded by AGENT_TURN_TIMEOUT_SECONDS (120 s by default), and the defaults below
# follow it when it is set in the process environment. This file does not read .env, so a
# limit set only there needs GUNICORN_TIMEOUT and GUNICORN_GRACEFUL_TIMEOUT set with it.
_turn_text = os.environ.get("AGENT_TURN_TIMEOUT_SECONDS") or "120"
try:
    _turn_seconds = float(_turn_text)
except ValueError:
    _turn_seconds = float("nan")
# The range that settings.py accepts, checked here because gunicorn reads this file before
# Django starts. gunicorn prints only the message of an error raised here.
if not 0 < _turn_seconds <= 86_400:
    raise ValueError(
        "Invalid AGENT_TURN_TIMEOUT_SECONDS: expected seconds above 0 and at most 86400 "
        f"(one day), got {_turn_text!r}."
    )
# In gthread workers this is the heartbeat timeout of a worker's main loop, which keeps
# running while request threads wait, so it does not cut long requests. 30 s above the turn
# limit leaves room for a webhook call that is still running at the turn deadline.
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or _turn_seconds + 30)
# On a restart, threads get this long to finish their replies; longer than one turn, so
# that a deploy does not cut streams off mid-reply.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or _turn_seconds + 10)
keepalive = 5
# NOTE: access lines contain the request path, and so the user id of the shopper export and
# erasure endpoints (docs/privacy.md). --access-logfile /dev/null turns them off.
accesslog = "-"
errorlog = "-"
# The access lines leave out credentials that a client sent by mistake (AccessLogger).
logger_class = "vizochok.gunicorn.AccessLogger"


class AccessLogger(glogging.Logger):
    """gunicorn's logger, with access lines that contain no user name and no query string.

    The default format logs the user name of HTTP Basic authentication (``%(u)s``), and a
    client that sends an API key as that user name, as some HTTP libraries do with their
    ``auth`` option, would write the key to the log. The request line (``%(r)s``) loses its
    query string, where a client may have put an API key or a user token: no endpoint reads
    a credential from the query string, so such a request gets 401 but would be logged.
    """

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta
    ) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        path = environ["RAW_URI"].split("?", 1)[0]
        atoms["u"] = "-"
        atoms["r"] = f"{environ['REQUEST_METHOD']} {path} {environ['SERVER_PROTOCOL']}"
        atoms["q"] = "-"
        return atoms
