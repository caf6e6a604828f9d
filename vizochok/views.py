import logging

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from vizochok.exceptions import ErrorCode, error_body
from vizochok.openapi import error_responses

logger = logging.getLogger(__name__)


class HealthApi(APIView):
    """Liveness and database check for load balancers and start-up scripts."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["health"],
        summary="Check the web process and the database",
        auth=[],
        responses={
            200: inline_serializer("Health", {"ok": serializers.BooleanField()}),
            **error_responses(
                503,
                status_503="`database_unavailable`: the process cannot query the database.",
            ),
        },
    )
    def get(self, request: Request) -> Response:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as exc:
            # One line per failed probe, without a traceback: a load balancer probes every few
            # seconds. The driver's message names the host and port, never the password.
            logger.error(
                "health.database_unavailable",
                extra={"error_type": type(exc).__name__, "error": str(exc).strip()},
            )
            return Response(
                error_body(
                    detail=(
                        "The database cannot be queried. Check that PostgreSQL runs and that "
                        "DATABASE_URL points at it."
                    ),
                    code=ErrorCode.DATABASE_UNAVAILABLE,
                ),
                status=503,
            )
        return Response({"ok": True})


class ApiNotFound(APIView):
    """Any unknown path under /api/: a JSON 404 whatever the method or credentials."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def initial(self, request: Request, *args: object, **kwargs: object) -> None:
        raise NotFound()


def _api_error(request: HttpRequest, *, status: int, detail: str, code: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(detail=detail, code=code), status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Answer unknown URLs; API paths get the JSON error envelope."""
    return _api_error(request, status=404, detail="Not found.", code=ErrorCode.NOT_FOUND)


def server_error(request: HttpRequest) -> HttpResponse:
    """Answer errors raised outside API views, such as in middleware."""
    return _api_error(request, status=500, detail="Internal error.", code=ErrorCode.INTERNAL_ERROR)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Answer requests Django rejects before routing, such as a disallowed Host header."""
    return _api_error(
        request,
        status=400,
        detail=(
            "Bad request: the server rejected it before routing, for example because its Host"
            " header is not in DJANGO_ALLOWED_HOSTS."
        ),
        code=ErrorCode.INVALID_JSON,
    )
