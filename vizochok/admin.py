"""The admin site's login form, which limits failed logins (``vizochok.admin_login``)."""

from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from conversations.client_address import ConnectionAddresses
from vizochok.admin_login import (
    AdminLoginThrottled,
    admin_login_attempt_start,
    admin_login_succeeded,
    retry_time_text,
)

LOGIN_THROTTLED_MESSAGE = "Too many failed login attempts. Try again after %(retry_at)s."


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
        if self.request is not None:
            addresses = ConnectionAddresses.from_request(self.request)
        else:
            addresses = ConnectionAddresses(peer=None, forwarded_for=None)
        try:
            attempt = admin_login_attempt_start(user_name=user_name, addresses=addresses)
        except AdminLoginThrottled as error:
            raise ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"retry_at": retry_time_text(error.retry_at)},
            ) from None
        cleaned_data = super().clean()
        admin_login_succeeded(attempt=attempt)
        return cleaned_data


admin.site.login_form = ThrottledAdminAuthenticationForm
