"""Tenant lookup shared by the management commands."""

from django.core.management.base import CommandError

from tenants.models import Tenant
from vizochok.text import is_storable_text


def command_tenant(slug: str) -> Tenant:
    """Return the tenant with ``slug``, or raise a CommandError naming it.

    A command line's bytes that are not UTF-8 reach Python as unpaired surrogates, which
    the database driver cannot encode, so such a slug is not found without a query.
    """
    tenant = Tenant.objects.filter(slug=slug).first() if is_storable_text(slug) else None
    if tenant is None:
        raise CommandError(f"Tenant {slug!r} not found; check the slug.")
    return tenant
