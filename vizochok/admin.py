"""The admin site, whose login and password change forms limit failed password checks.

Both forms count each password they check with ``vizochok.admin_login``: against the
browser's device cookie when it is valid for the user name, or else against the user name
and the client network. So a stolen session cannot guess the operator's password on the
password change page either. A successful login or password change sets a new device
cookie.
"""

from typing import Any, cast

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm, AdminPasswordChangeForm
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from conversations.client_address import ConnectionAddresses
from vizochok.admin_login import (
    DEVICE_COOKIE_NAME,
    AdminLoginThrottled,
    LoginAttempt,
    admin_login_attempt_start,
    admin_login_succeeded,
    device_cookie_value,
    device_key,
    retry_time_text,
)

LOGIN_THROTTLED_MESSAGE = "Too many failed login attempts. Try again after %(retry_at)s."


def _attempt_start(*, user_name: str, request: HttpRequest | None) -> LoginAttempt:
    """Count a password check; raise the form's ``throttled`` error over the limit."""
    if request is not None:
        addresses = ConnectionAddresses.from_request(request)
        device = device_key(cookie=request.COOKIES.get(DEVICE_COOKIE_NAME), user_name=user_name)
    else:
        addresses = ConnectionAddresses(peer=None, forwarded_for=None)
        device = None
    try:
        return admin_login_attempt_start(user_name=user_name, addresses=addresses, device=device)
    except AdminLoginThrottled as error:
        raise ValidationError(
            LOGIN_THROTTLED_MESSAGE,
            code="throttled",
            params={"retry_at": retry_time_text(error.retry_at)},
        ) from None


def _device_cookie_set(
    *, response: HttpResponse, request: HttpRequest, user: AbstractBaseUser, site_name: str
) -> None:
    """Set a new device cookie of ``user``, sent back only to the admin's pages."""
    response.set_cookie(
        DEVICE_COOKIE_NAME,
        device_cookie_value(user=user),
        max_age=settings.ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS,
        path=reverse("admin:index", current_app=site_name),
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )


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

    A wrong old password counts as a failed login of the signed-in user's name, or of the
    browser's device cookie. Over the limit the old password is not checked, so a client
    with an operator's session cannot use this page to guess the password.
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

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        # The new password revoked the browser's device cookie, so it gets a new one.
        response = super().form_valid(form)
        _device_cookie_set(
            response=response,
            request=self.request,
            user=form.user,
            site_name=self.request.current_app,
        )
        return response


class VizochokAdminSite(admin.AdminSite):
    """The default admin site, with the throttled login and password change forms."""

    login_form = ThrottledAdminAuthenticationForm

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().login(request, extra_context)
        # Django's LoginView redirects a POST only after the form logged the user in.
        if (
            request.method == "POST"
            and response.status_code == 302
            and request.user.is_authenticated
        ):
            _device_cookie_set(
                response=response,
                request=request,
                user=cast(AbstractBaseUser, request.user),
                site_name=self.name,
            )
        return response

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
