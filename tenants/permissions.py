"""DRF permissions based on the scopes and kind of the caller's API key."""

import logging

from rest_framework import status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from tenants.authentication import ApiClient
from tenants.models import ApiKey
from vizochok.exceptions import ClientError, ErrorCode
from vizochok.origins import origin_normalize

logger = logging.getLogger(__name__)
# Characters of a rejected Origin header kept in the log line and the error, because the
# caller chooses the header and its length.
_LOGGED_ORIGIN_LENGTH = 300


class _ScopePermission(BasePermission):
    scope: str = ""
    message = "This API key lacks the required scope."

    def has_permission(self, request: Request, view: APIView) -> bool:
        client = request.user
        return isinstance(client, ApiClient) and client.has_scope(self.scope)


class HasChatScope(_ScopePermission):
    scope = ApiKey.Scope.CHAT
    message = "This API key lacks the 'chat' scope."


class HasCatalogScope(_ScopePermission):
    scope = ApiKey.Scope.CATALOG
    message = "This API key lacks the 'catalog' scope; use a secret (sk_) key."


class IsSecretKey(BasePermission):
    """Administration endpoints accept secret keys only, never the public widget key."""

    message = "This endpoint needs a secret (sk_) API key."

    def has_permission(self, request: Request, view: APIView) -> bool:
        client = request.user
        return isinstance(client, ApiClient) and client.api_key.kind == ApiKey.Kind.SECRET


class OriginNotAllowed(ClientError):
    """A public key used from a browser page whose origin the tenant did not allow."""

    http_status = status.HTTP_403_FORBIDDEN
    code = ErrorCode.PERMISSION_DENIED
    default_detail = "This origin may not use this API key."


class WidgetOriginAllowed(BasePermission):
    """Reject a public key sent with an ``Origin`` outside the tenant's allowed origins.

    Requests without an ``Origin`` header (servers, mobile apps), secret keys and tenants
    with an empty ``widget_allowed_origins`` pass. Raises OriginNotAllowed, a 403 with
    ``"reason": "origin_not_allowed"``, so that the view runs nothing.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        client = request.user
        origin = request.headers.get("Origin")
        if (
            origin is None
            or not isinstance(client, ApiClient)
            or client.api_key.kind != ApiKey.Kind.PUBLIC
            or not client.tenant.widget_allowed_origins
        ):
            return True
        try:
            if origin_normalize(origin) in client.tenant.widget_allowed_origins:
                return True
        except ValueError:
            pass
        # NOTE: one line per rejected request, without a rate limit, so a busy site that copied
        # the key writes one line per chat request of its visitors.
        logger.warning(
            "tenants.widget_origin.rejected",
            extra={
                "tenant_id": client.tenant.pk,
                "api_key": client.api_key.prefix,
                "origin": origin[:_LOGGED_ORIGIN_LENGTH],
                "path": request.path,
            },
        )
        raise OriginNotAllowed(
            f"The origin {origin[:_LOGGED_ORIGIN_LENGTH]!r} is not in this tenant's "
            "widget_allowed_origins. Add it in the admin or with PATCH /api/v1/admin/widget.",
            extra={"reason": "origin_not_allowed"},
        )
