"""``manage.py recount_search_terms``: count a tenant's full-text lexemes again."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from catalog.services import search_documents_rebuild, term_counts_recount
from tenants.management.tenants import command_tenant
from tenants.models import Tenant
from vizochok.text import count_noun


class Command(BaseCommand):
    help = (
        "Count again how many active products contain each full-text lexeme (the document "
        "frequencies of search), and copy the products' search columns into the search "
        "documents again, for one tenant or all. Triggers keep both on every write, so run "
        "this only after writes that fired no trigger, such as a restore with triggers "
        "disabled. While a tenant's search documents are copied, product writes wait."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--tenant", help="Slug of the tenant. Without it, every tenant is counted."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["tenant"] is not None:
            tenants = [command_tenant(options["tenant"])]
        else:
            tenants = list(Tenant.objects.order_by("pk"))
        for tenant in tenants:
            copied = search_documents_rebuild(tenant=tenant)
            counted = term_counts_recount(tenant=tenant)
            self.stdout.write(
                f"Counted {count_noun(counted, 'lexeme')} and copied "
                f"{count_noun(copied, 'search document')} of tenant {tenant.slug!r}."
            )
