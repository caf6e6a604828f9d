"""``manage.py prune_conversations``: delete conversations idle for longer than the retention."""

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from conversations.retention import conversations_prune
from tenants.management.tenants import command_tenant
from vizochok.text import count_noun


class Command(BaseCommand):
    help = (
        "Delete the conversations, with their messages, whose last activity is more than DAYS "
        "days ago, and the per-user daily usage rows of days before then. Conversations with "
        "a message being processed are kept. The workers run the same pruning daily with "
        "CONVERSATION_RETENTION_DAYS."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            help="Days since the last activity of the conversations to delete (default: "
            "CONVERSATION_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--tenant", help="Slug of the only tenant to prune (default: every tenant)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is None:
            days = settings.CONVERSATION_RETENTION_DAYS
            if days < 1:
                raise CommandError(
                    f"CONVERSATION_RETENTION_DAYS is {days}, which keeps every conversation. "
                    "Give --days to delete old conversations anyway."
                )
        maximum = settings.MAX_AGE_DAYS
        if not 1 <= days <= maximum:
            raise CommandError(f"--days must be between 1 and {maximum}, got {days}.")
        # An empty --tenant, such as an unset shell variable, must not prune every tenant.
        tenant = command_tenant(options["tenant"]) if options["tenant"] is not None else None
        counts = conversations_prune(older_than=timedelta(days=days), tenant=tenant)
        self.stdout.write(
            f"Deleted {count_noun(counts.conversations, 'conversation')} with "
            f"{count_noun(counts.messages, 'message')} whose last activity was more than "
            f"{count_noun(days, 'day')} ago, and "
            f"{count_noun(counts.usage_rows, 'daily usage row')}."
        )
