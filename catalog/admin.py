"""Django admin for products and, read-only, for catalog jobs.

Saving goes through ``catalog_job_submit``, so an edit made here updates the content hash
and the full-text document, and queues the embedding, exactly as an API upload would. Lists
and forms show the embedding's status, never the vector, and the list does not load vectors
at all.
"""

import sys
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest

from catalog.jobs import catalog_job_submit
from catalog.models import CatalogJob, Product
from catalog.schemas import (
    MAX_ATTRIBUTES_DEPTH,
    InvalidProductInput,
    ProductInput,
    product_input_parse,
)
from catalog.services import products_delete
from tenants.admin import TenantListFilter

_PRODUCT_INPUT_FIELDS = tuple(ProductInput.model_fields)


class AttributesField(forms.JSONField):
    """JSON field that rejects what Python's parser cannot read, instead of raising.

    Django's field turns only ``JSONDecodeError`` into a form error. The parser raises
    RecursionError for nesting near the interpreter's recursion limit (1,000 by default) and
    a plain ValueError for an integer of more than ``sys.get_int_max_str_digits()`` digits.
    """

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(
                "The JSON is nested too deeply to parse. Attributes may be nested at most "
                f"{MAX_ATTRIBUTES_DEPTH} levels deep."
            ) from None
        except ValueError:
            raise forms.ValidationError(
                f"A number has more than {sys.get_int_max_str_digits()} digits."
            ) from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        # The form's page shows the submitted text again, so it is parsed once more here.
        try:
            return super().bound_data(data, initial)
        except (RecursionError, ValueError):
            return InvalidJSONInput(data)


class ProductAdminForm(forms.ModelForm):
    """Validates with the same rules as API uploads (``ProductInput``)."""

    product_input: ProductInput | None = None

    class Meta:
        model = Product
        fields = ("tenant", *_PRODUCT_INPUT_FIELDS)
        field_classes = {"attributes": AttributesField}

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean() or {}
        data = {name: cleaned_data[name] for name in _PRODUCT_INPUT_FIELDS if name in cleaned_data}
        # On the change form sku is read-only, so it is not in cleaned_data.
        data.setdefault("sku", self.instance.sku)
        try:
            self.product_input = product_input_parse(data)
        except InvalidProductInput as exc:
            for error in exc.errors:
                field = error.field if error.field in self.fields else None
                # A field that its form field rejected is missing from cleaned_data, so
                # ProductInput would add a second, wrong "This field is required." to it.
                if field is not None and self.has_error(field):
                    continue
                self.add_error(field, error.message)
        return cleaned_data


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductAdminForm
    list_display = ("sku", "name", "tenant", "brand", "is_active", "embedding_status", "updated_at")
    list_filter = ("is_active", ("tenant", TenantListFilter))
    list_select_related = ("tenant",)
    search_fields = ("sku", "name", "=tenant__slug")
    ordering = ("tenant__name", "sku")
    readonly_fields = (
        "embedding_status",
        "embedding_model",
        "embedding_hash",
        "content_hash",
        "search_title",
        "search_body",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("tenant", "sku", "name", "brand", "category_path", "is_active")}),
        ("Content", {"fields": ("description", "ingredients", "country")}),
        (
            "Sale and display",
            {
                "fields": (
                    "unit",
                    "quantity_step",
                    "min_quantity",
                    "weight",
                    "volume",
                    "barcode",
                    "image_url",
                    "attributes",
                )
            },
        ),
        ("Search", {"classes": ("collapse",), "fields": readonly_fields}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        return (
            super()
            .get_queryset(request)
            .defer("embedding", "search_vector")
            .annotate(
                has_embedding=ExpressionWrapper(
                    Q(embedding__isnull=False), output_field=BooleanField()
                )
            )
        )

    def get_readonly_fields(
        self, request: HttpRequest, obj: Product | None = None
    ) -> tuple[str, ...]:
        # Tenant and SKU identify the row an upsert writes, so they are fixed once created.
        if obj is not None:
            return ("tenant", "sku", *self.readonly_fields)
        return tuple(self.readonly_fields)

    @admin.display(description="Embedding")
    def embedding_status(self, product: Product) -> str:
        """Return "missing", "stale" (content changed since embedding) or "current"."""
        if not getattr(product, "has_embedding", False):
            return "missing"
        if product.embedding_hash != product.content_hash:
            return "stale"
        return "current"

    def save_model(
        self, request: HttpRequest, obj: Product, form: forms.ModelForm, change: bool
    ) -> None:
        assert isinstance(form, ProductAdminForm)
        assert form.product_input is not None, "save_model runs only after a valid clean()."
        # The job embeds the product on a worker if its content changed.
        catalog_job_submit(
            tenant=obj.tenant,
            products=[form.product_input],
            total=1,
            errors=[],
            source=CatalogJob.Source.ADMIN,
        )
        saved = Product.objects.only("pk").get(tenant=obj.tenant, sku=form.product_input.sku)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: Product) -> None:
        products_delete(products=Product.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        products_delete(products=queryset)


@admin.register(CatalogJob)
class CatalogJobAdmin(admin.ModelAdmin):
    """Read-only: jobs change only through their services and workers."""

    list_display = (
        "public_id",
        "tenant",
        "source",
        "status",
        "total",
        "to_embed",
        "embedded",
        "attempts",
        "created_at",
        "completed_at",
    )
    list_filter = ("status", "source", ("tenant", TenantListFilter))
    list_select_related = ("tenant",)
    search_fields = ("public_id", "=tenant__slug")
    exclude = ("product_ids",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[CatalogJob]:
        return super().get_queryset(request).defer("product_ids")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CatalogJob | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CatalogJob | None = None) -> bool:
        # A job contains the ids of the products it has yet to embed, and its queued task ends
        # without work once the row is gone, so those products would never be embedded.
        # Jobs go with their tenant or with prune_catalog_jobs.
        return False
