"""The shopper's chat widget script and its demo store page, served by the app itself.

The script is read from ``conversations/widget/`` at import, so it needs no collectstatic
step and works under gunicorn with DJANGO_DEBUG=0. See docs/widget.md.
"""

import hashlib
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import condition, require_safe

WIDGET_SCRIPT_PATH = Path(__file__).resolve().parent / "widget" / "vizochok-widget.js"
WIDGET_SCRIPT = WIDGET_SCRIPT_PATH.read_bytes()
WIDGET_ETAG = f'"{hashlib.sha256(WIDGET_SCRIPT).hexdigest()[:32]}"'
# The URL stays the same across releases, so browsers revalidate with the ETag after 5
# minutes instead of keeping an old script for long.
WIDGET_CACHE_CONTROL = "public, max-age=300"


def _widget_etag(request: HttpRequest) -> str:
    return WIDGET_ETAG


@condition(etag_func=_widget_etag)
def _widget_script_body(request: HttpRequest) -> HttpResponse:
    return HttpResponse(WIDGET_SCRIPT, content_type="text/javascript; charset=utf-8")


@require_safe
def widget_script(request: HttpRequest) -> HttpResponse:
    """Serve the widget script; a matching If-None-Match gets 304 from ``condition``.

    Every store's page loads the script from another origin. ``Access-Control-Allow-Origin:
    *`` lets a page load it with a ``crossorigin`` attribute, and
    ``Cross-Origin-Resource-Policy: cross-origin`` lets a page with
    ``Cross-Origin-Embedder-Policy: require-corp`` load it. Both go on 304 responses too,
    so that a revalidated copy keeps them. The script is public and takes no credentials.
    """
    response = _widget_script_body(request)
    response["Cache-Control"] = WIDGET_CACHE_CONTROL
    response["X-Content-Type-Options"] = "nosniff"
    response["Access-Control-Allow-Origin"] = "*"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@require_safe
def widget_demo(request: HttpRequest) -> HttpResponse:
    """Render the demo store page; it reads the keys from the URL fragment in the browser."""
    return render(request, "widget/demo.html")
