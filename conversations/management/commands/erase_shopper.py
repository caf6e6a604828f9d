"""``manage.py erase_shopper``: delete one shopper's conversations and daily usage counts."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from conversations.retention import shopper_data_erase, shopper_user_id_problem
from tenants.management.tenants import command_tenant
from vizochok.exceptions import Conflict
from vizochok.text import count_noun


class Command(BaseCommand):
    help = (
        "Delete, in one transaction, every conversation of a tenant's shopper with their "
        "messages, and the shopper's daily usage counts, as DELETE "
        "/api/v1/admin/shoppers/{user_id} does. Fails and deletes nothing while a message of "
        "one of the conversations is being processed."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "user_id", help="The shopper's user id, as sent when the conversations started."
        )
        parser.add_argument("--tenant", required=True, help="Slug of the shopper's tenant.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = command_tenant(options["tenant"])
        user_id = options["user_id"]
        problem = shopper_user_id_problem(user_id)
        if problem is not None:
            raise CommandError(f"Invalid user id: {problem}")
        try:
            counts = shopper_data_erase(tenant=tenant, user_id=user_id)
        except Conflict as error:
            raise CommandError(f"{error.detail} Nothing was deleted.") from error
        self.stdout.write(
            f"Deleted {count_noun(counts.conversations, 'conversation')} with "
            f"{count_noun(counts.messages, 'message')}, and "
            f"{count_noun(counts.usage_rows, 'daily usage row')}."
        )
