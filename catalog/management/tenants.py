"""Tenant lookup shared by the catalog management commands."""

from django.core.management.base import CommandError

from tenants.models import Tenant
from vizochok.text import is_storable_text


def command_tenant(slug: str) -> Tenant:
    """Return the tenant with ``slug``, or raise a CommandError naming it."""
    tenant = Tenant.objects.filter(slug=slug).first() if is_storable_text(slug) else None
    if tenant is None:
        raise CommandError(f"Tenant {slug!r} not found; check the slug.")
    return tenant
