"""API key authentication: ``Authorization: Bearer pk_…`` or ``Bearer sk_…``."""

from dataclasses import dataclass

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tenants.models import ApiKey, Tenant
from tenants.selectors import api_key_get_active


@dataclass(frozen=True)
class ApiClient:
    """The authenticated caller of an API request: a tenant acting through one key."""

    tenant: Tenant
    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False

    def has_scope(self, scope: str) -> bool:
        return scope in self.api_key.scopes


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, raw_key = header.partition(" ")
        raw_key = raw_key.strip()
        # HTTP authentication schemes are case-insensitive (RFC 9110, section 11.1).
        if keyword.lower() != self.keyword.lower() or not raw_key or " " in raw_key:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header; expected 'Bearer <api key>'."
            )
        api_key = api_key_get_active(raw_key=raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return ApiClient(tenant=api_key.tenant, api_key=api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def request_client(request: Request) -> ApiClient:
    """Return the authenticated caller of an API view that requires authentication.

    The view's permission classes have already rejected anonymous requests; this turns the
    loosely typed ``request.user`` into the ``ApiClient`` those views work with.
    """
    client = request.user
    if not isinstance(client, ApiClient):
        raise exceptions.NotAuthenticated()
    return client
