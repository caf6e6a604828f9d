"""The admin site, whose login and password change forms limit failed password checks.

Both forms count each password they check with ``vizochok.admin_login``, against the same
user name and client network, so a stolen session cannot guess the operator's password on
the password change page either.
"""

from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm, AdminPasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

from conversations.client_address import ConnectionAddresses
from vizochok.admin_login import (
    AdminLoginThrottled,
    LoginAttempt,
    admin_login_attempt_start,
    admin_login_succeeded,
    retry_time_text,
)

LOGIN_THROTTLED_MESSAGE = "Too many failed login attempts. Try again after %(retry_at)s."


def _attempt_start(*, user_name: str, request: HttpRequest | None) -> LoginAttempt:
    """Count a password check; raise the form's ``throttled`` error over the limit."""
    if request is not None:
        addresses = ConnectionAddresses.from_request(request)
    else:
        addresses = ConnectionAddresses(peer=None, forwarded_for=None)
    try:
        return admin_login_attempt_start(user_name=user_name, addresses=addresses)
    except AdminLoginThrottled as error:
        raise ValidationError(
            LOGIN_THROTTLED_MESSAGE,
            code="throttled",
            params={"retry_at": retry_time_text(error.retry_at)},
        ) from None


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin login form, rejecting attempts after too many failures.

    The message of a rejected attempt is the same whether or not the user name exists, and
    the password is not checked.
    """

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": LOGIN_THROTTLED_MESSAGE,
    }

    def clean(self) -> dict[str, Any]:
        user_name = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if user_name is None or not password:
            # A missing field gets its own error, and no password is tried.
            return super().clean()
        attempt = _attempt_start(user_name=user_name, request=self.request)
        cleaned_data = super().clean()
        admin_login_succeeded(attempt=attempt)
        return cleaned_data


class ThrottledAdminPasswordChangeForm(AdminPasswordChangeForm):
    """The admin's password change form, counting each old password it checks.

    A wrong old password counts as a failed login of the signed-in user's name, and over
    the limit the old password is not checked, so a client with an operator's session
    cannot use this page to guess the password.
    """

    def __init__(self, *args: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request = request

    def clean_old_password(self) -> str:
        attempt = _attempt_start(user_name=self.user.get_username(), request=self.request)
        old_password: str = super().clean_old_password()
        admin_login_succeeded(attempt=attempt)
        return old_password


class ThrottledPasswordChangeView(PasswordChangeView):
    form_class = ThrottledAdminPasswordChangeForm

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}


class VizochokAdminSite(admin.AdminSite):
    """The default admin site, with the throttled login and password change forms."""

    login_form = ThrottledAdminAuthenticationForm

    def password_change(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        request.current_app = self.name
        view = ThrottledPasswordChangeView.as_view(
            success_url=reverse("admin:password_change_done", current_app=self.name),
            extra_context={**self.each_context(request), **(extra_context or {})},
            template_name=self.password_change_template or "registration/password_change_form.html",
        )
        # A successful change returns a redirect, although django-stubs declare a
        # TemplateResponse, as for Django's own password_change.
        return cast(TemplateResponse, view(request))
