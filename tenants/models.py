"""Tenants (retailers), their API keys, webhook settings and assistant settings."""

from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from tenants.encryption import EncryptedSecretField, EncryptedSecretsMixin, secret_is_set
from vizochok.models import TimestampedModel

# Maximum length of a secret that a tenant may set, in characters. The columns hold the
# encrypted form, which is longer, so they have no length limit of their own.
MAX_SECRET_LENGTH = 200
# Longest per-attempt timeout a tenant may give its webhooks, in seconds.
MAX_WEBHOOK_TIMEOUT_SECONDS = 30
# Maximum number of origins in Tenant.widget_allowed_origins. A store with more sites than
# this can leave the list empty, which allows every origin.
MAX_WIDGET_ALLOWED_ORIGINS = 50
# Maximum length of an origin: "https://", a host name of 253 characters and ":65535".
MAX_ORIGIN_LENGTH = 267


class Tenant(EncryptedSecretsMixin, TimestampedModel):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)
    # Key of the HMAC-SHA256 user tokens that the merchant's server issues, so that a public
    # (pk_) key may name a shopper; see conversations.identity. Kept apart from the webhook
    # secret so that each can be rotated, and leak, on its own. Stored encrypted like it.
    user_token_secret = EncryptedSecretField(blank=True, editable=False)
    user_token_secret_updated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Incremented whenever the tenant's searchable products change. Search caches statistics
    # per version, so every process drops them at its next search after a catalog change.
    catalog_version = models.PositiveBigIntegerField(default=0, editable=False)
    # Origins ("https://shop.example.com") whose browser pages may chat with a public key,
    # normalized by vizochok.origins. An empty list allows every origin.
    # tenants.permissions.WidgetOriginAllowed checks it.
    widget_allowed_origins = ArrayField(
        models.CharField(max_length=MAX_ORIGIN_LENGTH), default=list, blank=True
    )

    # The catalog services increment the version in the database, so a full save of an
    # instance loaded before such a change (an admin form, say) must not write the old number
    # back.
    fields_kept_on_full_save = frozenset({"catalog_version"})

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(TimestampedModel):
    """A credential for the HTTP API; only the SHA-256 hash of the key is stored."""

    class Kind(models.TextChoices):
        PUBLIC = "public", "Public (pk_)"
        SECRET = "secret", "Secret (sk_)"

    class Scope(models.TextChoices):
        CHAT = "chat", "Chat"
        CATALOG = "catalog", "Catalog"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # The first characters of the key, kept so that people can tell keys apart.
    prefix = models.CharField(max_length=20)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=20, choices=Scope.choices), default=list)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}…"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class WebhookSettings(EncryptedSecretsMixin, TimestampedModel):
    """Where and how Vizochok calls one tenant's backend.

    The signing secrets are stored encrypted (tenants.encryption) and decrypted when read,
    because every request must be signed with them. During a rotation ``next_secret`` signs
    a second header until ``next_secret_promote_at``, when it replaces ``secret``.
    """

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="webhook_settings")
    products_url = models.URLField(max_length=2000, blank=True)
    cart_url = models.URLField(max_length=2000, blank=True)
    cart_get_url = models.URLField(max_length=2000, blank=True)
    timeout_seconds = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(MAX_WEBHOOK_TIMEOUT_SECONDS)]
    )
    secret = EncryptedSecretField(blank=True, editable=False)
    next_secret = EncryptedSecretField(blank=True, editable=False)
    next_secret_promote_at = models.DateTimeField(null=True, blank=True, editable=False)
    secret_updated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "webhook settings"
        verbose_name_plural = "webhook settings"

    def __str__(self) -> str:
        return f"Webhooks of {self.tenant}"

    @property
    def has_secret(self) -> bool:
        """Whether a signing secret is stored, which is known without decrypting it."""
        return secret_is_set(self, "secret")


class AssistantSettings(TimestampedModel):
    """Per-tenant AI settings and usage limits of the shopping assistant."""

    class Language(models.TextChoices):
        UKRAINIAN = "uk", "Ukrainian"
        ENGLISH = "en", "English"
        RUSSIAN = "ru", "Russian"

    class AnonymousLimitIdentity(models.TextChoices):
        """The identity that the daily limits count an anonymous public-key shopper by."""

        API_KEY = "api_key", "API key"
        CLIENT_NETWORK = "client_network", "Client network"

    tenant = models.OneToOneField(
        Tenant, on_delete=models.CASCADE, related_name="assistant_settings"
    )
    # The first message of a conversation uses the "complex" model, later tool rounds the
    # "fast" one. Empty values fall back to the deployment's defaults.
    complex_model = models.CharField(max_length=200, blank=True)
    fast_model = models.CharField(max_length=200, blank=True)
    system_prompt_addition = models.TextField(blank=True)
    disabled_tools = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    temperature = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        default=Decimal("0.20"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("2"))],
    )
    default_language = models.CharField(
        max_length=2, choices=Language.choices, default=Language.UKRAINIAN
    )
    max_tool_rounds = models.PositiveSmallIntegerField(
        default=6, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    session_token_limit = models.PositiveIntegerField(default=100_000)
    daily_token_limit = models.PositiveIntegerField(default=500_000)
    monthly_token_limit = models.PositiveIntegerField(default=10_000_000)
    user_daily_message_limit = models.PositiveIntegerField(default=200)
    user_daily_conversation_limit = models.PositiveIntegerField(default=20)
    # The key by default, so that all anonymous shoppers of a public key share one count.
    # conversations/identity.py reads it when a conversation starts.
    anonymous_limit_identity = models.CharField(
        max_length=20,
        choices=AnonymousLimitIdentity.choices,
        default=AnonymousLimitIdentity.API_KEY,
    )
    # Sliding window of shopper messages per conversation: at most this many messages in
    # this many seconds.
    rate_limit_messages = models.PositiveIntegerField(default=10)
    rate_limit_window_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(3600)]
    )

    class Meta:
        verbose_name = "assistant settings"
        verbose_name_plural = "assistant settings"

    def __str__(self) -> str:
        return f"Assistant of {self.tenant}"
