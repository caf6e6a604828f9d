"""Abstract models shared by every app."""

from django.db import models


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class LoginFailureCount(models.Model):
    """Failed admin logins of one user name, client network or device cookie in the window.

    ``key`` is ``user:<hex>``, ``address:<hex>`` or ``device:<hex>``, an HMAC of the user
    name, of the client's network or of the device cookie's id (``vizochok.admin_login``),
    so neither a user name nor an address is stored. The window starts with the first
    failure and lasts ``ADMIN_LOGIN_WINDOW_SECONDS``.
    """

    key = models.CharField(max_length=80)
    failures = models.PositiveIntegerField()
    window_started_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["window_started_at"]
        constraints = [models.UniqueConstraint(fields=["key"], name="uniq_login_failure_key")]

    def __str__(self) -> str:
        return f"{self.key[:16]}… {self.failures} since {self.window_started_at:%Y-%m-%d %H:%M:%S}"
