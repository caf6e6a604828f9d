"""A log of every webhook request attempt, and the circuit breaker state per webhook."""

from django.db import models

from tenants.models import Tenant


class WebhookKind(models.TextChoices):
    PRODUCTS = "products", "Products"
    CART = "cart", "Cart"
    CART_GET = "cart_get", "Cart GET"


class WebhookDelivery(models.Model):
    """One HTTP attempt; a retried call leaves two rows with the same ``call_id``.

    A call that the open circuit breaker stopped leaves one ``circuit_open`` row and sent
    nothing. Bodies, headers and secrets are never stored, only sizes and outcomes.
    """

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        TIMEOUT = "timeout", "Timed out"
        HTTP_ERROR = "http_error", "Non-200 status"
        INVALID_RESPONSE = "invalid_response", "Invalid response"
        CONNECTION_ERROR = "connection_error", "Connection failed"
        BLOCKED = "blocked", "Blocked URL"
        CIRCUIT_OPEN = "circuit_open", "Circuit open"
        # Not sent: no key in VIZOCHOK_ENCRYPTION_KEYS decrypts the signing secret.
        SECRET_UNDECRYPTABLE = "secret_undecryptable", "Secret undecryptable"

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
    # Sent by the admin "Send test" action, the test API or check_merchant. Test requests
    # never count towards the circuit breaker.
    is_test = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="delivery_tenant_created_idx"),
            # The circuit breaker counts one tenant's recent attempts of one kind.
            models.Index(fields=["tenant", "kind", "created_at"], name="delivery_tenant_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} attempt {self.attempt}: {self.outcome}"


class CircuitBreaker(models.Model):
    """Circuit breaker state of one tenant's webhook of one kind, shared by all workers.

    A missing row means closed. Failures are counted from ``WebhookDelivery`` rows created
    after ``counting_since``, so closing the breaker starts a fresh window.
    """

    class State(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half-open (probing)"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="circuit_breakers")
    kind = models.CharField(max_length=20, choices=WebhookKind.choices)
    state = models.CharField(max_length=20, choices=State.choices, default=State.CLOSED)
    counting_since = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    # While open, calls fail fast until this time; then one probe request is let through.
    retry_at = models.DateTimeField(null=True, blank=True)
    probe_started_at = models.DateTimeField(null=True, blank=True)
    times_opened = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind"], name="uniq_breaker_tenant_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} breaker of tenant {self.tenant_id}: {self.state}"
