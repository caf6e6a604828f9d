"""State changes of tenants, API keys, webhook settings and assistant settings."""

import hashlib
import json
import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypedDict, Unpack, cast

from django.core.exceptions import ValidationError
from django.core.validators import DecimalValidator, MaxLengthValidator
from django.db import connection, models, transaction
from django.db.models import DecimalField, Field
from django.utils import timezone

from tenants.encryption import (
    ENCRYPTED_PREFIX,
    StoredSecret,
    UndecryptableValueError,
    is_current,
    reencrypt,
    secret_is_readable,
    secret_is_set,
    stored_value,
)
from tenants.keys import (
    CUSTOM_SECRET_MIN_LENGTH,
    DISPLAY_PREFIX_LENGTH,
    PUBLIC_KEY_PREFIX,
    SECRET_KEY_PREFIX,
    generate_api_key,
    generate_user_token_secret,
    generate_webhook_secret,
    hash_api_key,
)
from tenants.models import (
    MAX_SECRET_LENGTH,
    MAX_WIDGET_ALLOWED_ORIGINS,
    ApiKey,
    AssistantSettings,
    Tenant,
    WebhookSettings,
)
from vizochok.exceptions import InvalidInput
from vizochok.origins import origins_normalize
from vizochok.text import is_storable_text
from webhooks import egress

logger = logging.getLogger(__name__)

# The longest overlap a rotation may ask for: a week.
MAX_ROTATION_OVERLAP_HOURS = 7 * 24

# The fields of WebhookSettings that a secret change writes.
_SECRET_FIELDS = ["secret", "next_secret", "next_secret_promote_at", "secret_updated_at"]


@dataclass(frozen=True)
class IssuedApiKey:
    """A newly created key; ``raw_key`` exists only here and is never stored."""

    api_key: ApiKey
    raw_key: str


@dataclass(frozen=True)
class CreatedTenant:
    tenant: Tenant
    public_key: IssuedApiKey
    secret_key: IssuedApiKey
    webhook_secret: str
    user_token_secret: str


def api_key_create(*, tenant: Tenant, kind: str, name: str = "") -> IssuedApiKey:
    """Create a public (scope chat) or secret (scopes chat and catalog) key for ``tenant``."""
    if kind == ApiKey.Kind.PUBLIC:
        prefix, scopes = PUBLIC_KEY_PREFIX, [ApiKey.Scope.CHAT]
    elif kind == ApiKey.Kind.SECRET:
        prefix, scopes = SECRET_KEY_PREFIX, [ApiKey.Scope.CHAT, ApiKey.Scope.CATALOG]
    else:
        raise InvalidInput(f"Unknown API key kind {kind!r}; expected 'public' or 'secret'.")
    raw_key = generate_api_key(prefix)
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        kind=kind,
        prefix=raw_key[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_api_key(raw_key),
        scopes=list(scopes),
    )
    logger.info(
        "tenants.api_key.created",
        extra={"tenant_id": tenant.pk, "api_key_id": api_key.pk, "kind": kind},
    )
    return IssuedApiKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, tenant: Tenant, api_key_id: int) -> ApiKey:
    """Revoke one of ``tenant``'s keys; revoking twice keeps the first revocation time."""
    api_key = ApiKey.objects.get(pk=api_key_id, tenant=tenant)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at", "updated_at"])
        logger.info(
            "tenants.api_key.revoked", extra={"tenant_id": tenant.pk, "api_key_id": api_key.pk}
        )
    return api_key


def tenant_slug_lock(*, slug: str) -> None:
    """Wait for and hold, until the transaction ends, a lock on the tenant slug ``slug``.

    Two saves of one new slug, such as a double submit of the admin form, then check that it
    is free one after the other. Without it, both checks pass and the second INSERT fails
    with an IntegrityError. Outside a transaction the lock ends with its statement.
    """
    _advisory_xact_lock(f"tenants.tenant.slug:{slug}")


def webhook_settings_create_lock(*, tenant_id: int) -> None:
    """Wait for and hold, until the transaction ends, the lock on creating settings for a tenant.

    The admin's add form takes it, so that a double submit gets the form's "already exists"
    error instead of an IntegrityError.
    """
    _advisory_xact_lock(f"tenants.webhook_settings.tenant:{tenant_id}")


def row_version(*, row: models.Model, fields: Sequence[str]) -> str:
    """Return the version of ``row``'s ``fields``: a SHA-256 hex digest of their values.

    An edit page carries it, so that a save can tell whether a field that the page shows
    changed after it was opened. Writes to other columns, such as a secret rotation, keep it.
    """
    concrete_fields = {field.name: field for field in row._meta.concrete_fields}
    values = [concrete_fields[name].value_to_string(row) for name in fields]
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()


def row_version_lock(*, model: type[models.Model], pk: int, fields: Sequence[str]) -> str:
    """Lock the row ``pk`` of ``model`` until the transaction ends and return its version.

    The version is the one ``row_version`` gives, or an empty string when the row no longer
    exists. A save that compares it with the version its page showed and writes in the same
    transaction cannot undo a concurrent save, because a second save waits for the lock and
    then reads the first one's version. Django raises TransactionManagementError when this
    runs outside a transaction.
    """
    row = model._default_manager.select_for_update().only(*fields).filter(pk=pk).first()
    return "" if row is None else row_version(row=row, fields=fields)


def _advisory_xact_lock(key: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])


@transaction.atomic
def tenant_create(*, name: str, slug: str) -> CreatedTenant:
    """Create a tenant with one public key, one secret key and a webhook secret."""
    if not is_storable_text(name):
        # A command line whose bytes are not UTF-8 gives a name that the database rejects.
        raise InvalidInput(
            "Invalid tenant.", fields={"name": ["Use UTF-8 text without NUL characters."]}
        )
    tenant = Tenant(name=name.strip(), slug=slug)
    tenant_slug_lock(slug=slug)
    try:
        tenant.full_clean()
    except ValidationError as error:
        raise InvalidInput("Invalid tenant.", fields=error.message_dict) from error
    tenant.save()
    AssistantSettings.objects.create(tenant=tenant)
    webhook_settings = WebhookSettings.objects.create(tenant=tenant)
    webhook_secret = webhook_secret_set(webhook_settings=webhook_settings)
    user_token_secret = user_token_secret_set(tenant=tenant)
    logger.info("tenants.tenant.created", extra={"tenant_id": tenant.pk, "slug": slug})
    return CreatedTenant(
        tenant=tenant,
        public_key=api_key_create(tenant=tenant, kind=ApiKey.Kind.PUBLIC, name="widget"),
        secret_key=api_key_create(tenant=tenant, kind=ApiKey.Kind.SECRET, name="server"),
        webhook_secret=webhook_secret,
        user_token_secret=user_token_secret,
    )


def user_token_secret_set(*, tenant: Tenant) -> str:
    """Generate and install a new user token secret for ``tenant`` and return it.

    Tokens signed with the previous secret stop working at once. They live at most a day,
    so a merchant that rotates deploys the new secret and lets shoppers get new tokens.
    """
    secret = generate_user_token_secret()
    tenant.user_token_secret = secret
    tenant.user_token_secret_updated_at = timezone.now()
    tenant.save(update_fields=["user_token_secret", "user_token_secret_updated_at", "updated_at"])
    logger.info("tenants.user_token_secret.changed", extra={"tenant_id": tenant.pk})
    return secret


def widget_allowed_origins_clean(origins: list[str]) -> list[str]:
    """Return ``origins`` normalized and without duplicates, or raise InvalidInput.

    The error's field is ``widget_allowed_origins`` and its message names the first invalid
    origin.
    """
    try:
        return origins_normalize(origins, max_count=MAX_WIDGET_ALLOWED_ORIGINS)
    except ValueError as error:
        raise InvalidInput(
            "Invalid widget origins.", fields={"widget_allowed_origins": [str(error)]}
        ) from None


def widget_allowed_origins_set(*, tenant: Tenant, origins: list[str]) -> list[str]:
    """Replace the origins whose pages may chat with ``tenant``'s public keys.

    Returns the stored list. An empty list allows every origin.
    """
    tenant.widget_allowed_origins = widget_allowed_origins_clean(origins)
    tenant.save(update_fields=["widget_allowed_origins", "updated_at"])
    logger.info(
        "tenants.widget_allowed_origins.updated",
        extra={"tenant_id": tenant.pk, "origins": tenant.widget_allowed_origins},
    )
    return tenant.widget_allowed_origins


def webhook_settings_get_or_create(*, tenant: Tenant) -> WebhookSettings:
    settings_row, _ = WebhookSettings.objects.get_or_create(tenant=tenant)
    return settings_row


# Unicode categories of the characters that a custom secret must not contain, with the
# name that the error message gives them: Cc contains NUL, tab, CR, LF and NEL (U+0085).
_LINE_BREAKING_CATEGORIES = {
    "Cc": "control character",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}


def validate_custom_secret(secret: str) -> None:
    """Raise ``InvalidInput`` unless ``secret`` is usable as a custom signing secret.

    It must fit its column, without edge whitespace or control characters. The admin form
    and ``rotate_webhook_secret --secret-stdin`` check nothing else, so a longer secret or a
    NUL character would otherwise fail the database write.
    """
    max_length = MAX_SECRET_LENGTH
    if (
        not CUSTOM_SECRET_MIN_LENGTH <= len(secret) <= max_length
        or secret != secret.strip()
        or not is_storable_text(secret)
    ):
        raise InvalidInput(
            "Invalid webhook secret.",
            fields={
                "secret": [
                    f"Use {CUSTOM_SECRET_MIN_LENGTH} to {max_length} characters of UTF-8 text, "
                    "without NUL characters or leading or trailing spaces."
                ]
            },
        )
    line_breaking_character = next(
        (
            character
            for character in secret
            if unicodedata.category(character) in _LINE_BREAKING_CATEGORIES
        ),
        None,
    )
    if line_breaking_character is not None:
        # A line break or tab here comes from a mistake, such as a second line piped into
        # rotate_webhook_secret --secret-stdin, and the merchant's verifier would need it
        # byte for byte. U+2028 and U+2029 are not control characters, but Python's
        # str.splitlines() and the ECMAScript grammar treat them as line terminators.
        category = _LINE_BREAKING_CATEGORIES[unicodedata.category(line_breaking_character)]
        raise InvalidInput(
            "Invalid webhook secret.",
            fields={
                "secret": [
                    f"The secret contains the {category} "
                    f"U+{ord(line_breaking_character):04X}. Use a secret on one line, "
                    "without line breaks, tabs or other control characters."
                ]
            },
        )
    if secret.startswith(ENCRYPTED_PREFIX):
        # The migration tenants.0005 keeps a value with this prefix as it is, as an encrypted
        # one, so after a downgrade and upgrade no key would decrypt this secret.
        raise InvalidInput(
            "Invalid webhook secret.",
            fields={"secret": [f"A secret must not start with {ENCRYPTED_PREFIX!r}."]},
        )


def webhook_secret_ensure(*, webhook_settings: WebhookSettings) -> str | None:
    """Generate a signing secret if the settings have none yet; return it, or None.

    The row is locked and read again first, so a secret that another request installed
    after ``webhook_settings`` was read is kept.
    """
    with transaction.atomic():
        webhook_settings.refresh_from_db(
            from_queryset=WebhookSettings.objects.select_for_update(), fields=_SECRET_FIELDS
        )
        if webhook_settings.has_secret:
            return None
        return webhook_secret_set(webhook_settings=webhook_settings)


def webhook_secret_set(
    *,
    webhook_settings: WebhookSettings,
    secret: str | None = None,
    overlap: timedelta = timedelta(0),
) -> str:
    """Install ``secret`` (or a generated one) as the signing secret and return it.

    With a positive ``overlap`` and an existing secret, the new secret becomes the "next"
    secret: requests carry a second signature made with it until the overlap ends, so a
    merchant can switch its verifier at any moment of the overlap without failures.

    A rotation still in progress is completed first: its next secret becomes the current
    one, because a merchant may already have switched to it. Merchants still on the older
    secret therefore lose their remaining overlap.

    The row is locked and its secret fields are read again, and only they are written, so
    that a concurrent rotation or settings change is never overwritten with stale values.

    A current secret that no configured key decrypts cannot sign anything, so the new secret
    replaces it at once, even with an ``overlap``. A next secret that no key decrypts is
    dropped instead of completed, so the current secret stays. Stored secrets are moved
    without being decrypted.
    """
    if secret is None:
        secret = generate_webhook_secret()
    else:
        validate_custom_secret(secret)
    with transaction.atomic():
        webhook_settings.refresh_from_db(
            from_queryset=WebhookSettings.objects.select_for_update(), fields=_SECRET_FIELDS
        )
        now = timezone.now()
        # A next secret that no configured key decrypts cannot sign requests any more, so it
        # is dropped and the current secret stays.
        if secret_is_set(webhook_settings, "next_secret") and secret_is_readable(
            webhook_settings, "next_secret"
        ):
            webhook_settings.secret = stored_value(webhook_settings, "next_secret")
        if (
            overlap > timedelta(0)
            and secret_is_set(webhook_settings, "secret")
            and secret_is_readable(webhook_settings, "secret")
        ):
            webhook_settings.next_secret = secret
            webhook_settings.next_secret_promote_at = now + overlap
        else:
            overlap = timedelta(0)
            webhook_settings.secret = secret
            webhook_settings.next_secret = ""
            webhook_settings.next_secret_promote_at = None
        webhook_settings.secret_updated_at = now
        webhook_settings.save(update_fields=[*_SECRET_FIELDS, "updated_at"])
    logger.info(
        "tenants.webhook_secret.changed",
        extra={
            "tenant_id": webhook_settings.tenant_id,
            "overlap_seconds": int(overlap.total_seconds()),
        },
    )
    return secret


@dataclass(frozen=True)
class SecretsReencryption:
    """Counts of stored secrets (empty ones excluded) by what a re-encryption did to them."""

    reencrypted: int
    already_current: int
    undecryptable: int


# Every encrypted column, by model.
_ENCRYPTED_SECRET_FIELDS: list[tuple[type[Tenant] | type[WebhookSettings], tuple[str, ...]]] = [
    (Tenant, ("user_token_secret",)),
    (WebhookSettings, ("secret", "next_secret")),
]


def secrets_reencrypt(*, dry_run: bool) -> SecretsReencryption:
    """Encrypt every stored secret with the first key of ``VIZOCHOK_ENCRYPTION_KEYS``.

    Plain secrets written before encryption existed are encrypted too. A secret that no
    configured key decrypts is counted, logged and left unchanged. Each row is locked while
    it is rewritten, and ``updated_at`` is kept because the secrets themselves do not
    change. With ``dry_run`` nothing is written, and the counts give what would change.
    """
    reencrypted = already_current = undecryptable = 0
    for model, field_names in _ENCRYPTED_SECRET_FIELDS:
        for pk in model.objects.order_by("pk").values_list("pk", flat=True):
            with transaction.atomic():
                row = model.objects.select_for_update().filter(pk=pk).values(*field_names).first()
                if row is None:
                    continue
                updates: dict[str, StoredSecret] = {}
                for field_name, stored in row.items():
                    if not stored:
                        continue
                    if is_current(stored):
                        already_current += 1
                        continue
                    try:
                        updates[field_name] = StoredSecret(reencrypt(stored))
                    except UndecryptableValueError:
                        undecryptable += 1
                        logger.error(
                            "tenants.secret.undecryptable",
                            extra={
                                "model": model._meta.label,
                                "field": field_name,
                                "object_id": pk,
                            },
                        )
                reencrypted += len(updates)
                if updates and not dry_run:
                    model.objects.filter(pk=pk).update(**updates)
    logger.info(
        "tenants.secrets.reencrypted",
        extra={
            "reencrypted": reencrypted,
            "already_current": already_current,
            "undecryptable": undecryptable,
            "dry_run": dry_run,
        },
    )
    return SecretsReencryption(
        reencrypted=reencrypted, already_current=already_current, undecryptable=undecryptable
    )


WEBHOOK_URL_FIELDS = ("products_url", "cart_url", "cart_get_url")


def validate_webhook_url(*, field_name: str, url: str) -> None:
    """Reject a webhook URL that the egress policy would refuse to call.

    The same check runs again before every request, because DNS answers can change.
    """
    if not url:
        return
    try:
        egress.validate_url(url, policy=egress.policy_from_django_settings())
    except egress.UnsafeURLError as error:
        raise InvalidInput("Invalid webhook URL.", fields={field_name: [error.message]}) from error


@dataclass(frozen=True)
class WebhookSettingsUpdate:
    webhook_settings: WebhookSettings
    # A secret generated by this update, to show once; None when the secret did not change
    # or the caller supplied it.
    generated_secret: str | None


@transaction.atomic
def webhook_settings_update(
    *,
    tenant: Tenant,
    products_url: str | None = None,
    cart_url: str | None = None,
    cart_get_url: str | None = None,
    timeout_seconds: int | None = None,
    secret: str | None = None,
) -> WebhookSettingsUpdate:
    """Change the given webhook settings of ``tenant``; None leaves a value unchanged.

    An empty ``secret`` keeps the current one. When a URL is saved and no secret exists yet,
    one is generated and returned once.
    """
    webhook_settings = WebhookSettings.objects.select_for_update().get_or_create(tenant=tenant)[0]
    urls = {"products_url": products_url, "cart_url": cart_url, "cart_get_url": cart_get_url}
    for field_name, url in urls.items():
        if url is not None:
            validate_webhook_url(field_name=field_name, url=url)
    if secret:
        validate_custom_secret(secret)
    for field_name, url in urls.items():
        if url is not None:
            setattr(webhook_settings, field_name, url)
    if timeout_seconds is not None:
        webhook_settings.timeout_seconds = timeout_seconds
    webhook_settings.save()

    generated_secret = None
    if secret:
        webhook_secret_set(webhook_settings=webhook_settings, secret=secret)
    elif not webhook_settings.has_secret and any(
        getattr(webhook_settings, name) for name in WEBHOOK_URL_FIELDS
    ):
        generated_secret = webhook_secret_set(webhook_settings=webhook_settings)
    logger.info(
        "tenants.webhook_settings.updated",
        extra={
            "tenant_id": tenant.pk,
            "fields": sorted(
                name
                for name, value in {**urls, "timeout_seconds": timeout_seconds}.items()
                if value is not None
            ),
            "secret_changed": bool(secret) or generated_secret is not None,
        },
    )
    return WebhookSettingsUpdate(
        webhook_settings=webhook_settings, generated_secret=generated_secret
    )


# Maximum length of AssistantSettings.system_prompt_addition, in characters. The text goes
# with every LLM request of the tenant, so a long one costs tokens on every model call. The
# admin form and the admin API check it. The column has no limit, so a longer text saved
# before the check existed is kept and still used.
MAX_SYSTEM_PROMPT_ADDITION_LENGTH = 4000


class AssistantSettingsChanges(TypedDict, total=False):
    """Values of AssistantSettings that the admin form and the admin API may change."""

    complex_model: str
    fast_model: str
    system_prompt_addition: str
    disabled_tools: list[str]
    temperature: Decimal
    default_language: str
    max_tool_rounds: int
    session_token_limit: int
    daily_token_limit: int
    monthly_token_limit: int
    user_daily_message_limit: int
    user_daily_conversation_limit: int
    anonymous_limit_identity: str
    rate_limit_messages: int
    rate_limit_window_seconds: int


ASSISTANT_SETTINGS_FIELDS: tuple[str, ...] = tuple(AssistantSettingsChanges.__annotations__)


def assistant_settings_get_or_create(*, tenant: Tenant) -> AssistantSettings:
    """Return ``tenant``'s AI settings, creating the row with the defaults if it is missing."""
    assistant_settings, _ = AssistantSettings.objects.get_or_create(tenant=tenant)
    return assistant_settings


def _choice_error(value: str) -> ValidationError:
    # Django's ChoiceField message, so that the admin's choice errors read as in other forms.
    return ValidationError(f"Select a valid choice. {value} is not one of the available choices.")


def _text_validate(text: str) -> None:
    if not is_storable_text(text):
        raise ValidationError("Null characters are not allowed.")


def _model_name_validate(name: str) -> None:
    # NOTE: the LLM provider is not queried for the model, so a misspelled name is saved,
    # and every reply of the tenant then ends with llm_request_rejected.
    if any(character.isspace() or not character.isprintable() for character in name):
        raise ValidationError(
            f"Invalid model name {name!r}. Enter a name without spaces or control characters, "
            "such as gpt-4.1."
        )


def _system_prompt_addition_validate(text: str, *, stored: str) -> None:
    # An unchanged text is not measured, so that a row saved before the limit existed can
    # still be edited in the admin, whose form always sends every field.
    if text != stored:
        MaxLengthValidator(MAX_SYSTEM_PROMPT_ADDITION_LENGTH)(text)


def _disabled_tools_clean(names: list[str]) -> list[str]:
    # Imported here: tenants is below conversations, and only this check needs the names.
    from conversations.tool_calls import TOOL_NAMES

    for name in names:
        if name not in TOOL_NAMES:
            raise _choice_error(name)
    return sorted(set(names))


def _temperature_validate(temperature: Decimal) -> None:
    # Too many digits is reported alone, without the range message that such a value
    # usually fails too.
    model_field = AssistantSettings._meta.get_field("temperature")
    assert isinstance(model_field, DecimalField)
    DecimalValidator(model_field.max_digits, model_field.decimal_places)(temperature)


def _assistant_setting_clean(
    *, assistant_settings: AssistantSettings, field_name: str, value: Any
) -> Any:
    if field_name in ("complex_model", "fast_model"):
        _text_validate(value)
        _model_name_validate(value)
    elif field_name == "system_prompt_addition":
        _text_validate(value)
        _system_prompt_addition_validate(value, stored=assistant_settings.system_prompt_addition)
    elif field_name == "disabled_tools":
        value = _disabled_tools_clean(value)
    elif field_name == "default_language":
        # A blank value gets the model field's "This field cannot be blank." below.
        if value and value not in AssistantSettings.Language.values:
            raise _choice_error(value)
    elif field_name == "anonymous_limit_identity":
        if value and value not in AssistantSettings.AnonymousLimitIdentity.values:
            raise _choice_error(value)
    elif field_name == "temperature":
        _temperature_validate(value)
        # PostgreSQL's numeric has no negative zero and stores -0 as 0, so the returned row
        # must have 0 too.
        if value.is_zero():
            value = abs(value)
    # The model field's own checks: maximum lengths and the ranges of its validators and of
    # its column.
    model_field = AssistantSettings._meta.get_field(field_name)
    assert isinstance(model_field, Field)
    return model_field.clean(value, assistant_settings)


def assistant_settings_clean(
    *, assistant_settings: AssistantSettings, changes: AssistantSettingsChanges
) -> AssistantSettingsChanges:
    """Return ``changes`` checked and normalized, or raise InvalidInput with field messages.

    This is the one check of AI settings: the admin form and the admin API both call it, so
    they accept the same values and reject the others with the same messages. Disabled
    tools come back sorted and without duplicates.
    """
    cleaned: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for field_name, value in changes.items():
        if field_name not in ASSISTANT_SETTINGS_FIELDS:
            raise ValueError(f"AssistantSettings has no changeable field {field_name!r}.")
        try:
            cleaned[field_name] = _assistant_setting_clean(
                assistant_settings=assistant_settings, field_name=field_name, value=value
            )
        except ValidationError as error:
            errors[field_name] = error.messages
    if errors:
        raise InvalidInput("Invalid assistant settings.", fields=errors)
    return cast(AssistantSettingsChanges, cleaned)


@transaction.atomic
def assistant_settings_update(
    *, tenant: Tenant, **changes: Unpack[AssistantSettingsChanges]
) -> AssistantSettings:
    """Change the given AI settings of ``tenant``, keep the others and return the row.

    The row is created with the defaults if it is missing. Nothing is written unless every
    value is valid. The agent reads the row at each shopper message, so a change applies
    to the next one.
    """
    AssistantSettings.objects.get_or_create(tenant=tenant)
    assistant_settings = AssistantSettings.objects.select_for_update().get(tenant=tenant)
    cleaned: dict[str, Any] = dict(
        assistant_settings_clean(assistant_settings=assistant_settings, changes=changes)
    )
    changed_fields = sorted(
        field_name
        for field_name, value in cleaned.items()
        if getattr(assistant_settings, field_name) != value
    )
    if not changed_fields:
        return assistant_settings
    for field_name in changed_fields:
        setattr(assistant_settings, field_name, cleaned[field_name])
    assistant_settings.save(update_fields=[*changed_fields, "updated_at"])
    # The line has the field names only, because the prompt text is the merchant's own.
    logger.info(
        "tenants.assistant_settings.updated",
        extra={"tenant_id": tenant.pk, "fields": changed_fields},
    )
    return assistant_settings
