"""The one error hierarchy of the project and the DRF handler that renders it.

Every API error body has the shape ``{"detail": <human-readable text>, "code": <stable code>}``,
plus ``fields`` for per-field validation errors and any extra keys an error carries (such as
``retry_after``). Clients branch on ``code``; ``detail`` is for people reading logs.
"""

import logging
import uuid
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError, connection
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

# Seconds after which a client may retry a request rejected for a lost database connection.
DATABASE_RETRY_AFTER_SECONDS = 5


class ErrorCode(StrEnum):
    # Codes from the chat protocol.
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    USER_MESSAGE_LIMIT = "user_message_limit"
    USER_CONVERSATION_LIMIT = "user_conversation_limit"
    TENANT_DAILY_TOKEN_LIMIT = "tenant_daily_token_limit"
    TENANT_MONTHLY_TOKEN_LIMIT = "tenant_monthly_token_limit"
    AGENT_BUSY = "agent_busy"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    SESSION_TOKEN_LIMIT = "session_token_limit"
    MAX_ROUNDS_EXCEEDED = "max_rounds_exceeded"
    MESSAGE_TOO_LARGE = "message_too_large"
    INVALID_JSON = "invalid_json"
    INTERNAL_ERROR = "internal_error"
    NO_CATALOG_DATA = "no_catalog_data"
    # Codes of the HTTP API around it.
    NOT_AUTHENTICATED = "not_authenticated"
    AUTHENTICATION_FAILED = "authentication_failed"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    LENGTH_REQUIRED = "length_required"
    CONFLICT = "conflict"
    WEBHOOK_NOT_CONFIGURED = "webhook_not_configured"
    WEBHOOK_FAILED = "webhook_failed"
    LLM_UNAVAILABLE = "llm_unavailable"
    SECRET_UNDECRYPTABLE = "secret_undecryptable"
    DATABASE_UNAVAILABLE = "database_unavailable"


class AppError(Exception):
    """Base of every error the API reports on purpose."""

    http_status: int = status.HTTP_400_BAD_REQUEST
    code: ErrorCode = ErrorCode.INVALID_JSON
    default_detail = "The request could not be processed."

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: ErrorCode | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        if code is not None:
            self.code = code
        self.extra = extra or {}
        super().__init__(self.detail)


class ClientError(AppError):
    """The caller sent something wrong; retrying the same request will not help."""


class InvalidInput(ClientError):
    default_detail = "The request body is invalid."

    def __init__(self, detail: str | None = None, *, fields: dict[str, Any] | None = None) -> None:
        super().__init__(detail, extra={"fields": fields} if fields else None)


class NotFound(ClientError):
    http_status = status.HTTP_404_NOT_FOUND
    code = ErrorCode.NOT_FOUND
    default_detail = "Not found."


class Conflict(ClientError):
    http_status = status.HTTP_409_CONFLICT
    code = ErrorCode.CONFLICT
    default_detail = "The request conflicts with the current state."


class IdempotencyKeyReused(ClientError):
    """An Idempotency-Key sent again with another request body than the first time."""

    http_status = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    default_detail = (
        "This Idempotency-Key was sent with another request; send a new key with each new request."
    )


class PayloadTooLarge(ClientError):
    http_status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = ErrorCode.PAYLOAD_TOO_LARGE
    default_detail = "The request body is too large."


class LimitExceeded(ClientError):
    http_status = status.HTTP_429_TOO_MANY_REQUESTS
    code = ErrorCode.RATE_LIMIT_EXCEEDED
    default_detail = "A usage limit was reached."


class UpstreamError(AppError):
    """A merchant webhook or the LLM endpoint failed; the request may succeed later."""

    http_status = status.HTTP_502_BAD_GATEWAY
    code = ErrorCode.WEBHOOK_FAILED
    default_detail = "An upstream service failed."


class SecretUndecryptable(AppError):
    """A stored secret that no key in VIZOCHOK_ENCRYPTION_KEYS decrypts.

    The deployment's keys are wrong, not the request, so an operator must restore the key
    or set a new secret. The detail names the object, never the secret or a key.
    """

    http_status = status.HTTP_503_SERVICE_UNAVAILABLE
    code = ErrorCode.SECRET_UNDECRYPTABLE
    default_detail = "A stored secret cannot be decrypted with the configured keys."


class DatabaseUnavailable(AppError):
    """A refused or lost database connection. The request may succeed in a moment."""

    http_status = status.HTTP_503_SERVICE_UNAVAILABLE
    code = ErrorCode.DATABASE_UNAVAILABLE
    default_detail = "The service cannot reach its database. Retry in a moment."


class InternalError(AppError):
    """A fault of ours; logged with an error id."""

    http_status = status.HTTP_500_INTERNAL_SERVER_ERROR
    code = ErrorCode.INTERNAL_ERROR
    default_detail = "Internal error."


_DRF_CODES: list[tuple[type[drf_exceptions.APIException], ErrorCode]] = [
    (drf_exceptions.ParseError, ErrorCode.INVALID_JSON),
    (drf_exceptions.ValidationError, ErrorCode.INVALID_JSON),
    (drf_exceptions.NotAuthenticated, ErrorCode.NOT_AUTHENTICATED),
    (drf_exceptions.AuthenticationFailed, ErrorCode.AUTHENTICATION_FAILED),
    (drf_exceptions.PermissionDenied, ErrorCode.PERMISSION_DENIED),
    (drf_exceptions.NotFound, ErrorCode.NOT_FOUND),
    (drf_exceptions.MethodNotAllowed, ErrorCode.METHOD_NOT_ALLOWED),
    (drf_exceptions.NotAcceptable, ErrorCode.NOT_ACCEPTABLE),
    (drf_exceptions.UnsupportedMediaType, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    (drf_exceptions.Throttled, ErrorCode.RATE_LIMIT_EXCEEDED),
]


def error_body(*, detail: str, code: str, **extra: Any) -> dict[str, Any]:
    """Build the error envelope every API error uses."""
    return {"detail": detail, "code": code, **extra}


def _render_drf_exception(exc: drf_exceptions.APIException, *, method: str) -> Response:
    code = next(
        (error_code for drf_class, error_code in _DRF_CODES if isinstance(exc, drf_class)),
        ErrorCode.INVALID_JSON,
    )
    extra: dict[str, Any] = {}
    if isinstance(exc, drf_exceptions.ValidationError):
        # GET and HEAD requests have no body: their serializers validate the query string.
        if method in ("GET", "HEAD"):
            detail = "The query parameters are invalid."
        else:
            detail = "The request body is invalid."
        extra["fields"] = exc.detail if isinstance(exc.detail, dict) else {"non_field": exc.detail}
    else:
        detail = str(exc.detail)
    wait = getattr(exc, "wait", None)
    if isinstance(exc, drf_exceptions.Throttled) and wait is not None:
        extra["retry_after"] = int(wait + 0.999)
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if wait:
        headers["Retry-After"] = str(extra.get("retry_after", ""))
    return Response(
        error_body(detail=detail, code=code, **extra), status=exc.status_code, headers=headers
    )


def database_unreachable(exc: Exception) -> bool:
    """Tell whether ``exc`` comes from a lost or refused database connection.

    It reads the default connection of the calling thread, so call it on the thread whose
    query raised ``exc``, before that connection is closed. A query that fails on a working
    connection (a statement timeout, a deadlock) is a fault of this code or its data and
    stays an internal error.
    """
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    raw = connection.connection
    return raw is None or raw.closed or raw.broken


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Render any exception raised in an API view as the project's error envelope."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(
            "The request body is larger than this server accepts.",
            extra={"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
        )
    elif isinstance(exc, TooManyFieldsSent):
        # Raised when a view first reads the query string, which DRF's content negotiation
        # does for every request, so every endpoint would return 500 otherwise.
        max_parameters = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        exc = ClientError(
            f"The query string has more than {max_parameters} parameters; send at most "
            f"{max_parameters}.",
            extra={"max_parameters": max_parameters},
        )
    elif isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(
            detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )

    if isinstance(exc, AppError):
        set_rollback()
        extra = exc.extra
        if isinstance(exc, InternalError):
            # The response and the log line carry the same error_id, so a reported error can
            # be found in the log.
            error_id = uuid.uuid4().hex
            extra = {**extra, "error_id": error_id}
            logger.error(
                "api.internal_error",
                exc_info=exc,
                extra={"code": str(exc.code), "detail": exc.detail, "error_id": error_id},
            )
        return Response(
            error_body(detail=exc.detail, code=exc.code, **extra), status=exc.http_status
        )
    if isinstance(exc, drf_exceptions.APIException):
        set_rollback()
        request = context.get("request")
        return _render_drf_exception(exc, method=request.method if request else "")

    view = context.get("view")
    if database_unreachable(exc):
        # Expected while PostgreSQL restarts or fails over, so one line without a traceback.
        logger.error(
            "api.database_unavailable",
            extra={
                "error_type": type(exc).__name__,
                "error": str(exc).strip(),
                "view": type(view).__name__ if view else None,
            },
        )
        set_rollback()
        return Response(
            error_body(
                detail=DatabaseUnavailable.default_detail, code=ErrorCode.DATABASE_UNAVAILABLE
            ),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    error_id = uuid.uuid4().hex
    logger.error(
        "api.unhandled_error",
        exc_info=exc,
        extra={"error_id": error_id, "view": type(view).__name__ if view else None},
    )
    set_rollback()
    return Response(
        error_body(detail="Internal error.", code=ErrorCode.INTERNAL_ERROR, error_id=error_id),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
