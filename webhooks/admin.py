"""Read-only admin views of the webhook delivery log and the circuit breakers.

Delivery rows are evidence for debugging, so the admin can neither add, change nor delete
them; ``purge_webhook_deliveries`` removes old rows.
"""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from tenants.admin import TenantListFilter
from webhooks.breaker import breaker_reset
from webhooks.models import CircuitBreaker, WebhookDelivery, WebhookKind


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_ReadOnlyAdmin):
    list_display = [
        "created_at",
        "tenant",
        "kind",
        "attempt",
        "outcome",
        "status_code",
        "error_code",
        "duration_ms",
        "response_bytes",
        "is_test",
    ]
    list_filter = [("tenant", TenantListFilter), "kind", "outcome", "is_test", "created_at"]
    list_select_related = ["tenant"]
    search_fields = ["=call_id", "=delivery_id", "url", "error_code", "=tenant__slug"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(_ReadOnlyAdmin):
    list_display = ["tenant", "kind", "state", "opened_at", "retry_at", "times_opened"]
    list_filter = ["state", "kind", ("tenant", TenantListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["=tenant__slug"]
    readonly_fields = [field.name for field in CircuitBreaker._meta.fields]
    actions = ["reset_breakers"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # The reset action needs the model's change permission. A breaker's own page offers
        # no Save, because saving would write back every field as the page read it and undo
        # a transition that a webhook call made in between.
        if obj is not None:
            return False
        return super(_ReadOnlyAdmin, self).has_change_permission(request, obj)

    @admin.action(description="Close the selected breakers now", permissions=["change"])
    def reset_breakers(self, request: HttpRequest, queryset: QuerySet[CircuitBreaker]) -> None:
        closed = sum(
            breaker_reset(tenant_id=breaker.tenant_id, kind=WebhookKind(breaker.kind))
            for breaker in queryset
        )
        self.message_user(request, f"Closed {closed} breaker(s).")
