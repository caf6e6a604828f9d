"""A log of every webhook request attempt, for merchants debugging their endpoints."""

from django.db import models

from tenants.models import Tenant


class WebhookKind(models.TextChoices):
    PRODUCTS = "products", "Products"
    CART = "cart", "Cart"
    CART_GET = "cart_get", "Cart GET"


class WebhookDelivery(models.Model):
    """One HTTP attempt; a retried call leaves two rows with the same ``call_id``.

    Bodies, headers and secrets are never stored, only sizes and outcomes.
    """

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        TIMEOUT = "timeout", "Timed out"
        HTTP_ERROR = "http_error", "Non-200 status"
        INVALID_RESPONSE = "invalid_response", "Invalid response"
        CONNECTION_ERROR = "connection_error", "Connection failed"
        BLOCKED = "blocked", "Blocked URL"
        CIRCUIT_OPEN = "circuit_open", "Circuit open"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_deliveries")
    kind = models.CharField(max_length=20, choices=WebhookKind.choices)
    call_id = models.UUIDField(db_index=True)
    delivery_id = models.UUIDField(unique=True)
    # Scheme, host, port and path only: no credentials, no query string.
    url = models.CharField(max_length=2000)
    attempt = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    error_code = models.CharField(max_length=50, blank=True)
    duration_ms = models.PositiveIntegerField()
    request_bytes = models.PositiveIntegerField(default=0)
    response_bytes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="delivery_tenant_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} attempt {self.attempt}: {self.outcome}"
