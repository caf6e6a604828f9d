from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tenants.services import secrets_reencrypt
from vizochok.text import count_noun


class Command(BaseCommand):
    help = (
        "Encrypt every stored webhook and user token secret with the first key of "
        "VIZOCHOK_ENCRYPTION_KEYS. Run it after putting a new key first, before removing "
        "the old key. Exits with status 1 when a secret cannot be decrypted with any key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count the secrets that would be re-encrypted, and change nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        result = secrets_reencrypt(dry_run=dry_run)
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        current_verb = "uses" if result.already_current == 1 else "use"
        self.stdout.write(
            f"{verb} {count_noun(result.reencrypted, 'secret')}; "
            f"{result.already_current} already {current_verb} the first key."
        )
        if result.undecryptable:
            one = result.undecryptable == 1
            self.stderr.write(
                f"{count_noun(result.undecryptable, 'secret')} cannot be decrypted with any "
                f"configured key and {'was' if one else 'were'} left unchanged (see the "
                "tenants.secret.undecryptable log lines). Add the key that encrypted "
                f"{'it' if one else 'them'} to VIZOCHOK_ENCRYPTION_KEYS (or, while that is "
                "unset, the old DJANGO_SECRET_KEY to DJANGO_SECRET_KEY_FALLBACKS), or set new "
                "secrets for those tenants with rotate_webhook_secret --overlap-hours 0 and the "
                "admin action 'Generate a new user token secret'."
            )
            raise SystemExit(1)
