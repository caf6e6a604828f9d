"""``manage.py import_catalog``: load a tenant's catalog from a file or product feed.

The file is CSV, JSON, JSON Lines, a YML feed or a Google Merchant Center feed.
"""

from argparse import ArgumentParser, ArgumentTypeError
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from catalog.importing import (
    ImportFileError,
    ImportFormat,
    ImportReport,
    catalog_import,
    catalog_import_enqueue,
    parse_field_map,
)
from catalog.management.progress import EmbeddingProgressBar
from catalog.models import CatalogJob
from tenants.management.tenants import command_tenant
from tenants.models import Tenant
from vizochok.text import count_noun, escape_unstorable_text


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if number < 1:
        raise ArgumentTypeError(f"must be at least 1, got {number}")
    return number


# Products are written and embeddings committed batch by batch, so an interrupt loses at
# most the batch under way. 130 is the exit status of a shell command that SIGINT stopped.
INTERRUPTED = (
    "Interrupted. The products and embeddings written before the interrupt are kept; run the "
    "import again to finish it."
)


class Command(BaseCommand):
    help = (
        "Import products into a tenant's catalog from a CSV (UTF-8, header row), JSON (an "
        'array or an object with a "products" array) or JSON Lines file, then embed the '
        "products whose content is new or changed (with --async, a catalog worker embeds "
        "them). A YML (yml_catalog) or Google Merchant Center (RSS or Atom) XML feed is read "
        "too; feed prices and availability are ignored. Without --async, the tenant's "
        "products still pending from earlier runs are embedded too. Invalid rows are "
        "reported with their line number and skipped."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("path", type=Path, help="Catalog file to import.")
        parser.add_argument("--tenant", required=True, help="Slug of the tenant to import into.")
        parser.add_argument(
            "--format",
            choices=[item.value for item in ImportFormat],
            help="File format. Default: taken from the file extension (.csv, .json, .jsonl "
            "or .ndjson), or for .xml from the root element (yml_catalog is yml; rss and Atom "
            "feed are google).",
        )
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="FIELD=SOURCE",
            help="Read product field FIELD from the file's column or key SOURCE, "
            "e.g. --map name=title --map sku=id. Repeat for more fields.",
        )
        embedding = parser.add_mutually_exclusive_group()
        embedding.add_argument(
            "--no-embed",
            action="store_false",
            dest="embed",
            help="Save the products without computing embeddings; a later run without this "
            "option embeds them.",
        )
        embedding.add_argument(
            "--async",
            action="store_true",
            dest="enqueue",
            help="Save the products, then leave the embedding to a catalog worker: the "
            "command prints the job id and returns without waiting.",
        )
        parser.add_argument(
            "--batch-size",
            type=_positive_int,
            metavar="N",
            help="Products per embedding batch. Default: the EMBEDDING_BATCH_SIZE setting, "
            "which workers always use.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] is not None and not (options["embed"] and not options["enqueue"]):
            raise CommandError(
                "--batch-size sets the batches that this command embeds, so it cannot be "
                "combined with --no-embed or --async (a worker uses EMBEDDING_BATCH_SIZE)."
            )
        tenant = command_tenant(options["tenant"])

        if options["enqueue"]:
            self._import_enqueue(tenant=tenant, options=options)
            return

        progress_bar = EmbeddingProgressBar(self.stderr)
        try:
            report = catalog_import(
                tenant=tenant,
                path=options["path"],
                file_format=ImportFormat(options["format"]) if options["format"] else None,
                field_map=parse_field_map(options["map"]),
                embed=options["embed"],
                embedding_batch_size=options["batch_size"],
                on_embedding_progress=progress_bar,
            )
        except ImportFileError as exc:
            raise CommandError(exc.detail) from exc
        except KeyboardInterrupt:
            raise CommandError(INTERRUPTED, returncode=130) from None
        finally:
            progress_bar.close()

        self._write_report(report, path=options["path"], tenant=tenant, embed=options["embed"])
        if report.embedding_error:
            raise CommandError(
                f"Embedding failed: {report.embedding_error} The products are saved, and "
                f"{report.pending_embedding} of them still {_needs(report.pending_embedding)} an "
                "embedding; run the import again to embed them."
            )

    def _import_enqueue(self, *, tenant: Tenant, options: dict[str, Any]) -> None:
        try:
            report, job = catalog_import_enqueue(
                tenant=tenant,
                path=options["path"],
                file_format=ImportFormat(options["format"]) if options["format"] else None,
                field_map=parse_field_map(options["map"]),
            )
        except ImportFileError as exc:
            raise CommandError(exc.detail) from exc
        self._write_report(report, path=options["path"], tenant=tenant, embed=False, job=job)

    def _write_report(
        self,
        report: ImportReport,
        *,
        path: Path,
        tenant: Tenant,
        embed: bool,
        job: CatalogJob | None = None,
    ) -> None:
        for rejected in report.rejected:
            self.stderr.write(f"Line {rejected.line}: rejected. {rejected.reason}")
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(warning))

        # A file name's bytes that are not UTF-8 reach Python as unpaired surrogates, which
        # a UTF-8 stdout with strict errors cannot write.
        name = escape_unstorable_text(path.name)
        self.stdout.write(
            f"Imported {name} into tenant {tenant.slug!r}: {count_noun(report.rows, 'row')}."
        )
        self.stdout.write(
            f"Created: {report.created}, updated: {report.updated}, "
            f"unchanged: {report.unchanged}, rejected: {len(report.rejected)}."
        )
        if report.embedding_error:
            return
        if job is not None:
            self.stdout.write(
                f"Embedding job {job.public_id} ({job.status}): "
                f"{count_noun(job.to_embed, 'product')} to embed on a catalog worker."
            )
        elif embed:
            self.stdout.write(f"Embedded: {report.embedded}.")
        else:
            self.stdout.write(
                "Embedding skipped (--no-embed): "
                f"{count_noun(report.pending_embedding, 'product')} still "
                f"{_needs(report.pending_embedding)} an embedding."
            )


def _needs(count: int) -> str:
    return "needs" if count == 1 else "need"
