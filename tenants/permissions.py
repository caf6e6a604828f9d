"""DRF permissions based on the scopes and kind of the caller's API key."""

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from tenants.authentication import ApiClient
from tenants.models import ApiKey


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
