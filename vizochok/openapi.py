"""OpenAPI 3.1 schema of the HTTP API: the schema view and the helpers the API views use.

drf-spectacular builds the document from the DRF views under ``/api/v1/``. This module adds
what it cannot infer: the error body, the two kinds of API key, and the JSON schema of
pydantic request bodies as clients send them.
"""

import functools
from typing import Any, Literal

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, resolve_type_hint
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from drf_spectacular.views import SpectacularAPIView
from pydantic import BaseModel
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from tenants.models import ApiKey
from tenants.permissions import HasCatalogScope, HasChatScope
from vizochok.serializers import IdentifierField, StringField

PUBLIC_KEY_SCHEME = "publicKey"
SECRET_KEY_SCHEME = "secretKey"


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """The error body of every API error, as ``vizochok.exceptions.error_body`` builds it."""

    detail = serializers.CharField(help_text="English text for developers; do not parse it.")
    code = serializers.CharField(
        help_text=(
            "Stable error code, such as `invalid_json` or `not_found`; clients branch on it. "
            "Some codes add keys next to `detail` and `code`: `fields` (field name to "
            "messages) for validation errors, `retry_after`, `limit`, `window_seconds`, "
            "`resets_at`, `max_bytes`, `max_size`, `max_products`, `max_parameters`, `reason` "
            "or `error_id`."
        )
    )


# Descriptions of the API's error statuses. Each operation lists the statuses it can return.
_ERROR_DESCRIPTIONS = {
    400: (
        "`invalid_json`: the body or a query parameter is invalid, with `fields` naming the "
        "problems."
    ),
    401: "`not_authenticated` without an `Authorization` header, else `authentication_failed`.",
    403: (
        "`permission_denied`: the API key lacks the scope or kind this endpoint needs, or a "
        "check rejected the request (see `reason`)."
    ),
    404: "`not_found`: no such object for the caller's tenant.",
    409: "`agent_busy`: another message of this conversation is being processed.",
    413: "`payload_too_large`: the body is over the server's limit (5 MiB), with `max_bytes`.",
    422: "The request contradicts an earlier one (see `code`).",
    429: "A usage limit was reached. Where it applies, `Retry-After` gives the seconds to wait.",
}


def error_responses(*statuses: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """Build the error responses of an operation, each with the shared ``Error`` body.

    ``descriptions`` replaces the generic text of a status, keyed as ``status_409``.
    """
    return {
        status: OpenApiResponse(
            response=ErrorSerializer,
            description=descriptions.get(f"status_{status}") or _ERROR_DESCRIPTIONS[status],
        )
        for status in statuses
    }


def type_hint_schema(hint: Any) -> dict[str, Any]:
    """Build the OpenAPI 3.1 schema of a type hint, such as a ``TypedDict``, for a field.

    drf-spectacular 0.30 marks an optional value nested in a type hint with the OpenAPI 3.0
    keyword ``nullable``, which 3.1 ignores, so it becomes a ``"null"`` type here.
    """
    return _nullable_as_type(resolve_type_hint(hint))


def _nullable_as_type(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_nullable_as_type(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _nullable_as_type(value) for key, value in schema.items()}
    if converted.pop("nullable", False) and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    return converted


@functools.cache
def _whitespace_class() -> str:
    """Return the characters that ``str.strip()`` removes, as a regular expression class body.

    JSON Schema's ``\\s`` differs from Python's whitespace (it lacks U+001C to U+001F and
    U+0085 and adds U+FEFF), so the class lists Python's characters as ``\\uXXXX`` ranges.
    It is built when the document is first generated, because walking every code point
    takes tens of milliseconds, which every process would otherwise pay at start-up.
    """
    ranges: list[list[int]] = []
    for code in range(0x110000):
        if not chr(code).isspace():
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(
        f"\\u{start:04x}" if start == end else f"\\u{start:04x}-\\u{end:04x}"
        for start, end in ranges
    )


NO_NUL_PATTERN = "^[^\\u0000]*$"
NOT_EMPTY_PATTERN = "^[^\\u0000]+$"


def _string_pattern(field: StringField) -> str:
    """Return the pattern of the values that ``field`` accepts.

    DRF's CharField rejects a NUL character. A StringField that trims whitespace rejects a
    value that is only whitespace, unless it allows blank values, and an IdentifierField
    also rejects a value that starts or ends with whitespace.
    """
    whitespace = _whitespace_class()
    if isinstance(field, IdentifierField):
        return f"^[^\\u0000{whitespace}](?:[^\\u0000]*[^\\u0000{whitespace}])?$"
    if field.allow_blank:
        return NO_NUL_PATTERN
    if field.trim_whitespace:
        return f"^[^\\u0000]*[^\\u0000{whitespace}][^\\u0000]*$"
    return NOT_EMPTY_PATTERN


class StrictInputSchema(OpenApiSerializerExtension):
    """A ``StrictInputSerializer``, which rejects fields it does not declare.

    A request body also gets the pattern of each ``StringField``, so that a client or a
    fuzzer can tell which strings the API rejects. NOTE: the patterns do not exclude unpaired
    surrogates, which DRF also rejects, because the regular expression engines of JSON
    Schema tools cannot match them.
    """

    target_class = "vizochok.serializers.StrictInputSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(
            self.target, direction, bypass_extensions=True
        )
        schema["additionalProperties"] = False
        if direction != "request":
            return schema
        for name, field in self.target.fields.items():
            field_schema = schema["properties"].get(name)
            if isinstance(field, serializers.ListField):
                field, field_schema = field.child, (field_schema or {}).get("items")
            if isinstance(field, StringField) and field_schema is not None:
                field_schema["pattern"] = _string_pattern(field)
        return schema


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """The ``Authorization: Bearer <key>`` header of ``ApiKeyAuthentication``.

    A public and a secret key travel in the same header, so both are bearer schemes. Chat
    endpoints take either, every other endpoint a secret key only. A requirement lists the
    scope the key needs, which OpenAPI 3.1 allows for any scheme type.
    """

    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = [PUBLIC_KEY_SCHEME, SECRET_KEY_SCHEME]

    def get_security_requirement(self, auto_schema: AutoSchema) -> list[dict[str, list[Any]]]:
        permissions = auto_schema.view.get_permissions()
        if any(isinstance(permission, HasChatScope) for permission in permissions):
            return [
                {PUBLIC_KEY_SCHEME: [ApiKey.Scope.CHAT.value]},
                {SECRET_KEY_SCHEME: [ApiKey.Scope.CHAT.value]},
            ]
        if any(isinstance(permission, HasCatalogScope) for permission in permissions):
            return [{SECRET_KEY_SCHEME: [ApiKey.Scope.CATALOG.value]}]
        return [{SECRET_KEY_SCHEME: []}]

    def get_security_definition(self, auto_schema: AutoSchema) -> list[dict[str, Any]]:
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "pk_live_…",
                "description": (
                    "A public key (`pk_…`) with the `chat` scope, for browsers and mobile "
                    "apps. It works only on the chat endpoints."
                ),
            },
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "sk_live_…",
                "description": (
                    "A secret key (`sk_…`) for the merchant's servers, with the `chat` and "
                    "`catalog` scopes. The admin endpoints take only secret keys."
                ),
            },
        ]


class PydanticRequestSchema(OpenApiSerializerExtension):
    """A pydantic model used as a request body, as its JSON schema for validation.

    drf-spectacular's own pydantic extension uses the serialization schema, in which a
    ``Decimal`` is a string, while the API also accepts a JSON number.
    """

    target_class = "pydantic.BaseModel"
    match_subclasses = True
    priority = 1

    def get_name(self, auto_schema: AutoSchema, direction: str) -> str:
        return str(self.target.__name__)

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        model: type[BaseModel] = self.target
        mode: Literal["validation", "serialization"] = (
            "validation" if direction == "request" else "serialization"
        )
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
        for name, definition in schema.pop("$defs", {}).items():
            auto_schema.registry.register_on_missing(
                ResolvedComponent(
                    name=name, type=ResolvedComponent.SCHEMA, object=name, schema=definition
                )
            )
        return schema


class SchemaApi(SpectacularAPIView):
    """``GET /api/v1/schema``: the OpenAPI document, YAML by default, JSON on request.

    It needs no API key, and an ``Authorization`` header is ignored, so a client generator
    can fetch it with no credentials.
    """

    authentication_classes = []
    permission_classes = [AllowAny]

    def handle_exception(self, exc: Exception) -> Response:
        # Errors get the usual JSON error body whatever the Accept header, because the OpenAPI
        # renderers cannot render it. The YAML renderer raises on the ErrorCode enum.
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


def describe_query_values(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Add what the query parameters' schemas leave out, as a drf-spectacular postprocessing hook.

    DRF's serializers read ``?status=`` as no ``status`` when the field is not required, so
    ``GET /api/v1/catalog/jobs?status=`` lists jobs in every status: such a parameter gets
    ``allowEmptyValue``. DRF's ``CharField`` rejects a NUL character, so a free-text string
    parameter gets a pattern without it.
    """
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "query":
                    continue
                if not parameter.get("required", False):
                    parameter["allowEmptyValue"] = True
                schema = parameter.get("schema", {})
                if schema.get("type") == "string" and not {"enum", "pattern"} & set(schema):
                    schema["pattern"] = NO_NUL_PATTERN
    return result
