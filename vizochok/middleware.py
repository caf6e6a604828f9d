"""Request checks that run before Django routes a request."""

import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.cache import patch_vary_headers

from vizochok.exceptions import ErrorCode, error_body
from vizochok.origins import origin_normalize


class RejectUnreadableRequestBodies:
    """Reject API requests whose body the API cannot read: 411 when chunked, 415 when encoded.

    Django reads a request body only up to its Content-Length, so a chunked body would look
    empty and produce a misleading "field is required" error. Every HTTP client can send a
    Content-Length for a JSON body. No API endpoint decompresses a body, so a gzip body
    would be rejected as invalid UTF-8, and a plain body that names a coding would be read.
    Both checks are in one class because each middleware adds stack frames, which Python's
    JSON parser counts towards the nesting depth it accepts.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        transfer_encoding = request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if "chunked" in transfer_encoding:
            return JsonResponse(
                error_body(
                    detail="Chunked request bodies are not supported; send a Content-Length.",
                    code=ErrorCode.LENGTH_REQUIRED,
                ),
                status=411,
            )
        content_encoding = request.META.get("HTTP_CONTENT_ENCODING", "")
        codings = {coding.strip().lower() for coding in content_encoding.split(",")}
        if codings - {"", "identity"}:
            response = JsonResponse(
                error_body(
                    detail=(
                        f"Content-Encoding {content_encoding!r} is not supported; send the "
                        "body uncompressed, without a Content-Encoding header."
                    ),
                    code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                ),
                status=415,
            )
            # RFC 9110, section 15.5.16: a 415 caused by a content coding names the codings
            # that the server accepts in Accept-Encoding.
            response["Accept-Encoding"] = "identity"
            return response
        return self.get_response(request)


# The chat endpoints: /api/v1/conversations and every path below it. The admin and catalog
# APIs are called by merchants' servers with secret keys, so browsers get no CORS access.
CORS_PATH = re.compile(r"^/api/v1/conversations(?:/|$)")
CORS_ALLOW_METHODS = "GET, POST, OPTIONS"
# Every request header the chat API reads. Browsers send CORS-safelisted headers, such as
# Accept-Language, without listing them in a preflight.
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Accept, Idempotency-Key"
# Response headers other than the CORS-safelisted ones (Content-Type among them) that a
# browser client may read.
CORS_EXPOSE_HEADERS = "Retry-After"
# Seconds a browser may cache a preflight response.
CORS_MAX_AGE_SECONDS = 7200


class ChatCors:
    """Respond to CORS preflights of the chat endpoints and add CORS headers to their responses.

    A preflight carries no Authorization header, so it cannot name a tenant. It gets a 204
    for any origin allowed by ``settings.CORS_ALLOWED_ORIGINS`` (every origin when that
    is empty). Each tenant's ``widget_allowed_origins`` is checked on the actual request by
    tenants.permissions.WidgetOriginAllowed. Every actual response, errors and event streams
    included, carries ``Access-Control-Allow-Origin`` so that the client can read its body.
    ``Access-Control-Allow-Credentials`` is never sent: API keys travel in a header.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not CORS_PATH.match(request.path_info):
            return self.get_response(request)
        origin = request.headers.get("Origin")
        is_preflight = (
            request.method == "OPTIONS"
            and origin is not None
            and "Access-Control-Request-Method" in request.headers
        )
        if is_preflight:
            response: HttpResponseBase = HttpResponse(status=204)
            del response["Content-Type"]
        else:
            response = self.get_response(request)
        patch_vary_headers(response, ["Origin"])
        if origin is None or not _origin_allowed_by_deployment(origin):
            return response
        response["Access-Control-Allow-Origin"] = origin
        if is_preflight:
            response["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
            response["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
            response["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)
        else:
            response["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
        return response


def _origin_allowed_by_deployment(origin: str) -> bool:
    allowed: list[str] = settings.CORS_ALLOWED_ORIGINS
    if not allowed:
        return True
    try:
        return origin_normalize(origin) in allowed
    except ValueError:
        return False
