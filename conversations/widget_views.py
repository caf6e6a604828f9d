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


@require_safe
@condition(etag_func=_widget_etag)
def widget_script(request: HttpRequest) -> HttpResponse:
    """Serve the widget script; a matching If-None-Match gets 304 from ``condition``."""
    response = HttpResponse(WIDGET_SCRIPT, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = WIDGET_CACHE_CONTROL
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_safe
def widget_demo(request: HttpRequest) -> HttpResponse:
    """Render the demo store page; it reads the keys from the URL fragment in the browser."""
    return render(request, "widget/demo.html")
