"""Tenant lookup shared by the catalog management commands."""

from django.core.management.base import CommandError

from tenants.models import Tenant


def _is_storable(text: str) -> bool:
    # Bytes of a command line that are not UTF-8 reach Python as unpaired surrogates, which
    # the database driver cannot encode, and PostgreSQL text cannot contain NUL.
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def command_tenant(slug: str) -> Tenant:
    """Return the tenant with ``slug``, or raise a CommandError naming it."""
    tenant = Tenant.objects.filter(slug=slug).first() if _is_storable(slug) else None
    if tenant is None:
        raise CommandError(f"Tenant {slug!r} not found; check the slug.")
    return tenant
