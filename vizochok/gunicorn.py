"""gunicorn configuration: ``gunicorn -c python:vizochok.gunicorn vizochok.wsgi``.

Threaded workers, so that a worker can serve other requests while one waits on a merchant
webhook or the LLM. Every value can be overridden with the usual GUNICORN_* variables or
command-line flags.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# A chat turn is bounded at 120 s; a request running past this is killed and its worker
# replaced, so that no stream holds a worker forever.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "150"))
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
