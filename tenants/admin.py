"""Django admin for tenants, API keys and webhook settings.

Raw API keys and webhook secrets appear exactly once, in the confirmation message after
they are created; the admin never lists them again.

Every action here changes a credential or calls the merchant, so each one needs the change
permission. Django offers an action without ``permissions`` to every user who may view the
list.
"""

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin import widgets as admin_widgets
from django.contrib.admin.utils import quote
from django.db import models
from django.db.models import ProtectedError, QuerySet, RestrictedError
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.text import capfirst
from django.views.decorators.debug import sensitive_post_parameters

from tenants import selectors, services
from tenants.encryption import secret_is_readable, secret_is_set
from tenants.models import ApiKey, AssistantSettings, Tenant, WebhookSettings
from vizochok.exceptions import ErrorCode, InvalidInput
from webhooks.diagnostics import WebhookNotConfigured, webhook_test_send
from webhooks.models import WebhookKind

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

# Models with a read-only admin whose rows are deleted with their tenant ("app_label.Model").
_DELETED_WITH_TENANT = (
    "catalog.CatalogJob",
    "conversations.Conversation",
    "webhooks.CircuitBreaker",
    "webhooks.WebhookDelivery",
)


# The tenant filter lists at most this many tenants. Each listed tenant is a sidebar link
# and, with facets shown, a count in the changelist's query, so thousands would bloat the
# page and slow the query.
MAX_LISTED_TENANTS = 100


class TenantListFilter(admin.RelatedFieldListFilter):
    """Tenant filter of the changelists of tenant-owned rows, bounded in size.

    With more than ``MAX_LISTED_TENANTS`` tenants it lists only the selected tenant. The
    search box of these changelists then finds a tenant's rows by its exact slug.
    """

    def field_choices(
        self, field: models.Field, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> list[tuple[str, "StrOrPromise"]]:
        tenants = Tenant.objects.order_by("name", "pk")
        choices: list[tuple[str, StrOrPromise]] = [
            (str(tenant.pk), str(tenant)) for tenant in tenants[: MAX_LISTED_TENANTS + 1]
        ]
        if len(choices) <= MAX_LISTED_TENANTS:
            return choices
        # The parameter comes from the URL, so a value that is no primary key selects nothing
        # here rather than failing the query. Django's changelist then ignores it.
        selected = [
            int(value)
            for value in self.lookup_val or []
            if value.isascii() and value.isdigit() and len(value) < 19
        ]
        return [(str(tenant.pk), str(tenant)) for tenant in tenants.filter(pk__in=selected)]

    def has_output(self) -> bool:
        # Django shows a filter with at least two choices. Past the limit the selected
        # tenant can be the only one, and the sidebar still shows it.
        return super().has_output() or bool(self.lookup_val and self.lookup_choices)


_RELOAD_ADVICE = (
    "after you opened this page, so nothing was saved. Reload the page to see the current "
    "values, then make your changes again."
)
TENANT_CHANGED_MESSAGE = f"This tenant was changed {_RELOAD_ADVICE}"
AI_SETTINGS_CHANGED_MESSAGE = f"The AI settings of this tenant were changed {_RELOAD_ADVICE}"
WEBHOOK_SETTINGS_CHANGED_MESSAGE = f"These webhook settings were changed {_RELOAD_ADVICE}"


def _deletion_label(obj: models.Model) -> str:
    return f"{capfirst(obj._meta.verbose_name)}: {obj}"


class _VersionCheckedForm(forms.ModelForm):
    """A change form that saves only over the values that its page showed.

    The page carries the version of the row's ``version_fields``, the fields that the form
    writes, in a hidden field. ``clean`` locks the row until the admin view's transaction
    commits, and rejects the save with ``changed_message`` when the version differs or the
    row was deleted, so a save cannot undo another save made after its page was opened. A
    form for a new row checks nothing.
    """

    changed_message: ClassVar[str]
    version_fields: ClassVar[tuple[str, ...]]

    version = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.initial["version"] = services.row_version(
                row=self.instance, fields=self.version_fields
            )

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean() or {}
        if self.instance._state.adding:
            return cleaned_data
        current_version = services.row_version_lock(
            model=type(self.instance), pk=self.instance.pk, fields=self.version_fields
        )
        # A row deleted since the page was opened has the version "", which a page that sent
        # no version would match, and saving would insert the row again.
        if not current_version or cleaned_data.get("version") != current_version:
            self.add_error(None, forms.ValidationError(self.changed_message, code="stale"))
        return cleaned_data


class WidgetOriginsField(forms.CharField):
    """One origin per line, cleaned to the normalized list that Tenant stores."""

    widget = forms.Textarea(attrs={"rows": 4})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def clean(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().clean(value)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        try:
            return services.widget_allowed_origins_clean(lines)
        except InvalidInput as error:
            raise forms.ValidationError(error.extra["fields"]["widget_allowed_origins"]) from None

    def has_changed(self, initial: Any, data: Any) -> bool:
        # The stored list and the submitted text differ in type, so the default comparison
        # would record a change in the admin history on every save.
        try:
            return self.clean(data) != (initial or [])
        except forms.ValidationError:
            return True


class TenantForm(_VersionCheckedForm):
    changed_message = TENANT_CHANGED_MESSAGE

    widget_allowed_origins = WidgetOriginsField(
        required=False,
        label="Widget allowed origins",
        help_text="Origins whose pages may chat with this tenant's public keys, one per line, "
        "such as https://shop.example.com. Empty: every origin. Requests without an Origin "
        "header, from servers and apps, are not checked.",
    )

    class Meta:
        model = Tenant
        fields = ["name", "slug", "is_active", "widget_allowed_origins"]

    version_fields = tuple(Meta.fields)

    def validate_unique(self) -> None:
        # The lock lasts until the admin view's transaction commits the new row.
        slug = self.cleaned_data.get("slug")
        if slug:
            services.tenant_slug_lock(slug=slug)
        super().validate_unique()


class _ChoiceCheckedByServiceMixin:
    """Leaves the check of a submitted choice to ``services.assistant_settings_clean``.

    The admin API has no form, so the service checks choices, and its messages are the
    ones both show.
    """

    def valid_value(self, value: Any) -> bool:
        return True


class _LanguageField(_ChoiceCheckedByServiceMixin, forms.ChoiceField):
    pass


class _ToolsField(_ChoiceCheckedByServiceMixin, forms.MultipleChoiceField):
    pass


class AssistantSettingsForm(_VersionCheckedForm):
    """AI settings of a tenant, with the disabled tools picked from the agent's tool list.

    The fields only parse the submitted text. ``clean`` passes the values to
    ``services.assistant_settings_clean``, which the admin API uses too.
    """

    changed_message = AI_SETTINGS_CHANGED_MESSAGE

    disabled_tools = _ToolsField(
        required=False,
        label="Disabled tools",
        widget=forms.CheckboxSelectMultiple,
        help_text="Tools the LLM agent is not offered; a call of one is rejected.",
    )
    # Not required, so that a blank language gets the service's message, as in the API.
    default_language = _LanguageField(
        required=False,
        choices=AssistantSettings.Language.choices,
        help_text="Language of replies when a message shows none.",
    )

    class Meta:
        model = AssistantSettings
        fields = [
            "complex_model",
            "fast_model",
            "temperature",
            "default_language",
            "system_prompt_addition",
            "disabled_tools",
            "max_tool_rounds",
            "session_token_limit",
            "daily_token_limit",
            "monthly_token_limit",
            "user_daily_message_limit",
            "user_daily_conversation_limit",
            "anonymous_limit_identity",
            "rate_limit_messages",
            "rate_limit_window_seconds",
        ]
        help_texts = {
            "complex_model": "Model of the first model call of a conversation. Empty: the "
            "deployment's LLM_COMPLEX_MODEL.",
            "fast_model": "Model of every later call. Empty: the deployment's LLM_FAST_MODEL.",
            "system_prompt_addition": "Added to the agent's system prompt, for example the "
            "store's tone or delivery rules. It cannot lift the built-in rules. At most "
            f"{services.MAX_SYSTEM_PROMPT_ADDITION_LENGTH} characters.",
            "temperature": "Sampling temperature, 0 to 2.",
            "max_tool_rounds": "Rounds of tool calls per message; more ends the reply with "
            "max_rounds_exceeded.",
            "session_token_limit": "Tokens one conversation may use; 0 means no limit.",
            "daily_token_limit": "Tokens the tenant may use per UTC day; 0 means no limit.",
            "monthly_token_limit": "Tokens the tenant may use per calendar month; 0 means no "
            "limit.",
            "user_daily_message_limit": "Shopper messages one user may send per UTC day; 0 "
            "means no limit. Shoppers without a trusted user id are counted as the anonymous "
            "limit identity says.",
            "user_daily_conversation_limit": "Conversations one user may start per UTC day; 0 "
            "means no limit. Shoppers without a trusted user id are counted as the anonymous "
            "limit identity says.",
            "anonymous_limit_identity": "What the two daily limits count a shopper without a "
            "trusted user id on a public key by. API key (the default): all such shoppers of "
            "the key share one count. Client network: one count per client IPv4 address or "
            "IPv6 /64, which needs TRUSTED_PROXY_COUNT set behind a reverse proxy. Secret "
            "keys always count per key, and a started conversation keeps its count.",
            "rate_limit_messages": "Shopper messages one conversation may send per window; 0 "
            "means no limit.",
            "rate_limit_window_seconds": "Length of the sliding window of the rate limit, in "
            "seconds.",
        }

    version_fields = tuple(Meta.fields)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Imported here: tenants is below conversations, and only this form needs the names.
        from conversations.tool_calls import TOOL_NAMES

        disabled_tools = cast(forms.MultipleChoiceField, self.fields["disabled_tools"])
        disabled_tools.choices = [(name, name) for name in sorted(TOOL_NAMES)]
        # The service checks lengths and ranges, so the fields' own validators would only
        # repeat its messages or word them differently.
        for field in self.fields.values():
            field.validators = []

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean() or {}
        changes = {
            name: cleaned_data[name]
            for name in services.ASSISTANT_SETTINGS_FIELDS
            if name in cleaned_data
        }
        try:
            cleaned = services.assistant_settings_clean(
                assistant_settings=self.instance,
                changes=cast(services.AssistantSettingsChanges, changes),
            )
        except InvalidInput as error:
            for field_name, field_messages in error.extra["fields"].items():
                self.add_error(field_name, field_messages)
            return self.cleaned_data
        cleaned_data.update(cleaned)
        return cleaned_data


class AssistantSettingsInline(admin.StackedInline):
    model = AssistantSettings
    form = AssistantSettingsForm
    can_delete = False
    extra = 0
    verbose_name = verbose_name_plural = "AI settings"
    # The admin's default integer input is 5em wide and cut the default monthly limit of
    # 10000000 to a visible 100000.
    formfield_overrides = {
        models.PositiveIntegerField: {"widget": admin_widgets.AdminBigIntegerFieldWidget},
    }
    fieldsets = [
        (
            "Models and prompt",
            {
                "fields": [
                    "version",
                    "complex_model",
                    "fast_model",
                    "temperature",
                    "default_language",
                    "system_prompt_addition",
                ]
            },
        ),
        ("Tools", {"fields": ["disabled_tools", "max_tool_rounds"]}),
        (
            "Token budgets",
            {"fields": ["session_token_limit", "daily_token_limit", "monthly_token_limit"]},
        ),
        (
            "Per-user limits",
            {
                "fields": [
                    "user_daily_message_limit",
                    "user_daily_conversation_limit",
                    "anonymous_limit_identity",
                    "rate_limit_messages",
                    "rate_limit_window_seconds",
                ]
            },
        ),
    ]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = ["name", "slug", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["user_token_secret_status", "user_token_secret_updated_at"]
    inlines = [AssistantSettingsInline]
    actions = ["generate_user_token_secret"]

    @admin.display(description="User token secret")
    def user_token_secret_status(self, obj: Tenant) -> str:
        if not secret_is_set(obj, "user_token_secret"):
            return (
                "Not set: a public key cannot name a shopper. Generate one with the action "
                "in the tenant list."
            )
        if not secret_is_readable(obj, "user_token_secret"):
            return (
                f"Set, but it cannot be decrypted with any key in VIZOCHOK_ENCRYPTION_KEYS, so "
                f"user tokens are rejected with {ErrorCode.SECRET_UNDECRYPTABLE}. Restore the "
                "key, or generate a new secret with the action in the tenant list."
            )
        return "Set (never shown again; generate a new one to replace it)."

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change:
            return
        # As create_tenant does, so that the tenant's public key can name shoppers at once.
        secret = services.user_token_secret_set(tenant=obj)
        self.message_user(
            request,
            f"User token secret for {obj} (shown only now, copy it to your backend): {secret}",
            level=messages.WARNING,
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # Django's own version loads every row that the delete cascades to and lists each one
        # on the page. For a tenant with 20,000 products and 20,000 webhook deliveries, that
        # took 8 s and 4.7 MB of HTML on the confirmation page, and 8 s more before the
        # delete. This version lists each tenant with one row count per model.
        deleted_objects: list[Any] = []
        model_count: dict[str, int] = {}
        perms_needed: set[str] = set()
        protected: list[str] = []
        for tenant in objs:
            try:
                counts = selectors.tenant_deletion_counts(tenant=tenant)
            except ProtectedError as error:
                protected.extend(_deletion_label(obj) for obj in error.protected_objects)
                continue
            except RestrictedError as error:
                protected.extend(_deletion_label(obj) for obj in error.restricted_objects)
                continue
            owned_rows = []
            for model, count in sorted(counts.items(), key=lambda item: item[0]._meta.label):
                name, name_plural = (
                    str(model._meta.verbose_name),
                    str(model._meta.verbose_name_plural),
                )
                model_count[name_plural] = model_count.get(name_plural, 0) + count
                if not self._may_delete(request, model):
                    perms_needed.add(name)
                if model is not Tenant:
                    owned_rows.append(f"{capfirst(name_plural)}: {count}")
            change_url = reverse(
                f"{self.admin_site.name}:tenants_tenant_change", args=[quote(tenant.pk)]
            )
            deleted_objects += [format_html('Tenant: <a href="{}">{}</a>', change_url, tenant)]
            deleted_objects += [owned_rows]
        return deleted_objects, model_count, perms_needed, protected

    def _may_delete(self, request: HttpRequest, model: type[models.Model]) -> bool:
        """Return whether ``request.user`` may delete ``model``'s rows of a deleted tenant.

        As in Django's own check, a model without an admin page needs no permission. Catalog
        jobs, conversations, webhook deliveries and circuit breakers are read-only in the
        admin, so the delete page would reject every tenant that had one upload, one chat or
        one webhook call. Their rows go with the tenant, so the model permission decides.
        """
        if not self.admin_site.is_registered(model):
            return True
        if self.admin_site.get_model_admin(model).has_delete_permission(request):
            return True
        options = model._meta
        return options.label in _DELETED_WITH_TENANT and request.user.has_perm(
            f"{options.app_label}.delete_{options.model_name}"
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Default AI settings come after the inline, because the add page may fill the inline
        # in, and a row created first would make the inline's insert fail.
        super().save_related(request, form, formsets, change)
        if not change:
            AssistantSettings.objects.get_or_create(tenant=form.instance)

    @admin.action(
        description="Generate a new user token secret (old tokens stop working)",
        permissions=["change"],
    )
    def generate_user_token_secret(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            secret = services.user_token_secret_set(tenant=tenant)
            self.message_user(
                request,
                f"New user token secret for {tenant} (shown only now, copy it to your "
                f"backend): {secret}",
                level=messages.WARNING,
            )


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["tenant", "kind", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "tenant", "kind", "name", "scopes", "last_used_at", "revoked_at"]
    list_filter = [
        "kind",
        ("tenant", TenantListFilter),
        ("revoked_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["prefix", "name", "tenant__name", "=tenant__slug"]
    readonly_fields = [
        "tenant",
        "kind",
        "prefix",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    fields = [
        "tenant",
        "kind",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke_keys"]

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return self.fields if obj is not None else ["tenant", "kind", "name"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name", "updated_at"])
            return
        issued = services.api_key_create(
            tenant=form.cleaned_data["tenant"],
            kind=form.cleaned_data["kind"],
            name=form.cleaned_data["name"],
        )
        obj.pk = issued.api_key.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            f"New API key (shown only now, copy it): {issued.raw_key}",
            level=messages.WARNING,
        )

    @admin.action(description="Revoke the selected API keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = already_revoked = 0
        for api_key in queryset.select_related("tenant"):
            if api_key.revoked_at is not None:
                already_revoked += 1
                continue
            services.api_key_revoke(tenant=api_key.tenant, api_key_id=api_key.pk)
            revoked += 1
        message = f"Revoked {revoked} API key(s)."
        if already_revoked:
            message += f" {already_revoked} selected key(s) were already revoked and stay so."
        self.message_user(request, message)


def _webhook_url_field() -> forms.CharField:
    """Return a text field for a webhook URL with the API's length limit and message.

    It is not a URLField, because ``clean`` applies the API's egress check and URLField's
    "Enter a valid URL." would replace the API's messages.
    """
    return forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.URLInput(attrs={"class": "vURLField"}),
        error_messages={"max_length": "Ensure this field has no more than 2000 characters."},
    )


class WebhookSettingsForm(_VersionCheckedForm):
    changed_message = WEBHOOK_SETTINGS_CHANGED_MESSAGE

    products_url = _webhook_url_field()
    cart_url = _webhook_url_field()
    cart_get_url = _webhook_url_field()
    custom_secret = forms.CharField(
        required=False,
        label="Custom secret",
        strip=False,
        # Without "new-password", a browser's password manager may fill in the operator's
        # saved admin password here, and saving would install it as the signing secret.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Optional: replace the signing secret with your own (24 to 200 characters on "
        "one line). Leave empty to keep the current secret.",
    )

    class Meta:
        model = WebhookSettings
        fields = ["tenant", "products_url", "cart_url", "cart_get_url", "timeout_seconds"]

    # The tenant is read-only on the change page.
    version_fields = (*services.WEBHOOK_URL_FIELDS, "timeout_seconds")

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean() or {}
        for field_name in services.WEBHOOK_URL_FIELDS:
            url = cleaned_data.get(field_name)
            if url:
                try:
                    services.validate_webhook_url(field_name=field_name, url=url)
                except InvalidInput as error:
                    self.add_error(field_name, error.extra["fields"][field_name])
        return cleaned_data

    def validate_unique(self) -> None:
        # The lock lasts until the admin view's transaction commits the new row.
        tenant = self.cleaned_data.get("tenant")
        if tenant is not None and self.instance._state.adding:
            services.webhook_settings_create_lock(tenant_id=tenant.pk)
        super().validate_unique()

    def _get_validation_exclusions(self) -> set[str]:
        # The model's URLValidator would add "Enter a valid URL." to URLs that clean() has
        # already checked with the API's rules. ModelForm calls this private method before the
        # model validation (Django 5.2), and django-stubs does not declare it.
        exclusions: set[str] = super()._get_validation_exclusions()  # type: ignore[misc]
        return {*exclusions, *services.WEBHOOK_URL_FIELDS}

    def clean_custom_secret(self) -> str:
        secret: str = self.cleaned_data["custom_secret"]
        if secret:
            try:
                services.validate_custom_secret(secret)
            except InvalidInput as error:
                raise forms.ValidationError(error.extra["fields"]["secret"]) from error
        return secret


@admin.register(WebhookSettings)
class WebhookSettingsAdmin(admin.ModelAdmin):
    form = WebhookSettingsForm
    list_display = ["tenant", "products_url", "cart_url", "timeout_seconds", "has_secret"]
    list_filter = [("tenant", TenantListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["=tenant__slug", "tenant__name"]
    readonly_fields = ["secret_status", "secret_updated_at"]
    actions = [
        "rotate_secret_now",
        "rotate_secret_with_overlap",
        "send_test_products",
        "send_test_cart",
        "send_test_cart_get",
    ]

    # Error reports (Django's debug page, a mail or Sentry handler) then show the custom
    # secret as stars if saving the form fails.
    @method_decorator(sensitive_post_parameters("custom_secret"))
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.display(boolean=True, description="Secret set")
    def has_secret(self, obj: WebhookSettings) -> bool:
        return obj.has_secret

    @admin.display(description="Signing secret")
    def secret_status(self, obj: WebhookSettings) -> str:
        if not obj.has_secret:
            return "Not set yet: one is generated when you save a URL."
        unreadable = [
            label
            for name, label in (("secret", "current"), ("next_secret", "next"))
            if not secret_is_readable(obj, name)
        ]
        if unreadable:
            return (
                f"Set, but the {' and the '.join(unreadable)} secret cannot be decrypted with "
                "any key in VIZOCHOK_ENCRYPTION_KEYS, so webhook calls fail with "
                f"{ErrorCode.SECRET_UNDECRYPTABLE}. Restore the key, or rotate the secret now."
            )
        promote_at = obj.next_secret_promote_at
        if secret_is_set(obj, "next_secret") and promote_at is not None:
            # The next webhook call completes a rotation whose overlap has ended
            # (webhooks.calls.signing_secrets), so the row may still show it after that time.
            if promote_at <= timezone.now():
                return (
                    f"Set; the rotation's overlap ended at {promote_at:%Y-%m-%d %H:%M} UTC, so "
                    "the new secret alone signs from the next webhook request on."
                )
            return (
                "Set; rotation in progress, the next secret takes over at "
                f"{promote_at:%Y-%m-%d %H:%M} UTC."
            )
        return "Set (never shown again; rotate it to get a new one)."

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookSettings | None = None) -> Any:
        # Settings stay with the tenant they were created for, so only a new row picks one.
        if obj is not None:
            return ["tenant", *self.readonly_fields]
        return self.readonly_fields

    def save_model(
        self, request: HttpRequest, obj: WebhookSettings, form: Any, change: bool
    ) -> None:
        if change:
            # Only the form's fields are written, so a rotation that committed after this
            # request read the row keeps its secrets.
            fields = WebhookSettingsForm.Meta.fields
            obj.save(update_fields=[*(name for name in fields if name != "tenant"), "updated_at"])
        else:
            super().save_model(request, obj, form, change)
        custom_secret = form.cleaned_data.get("custom_secret")
        if custom_secret:
            services.webhook_secret_set(webhook_settings=obj, secret=custom_secret)
            self.message_user(request, "The custom signing secret is now in use.")
            return
        # As in the API, the first secret comes with the first URL.
        if not any(getattr(obj, name) for name in services.WEBHOOK_URL_FIELDS):
            return
        secret = services.webhook_secret_ensure(webhook_settings=obj)
        if secret is not None:
            self.message_user(
                request,
                f"Webhook signing secret (shown only now, copy it to your backend): {secret}",
                level=messages.WARNING,
            )

    def _rotate(
        self, request: HttpRequest, queryset: QuerySet[WebhookSettings], overlap: timedelta
    ) -> None:
        for webhook_settings in queryset.select_related("tenant"):
            secret = services.webhook_secret_set(webhook_settings=webhook_settings, overlap=overlap)
            message = f"New signing secret for {webhook_settings.tenant} (shown only now): {secret}"
            promote_at = webhook_settings.next_secret_promote_at
            if webhook_settings.next_secret and promote_at is not None:
                message += (
                    f". Both secrets sign requests until {promote_at:%Y-%m-%d %H:%M} UTC; switch"
                    " the merchant's verifier to the new secret before then."
                )
            elif overlap:
                # A tenant without a secret, or whose secret no key decrypts, gets no overlap.
                message += (
                    ". It signs requests alone from now on, because the tenant had no "
                    "usable secret to overlap with."
                )
            self.message_user(request, message, level=messages.WARNING)

    @admin.action(description="Rotate the secret now (for a leaked secret)", permissions=["change"])
    def rotate_secret_now(
        self, request: HttpRequest, queryset: QuerySet[WebhookSettings]
    ) -> TemplateResponse | None:
        # The merchant's verifier rejects every request from the rotation until it has the new
        # secret, so the first POST shows a confirmation page. Its form posts the same
        # selection back with "confirmed".
        if request.POST.get("confirmed") != "yes":
            return self._rotate_now_confirmation(request, queryset)
        self._rotate(request, queryset, timedelta(0))
        return None

    def _rotate_now_confirmation(
        self, request: HttpRequest, queryset: QuerySet[WebhookSettings]
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Rotate the signing secret now?",
            "opts": self.model._meta,
            "webhook_settings_list": list(queryset.select_related("tenant")),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/tenants/webhooksettings/rotate_secret_now_confirmation.html", context
        )

    @admin.action(description="Rotate the secret with a 24-hour overlap", permissions=["change"])
    def rotate_secret_with_overlap(
        self, request: HttpRequest, queryset: QuerySet[WebhookSettings]
    ) -> None:
        self._rotate(request, queryset, timedelta(hours=24))

    def _send_test(
        self, request: HttpRequest, queryset: QuerySet[WebhookSettings], kind: WebhookKind
    ) -> None:
        for webhook_settings in queryset.select_related("tenant"):
            tenant = webhook_settings.tenant
            try:
                result = webhook_test_send(tenant=tenant, kind=kind)
            except WebhookNotConfigured:
                # The exception's detail points API clients at PATCH /api/v1/admin/webhooks.
                self.message_user(
                    request,
                    f"{tenant}: no test was sent, because the {kind.label} webhook URL or the "
                    "signing secret is not set. Enter the URL on this tenant's webhook "
                    "settings page and save it, which also generates a missing secret.",
                    level=messages.WARNING,
                )
                continue
            if result.ok:
                self.message_user(
                    request,
                    f"{tenant}: {kind.label} test answered HTTP {result.status_code} in "
                    f"{result.latency_ms} ms: "
                    f"{json.dumps(result.response, ensure_ascii=False, default=str)}",
                    level=messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{tenant}: {kind.label} test failed after {result.latency_ms} ms: "
                    f"{result.error}",
                    level=messages.ERROR,
                )

    @admin.action(description="Send test: products webhook (sample SKUs)", permissions=["change"])
    def send_test_products(self, request: HttpRequest, queryset: QuerySet[WebhookSettings]) -> None:
        self._send_test(request, queryset, WebhookKind.PRODUCTS)

    @admin.action(
        description="Send test: cart webhook ('clear' of session vizochok-test)",
        permissions=["change"],
    )
    def send_test_cart(self, request: HttpRequest, queryset: QuerySet[WebhookSettings]) -> None:
        self._send_test(request, queryset, WebhookKind.CART)

    @admin.action(
        description="Send test: cart GET webhook (session vizochok-test)", permissions=["change"]
    )
    def send_test_cart_get(self, request: HttpRequest, queryset: QuerySet[WebhookSettings]) -> None:
        self._send_test(request, queryset, WebhookKind.CART_GET)
