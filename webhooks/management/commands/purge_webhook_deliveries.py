from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.management.tenants import command_tenant
from vizochok.text import count_noun
from webhooks.services import PURGE_MAX_AGE_DAYS, webhook_deliveries_purge


class Command(BaseCommand):
    help = (
        "Delete webhook delivery log rows older than --older-than-days. Only counts them "
        "unless --commit is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-days",
            type=int,
            required=True,
            help=f"Delete rows created more than this many days ago (1 to {PURGE_MAX_AGE_DAYS}).",
        )
        parser.add_argument("--tenant", help="Slug of one tenant; default: every tenant.")
        parser.add_argument(
            "--commit", action="store_true", help="Delete the rows; without it, only count them."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than_days"]
        if not 1 <= days <= PURGE_MAX_AGE_DAYS:
            raise CommandError(
                f"--older-than-days must be between 1 and {PURGE_MAX_AGE_DAYS}, got {days}."
            )
        # An empty --tenant, such as an unset shell variable, must not purge every tenant.
        tenant = command_tenant(options["tenant"]) if options["tenant"] is not None else None
        count = webhook_deliveries_purge(
            older_than=timedelta(days=days), commit=options["commit"], tenant=tenant
        )
        if options["commit"]:
            self.stdout.write(
                f"Deleted {count_noun(count, 'webhook delivery', 'webhook deliveries')} older "
                f"than {count_noun(days, 'day')}."
            )
        else:
            self.stdout.write(
                f"Dry run: {count_noun(count, 'webhook delivery', 'webhook deliveries')} "
                f"{'is' if count == 1 else 'are'} older than {count_noun(days, 'day')}. "
                f"Run again with --commit to delete {'it' if count == 1 else 'them'}."
            )
