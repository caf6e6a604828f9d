"""Request checks that run before Django routes a request."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from vizochok.exceptions import ErrorCode, error_body


class RejectChunkedRequestBodies:
    """Answer API requests with a chunked body with 411 instead of reading an empty body.

    Django reads a request body only up to its Content-Length, so a chunked body would look
    empty and produce a misleading "field is required" error. Every HTTP client can send a
    Content-Length for a JSON body.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        transfer_encoding = request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if "chunked" in transfer_encoding and request.path.startswith("/api/"):
            return JsonResponse(
                error_body(
                    detail="Chunked request bodies are not supported; send a Content-Length.",
                    code=ErrorCode.LENGTH_REQUIRED,
                ),
                status=411,
            )
        return self.get_response(request)
