"""Catalog API: product uploads and the jobs that embed them (secret keys with ``catalog``).

docs/catalog-api.md describes the endpoints, their limits and their errors.
"""

from typing import Any

from django.db import transaction
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from pydantic import BaseModel, ConfigDict, Field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.jobs import catalog_job_submit
from catalog.models import CatalogJob
from catalog.schemas import ProductInput, product_inputs_parse
from catalog.selectors import catalog_job_get, catalog_jobs_list
from tenants.authentication import request_client
from tenants.models import Tenant
from tenants.permissions import HasCatalogScope
from vizochok.exceptions import InvalidInput, PayloadTooLarge
from vizochok.openapi import error_responses
from vizochok.text import escape_unstorable_text

MAX_PRODUCTS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 5 * 1024 * 1024

_BODY_SHAPE = 'The request body must be a JSON object with a "products" array.'

_CATALOG_TAG = "catalog"


class CatalogApi(APIView):
    permission_classes = [HasCatalogScope]

    def tenant(self, request: Request) -> Tenant:
        return request_client(request).tenant


@extend_schema_field({"type": "array", "items": {"type": "string"}})
class MessageListField(serializers.JSONField):
    """A stored JSON list of messages for people, returned as stored."""


@extend_schema_serializer(component_name="CatalogJob")
class CatalogJobOutputSerializer(serializers.ModelSerializer):
    job_id = serializers.CharField(source="public_id")
    tenant_id = serializers.CharField(source="tenant.slug")
    # DRF's serializer metaclass moves declared fields out of the class namespace, so this
    # field does not replace Serializer.errors, whose type mypy compares it with.
    errors = MessageListField(read_only=True)  # type: ignore[assignment]

    class Meta:
        model = CatalogJob
        fields = [
            "job_id",
            "tenant_id",
            "status",
            "total",
            "to_embed",
            "embedded",
            "created",
            "updated",
            "unchanged",
            "errors",
            "started_at",
            "completed_at",
        ]
        # Output only, so that the OpenAPI document marks every field as always present.
        read_only_fields = fields


def _limits_error(detail: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{detail} A request may carry at most {MAX_PRODUCTS_PER_REQUEST} products and "
        f"{MAX_REQUEST_BYTES} bytes (5 MiB); split the upload into several requests.",
        extra={"max_products": MAX_PRODUCTS_PER_REQUEST, "max_bytes": MAX_REQUEST_BYTES},
    )


def _check_body_size(request: Request) -> None:
    """Reject a body over the byte limit before it is read.

    Django reads no more than Content-Length bytes, so checking the header is enough.
    """
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_REQUEST_BYTES:
        raise _limits_error(f"The request body has {length} bytes.")


def _products_of(body: Any) -> list[Any]:
    """Return the ``products`` array of an upload body, or raise for a malformed body."""
    if not isinstance(body, dict):
        raise InvalidInput(_BODY_SHAPE)
    # Unknown keys are reported together with a problem of the products array. A NUL or a
    # surrogate in a key is escaped, because the response could not encode it.
    fields = {
        escape_unstorable_text(key): ["Unknown field."] for key in sorted(body) if key != "products"
    }
    products = body.get("products")
    if not isinstance(products, list):
        message = "This field is required." if "products" not in body else "Must be a JSON array."
        fields = {"products": [message], **fields}
    if fields:
        raise InvalidInput(_BODY_SHAPE, fields=fields)
    if not products:
        raise InvalidInput(
            "The products array is empty.", fields={"products": ["Must not be empty."]}
        )
    if len(products) > MAX_PRODUCTS_PER_REQUEST:
        raise _limits_error(f"The request has {len(products)} products.")
    return products


# The body of a product upload, for the OpenAPI document only, because _products_of and
# product_inputs_parse validate a request one product at a time.
# NOTE: pydantic's JSON schema lists ProductInput's text fields, sku and barcode included, as
# strings only, although coerce_numbers_to_str makes the upload accept JSON numbers for them.
class ProductUpload(BaseModel):
    """The products of an upload, 1 to 1,000. An invalid product is skipped, not rejected."""

    # _products_of rejects a key other than "products". The maximum of 1,000 products is
    # not a maxItems, because a longer array gets 413 payload_too_large, not 400.
    model_config = ConfigDict(extra="forbid")

    products: list[ProductInput] = Field(min_length=1)


class ProductUpsertApi(CatalogApi):
    """``PUT /api/v1/catalog/products``: upsert by SKU now, embed in the background."""

    @extend_schema(
        tags=[_CATALOG_TAG],
        summary="Upload products",
        description=(
            f"Creates or updates 1 to {MAX_PRODUCTS_PER_REQUEST} products by `sku` and "
            "starts a job that embeds them in the background. Invalid products are skipped "
            "and listed in the job's `errors`; they do not fail the request."
        ),
        request=ProductUpload,
        parameters=[
            OpenApiParameter(
                "Location",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[202],
                description="The path of the upload's job, `/api/v1/catalog/jobs/{job_id}`.",
            )
        ],
        responses={
            202: OpenApiResponse(
                response=inline_serializer(
                    "ProductUploadAccepted",
                    {
                        "job_id": serializers.CharField(),
                        "total": serializers.IntegerField(),
                        "to_embed": serializers.IntegerField(),
                        "unchanged": serializers.IntegerField(),
                        "status": serializers.ChoiceField(choices=["accepted"]),
                    },
                ),
                description="The upload's job was created; the `Location` header points at it.",
            ),
            **error_responses(
                400,
                401,
                403,
                413,
                status_413=(
                    f"`payload_too_large`: more than {MAX_PRODUCTS_PER_REQUEST} products or "
                    f"{MAX_REQUEST_BYTES} bytes; the body has `max_products` and `max_bytes`."
                ),
            ),
        },
    )
    def put(self, request: Request) -> Response:
        _check_body_size(request)
        items = _products_of(request.data)
        parsed = product_inputs_parse(items)
        # One transaction, so that a request that fails, such as on a database error, writes
        # no product and no job. The upsert is one batch, so the transaction locks the rows
        # in SKU order and then the tenant's row, in the order of every other product write.
        with transaction.atomic():
            job = catalog_job_submit(
                tenant=self.tenant(request),
                products=parsed.products,
                total=len(items),
                errors=parsed.errors,
                source=CatalogJob.Source.API,
                upsert_batch_size=MAX_PRODUCTS_PER_REQUEST,
            )
        body = {
            "job_id": job.public_id,
            "total": job.total,
            "to_embed": job.to_embed,
            "unchanged": job.unchanged,
            "status": "accepted",
        }
        location = reverse("catalog-job-detail", kwargs={"job_id": job.public_id})
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


class CatalogJobDetailApi(CatalogApi):
    """``GET /api/v1/catalog/jobs/{job_id}``: one job of the caller's tenant."""

    @extend_schema(
        tags=[_CATALOG_TAG],
        summary="Read a catalog job",
        responses={200: CatalogJobOutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, job_id: str) -> Response:
        job = catalog_job_get(tenant=self.tenant(request), job_id=job_id)
        return Response(CatalogJobOutputSerializer(job).data)


class CatalogJobListApi(CatalogApi):
    """``GET /api/v1/catalog/jobs``: the caller's tenant's jobs, newest first."""

    @extend_schema_serializer(component_name="CatalogJobFilter")
    class FilterSerializer(serializers.Serializer):
        limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
        before = serializers.CharField(max_length=40, required=False)
        status = serializers.ChoiceField(choices=CatalogJob.Status.choices, required=False)

    @extend_schema(
        tags=[_CATALOG_TAG],
        summary="List catalog jobs",
        description="Returns the tenant's jobs, newest first.",
        parameters=[FilterSerializer],
        responses={
            200: CatalogJobOutputSerializer(many=True),
            **error_responses(
                400,
                401,
                403,
                404,
                status_404="`not_found`: `before` is not a job of the caller's tenant.",
            ),
        },
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = catalog_jobs_list(tenant=self.tenant(request), **filters.validated_data)
        return Response(CatalogJobOutputSerializer(jobs, many=True).data)
