from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from tenants.services import tenant_create
from vizochok.exceptions import InvalidInput


class Command(BaseCommand):
    help = (
        "Create a tenant with a public (pk_) key, a secret (sk_) key, a webhook signing secret "
        "and a user token secret, and print them once: they are stored only as hashes or never "
        "shown again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Unique short name, such as 'atb-kyiv'.")
        parser.add_argument("--name", help="Display name; defaults to the slug.")

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str = options["slug"]
        try:
            created = tenant_create(name=options["name"] or slug, slug=slug)
        except IntegrityError as error:
            raise CommandError(f"A tenant with slug {slug!r} already exists.") from error
        except InvalidInput as error:
            # Each message ends with a full stop, so a space separates the fields.
            problems = " ".join(
                f"{field}: {' '.join(messages)}"
                for field, messages in error.extra["fields"].items()
            )
            raise CommandError(f"Invalid tenant: {problems}") from error
        self.stdout.write(f"Created tenant {created.tenant.name!r} (slug {slug}).")
        self.stdout.write("Copy these now; they are not shown again:")
        self.stdout.write(f"  public key (widget, scope chat):      {created.public_key.raw_key}")
        self.stdout.write(f"  secret key (server, chat + catalog):  {created.secret_key.raw_key}")
        self.stdout.write(f"  webhook signing secret:               {created.webhook_secret}")
        self.stdout.write(f"  user token secret (signs user ids):   {created.user_token_secret}")
