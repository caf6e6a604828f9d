"""``manage.py rebuild_search_text``: renormalise a tenant's full-text documents."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from catalog.services import products_rebuild_search_text
from tenants.management.tenants import command_tenant
from vizochok.text import count_noun


class Command(BaseCommand):
    help = (
        "Recompute the full-text documents (search_title, search_body) of a tenant's "
        "products with the current text normalisation and stemmer. Run it for each tenant "
        "after a change to catalog/text.py; embeddings are not touched."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", required=True, help="Slug of the tenant.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = command_tenant(options["tenant"])
        changed = products_rebuild_search_text(tenant=tenant)
        self.stdout.write(
            f"Rebuilt the full-text documents of {count_noun(changed, 'product')} of tenant "
            f"{tenant.slug!r}. The other products' documents were already up to date."
        )
