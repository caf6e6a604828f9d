"""``manage.py reembed_catalog``: re-embed a tenant's stale products, e.g. after a model change."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from catalog.embeddings import EmbeddingError, get_embedder
from catalog.jobs import catalog_job_create_reembed
from catalog.management.progress import EmbeddingProgressBar
from catalog.selectors import products_pending_embedding
from catalog.services import products_embed_pending
from tenants.management.tenants import command_tenant
from vizochok.text import count_noun

# Each batch of embeddings is committed on its own, so an interrupt loses at most the batch
# under way. 130 is the exit status of a shell command that SIGINT stopped.
INTERRUPTED = (
    "Interrupted. The embeddings written before the interrupt are kept; run the command again "
    "to embed the rest."
)


class Command(BaseCommand):
    help = (
        "Re-embed a tenant's active products whose vector is missing, was computed from other "
        "content, or by another model than the configured one (EMBEDDING_BACKEND and "
        "EMBEDDING_MODEL). Without --commit, only print how many products that is."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", required=True, help="Slug of the tenant to re-embed.")
        parser.add_argument(
            "--commit",
            action="store_true",
            help="Re-embed the products. Without it the command changes nothing.",
        )
        parser.add_argument(
            "--async",
            action="store_true",
            dest="enqueue",
            help="With --commit: queue a catalog job for the workers and return at once, "
            "instead of embedding in this process.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["enqueue"] and not options["commit"]:
            raise CommandError(
                "--async requires --commit, so nothing was queued. Run again with --commit --async "
                "to queue a catalog job, or without --async for a dry run."
            )
        tenant = command_tenant(options["tenant"])
        embedder = get_embedder()
        model_name = embedder.model_name
        stale = products_pending_embedding(tenant=tenant, model_name=model_name).count()

        if not options["commit"]:
            self.stdout.write(
                f"Dry run: {count_noun(stale, 'product')} of tenant {tenant.slug!r} would be "
                f"re-embedded with {model_name!r}. Run again with --commit to re-embed "
                f"{'it' if stale == 1 else 'them'}."
            )
            return

        if options["enqueue"]:
            job = catalog_job_create_reembed(tenant=tenant, model_name=model_name)
            self.stdout.write(
                f"Queued job {job.public_id} ({job.status}) to re-embed "
                f"{count_noun(job.to_embed, 'product')} of tenant {tenant.slug!r} with "
                f"{model_name!r}."
            )
            return

        progress_bar = EmbeddingProgressBar(self.stderr)
        try:
            embedded = products_embed_pending(
                tenant=tenant, embedder=embedder, on_progress=progress_bar
            )
        except EmbeddingError as exc:
            left = products_pending_embedding(tenant=tenant, model_name=model_name).count()
            raise CommandError(
                f"Embedding failed: {exc.detail} {count_noun(left, 'product')} still "
                f"{'needs' if left == 1 else 'need'} an embedding; run the command again to "
                "embed them."
            ) from exc
        except KeyboardInterrupt:
            raise CommandError(INTERRUPTED, returncode=130) from None
        finally:
            progress_bar.close()
        self.stdout.write(
            f"Re-embedded {count_noun(embedded, 'product')} of tenant {tenant.slug!r} with "
            f"{model_name!r}."
        )
