from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.management.tenants import command_tenant
from webhooks.services import webhook_deliveries_purge


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
            help="Delete rows created more than this many days ago (at least 1).",
        )
        parser.add_argument("--tenant", help="Slug of one tenant; default: every tenant.")
        parser.add_argument(
            "--commit", action="store_true", help="Delete the rows; without it, only count them."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than_days"]
        if days < 1:
            raise CommandError("--older-than-days must be at least 1.")
        tenant = command_tenant(options["tenant"]) if options["tenant"] else None
        count = webhook_deliveries_purge(
            older_than=timedelta(days=days), commit=options["commit"], tenant=tenant
        )
        if options["commit"]:
            self.stdout.write(f"Deleted {count} webhook deliveries older than {days} days.")
        else:
            self.stdout.write(
                f"Dry run: {count} webhook deliveries are older than {days} days. "
                "Run again with --commit to delete them."
            )
