import getpass
import sys
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.management.tenants import command_tenant
from tenants.services import (
    MAX_ROTATION_OVERLAP_HOURS,
    webhook_secret_set,
    webhook_settings_get_or_create,
)
from vizochok.exceptions import InvalidInput


class Command(BaseCommand):
    help = (
        "Give a tenant a new webhook signing secret and print it once. With --overlap-hours, "
        "requests carry signatures made with both secrets until the overlap ends, so the "
        "merchant can switch without failed requests."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Slug of the tenant.")
        parser.add_argument(
            "--overlap-hours",
            type=float,
            default=24.0,
            help="Hours during which both secrets sign requests (default 24; 0 replaces "
            "the secret at once, for a leaked secret).",
        )
        parser.add_argument(
            "--secret-stdin",
            action="store_true",
            help="Read a custom secret (24 to 200 characters on one line) from standard input "
            "instead of generating one.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = command_tenant(options["slug"])
        overlap_hours = options["overlap_hours"]
        if not 0 <= overlap_hours <= MAX_ROTATION_OVERLAP_HOURS:
            raise CommandError(
                f"--overlap-hours must be between 0 and {MAX_ROTATION_OVERLAP_HOURS}, "
                f"got {overlap_hours!r}."
            )
        custom_secret = self._read_custom_secret() if options["secret_stdin"] else None
        if custom_secret == "":
            raise CommandError(
                "No secret on standard input: pipe the custom secret in, for example "
                '`printf %s "$SECRET" | python manage.py rotate_webhook_secret SLUG '
                "--secret-stdin`. Nothing was changed."
            )
        overlap = timedelta(hours=options["overlap_hours"])
        webhook_settings = webhook_settings_get_or_create(tenant=tenant)
        # Read before the change and used only in the message, so a concurrent change only makes
        # the message stale.
        had_secret = webhook_settings.has_secret
        try:
            secret = webhook_secret_set(
                webhook_settings=webhook_settings, secret=custom_secret, overlap=overlap
            )
        except InvalidInput as error:
            raise CommandError(error.extra["fields"]["secret"][0]) from error
        if custom_secret is None:
            self.stdout.write(f"New webhook signing secret (shown only now): {secret}")
        # A tenant without a secret has nothing to overlap with: the new secret applies at once.
        promote_at = webhook_settings.next_secret_promote_at
        if webhook_settings.next_secret and promote_at is not None:
            self.stdout.write(
                f"Both secrets sign requests until {promote_at:%Y-%m-%d %H:%M} UTC. Switch your "
                "verifier to the new secret before then."
            )
        elif had_secret:
            self.stdout.write("The new secret is in use now; the old one no longer signs.")
        else:
            self.stdout.write("The new secret is in use now; the tenant had no secret before.")

    def _read_custom_secret(self) -> str:
        # On a terminal, read() would wait for end of file without a prompt and echo the
        # secret, so the secret is typed at a prompt that does not echo it.
        if sys.stdin.isatty():
            return getpass.getpass("Custom webhook secret (not shown): ")
        return sys.stdin.read().strip("\n")
