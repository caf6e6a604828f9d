"""``manage.py prune_catalog_jobs``: delete old finished catalog jobs and queue rows."""

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from procrastinate.contrib.django import app as queue_app

from catalog.jobs import catalog_jobs_prune, catalog_queue_prune_arguments
from vizochok.text import count_noun


class Command(BaseCommand):
    help = (
        "Delete the catalog jobs of every tenant that finished (complete or failed) more than "
        "DAYS days ago, and the catalog queue's rows of jobs that finished as long ago. "
        "Pending and embedding jobs are kept. The workers run the same pruning daily with "
        "CATALOG_JOB_RETENTION_DAYS."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            help="Age in days of the finished jobs to delete (default: "
            "CATALOG_JOB_RETENTION_DAYS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is None:
            days = settings.CATALOG_JOB_RETENTION_DAYS
            if days < 1:
                raise CommandError(
                    f"CATALOG_JOB_RETENTION_DAYS is {days}, which keeps every job. "
                    "Give --days to delete old jobs anyway."
                )
        maximum = settings.CATALOG_JOB_MAX_RETENTION_DAYS
        if not 1 <= days <= maximum:
            raise CommandError(f"--days must be between 1 and {maximum}, got {days}.")
        older_than = timedelta(days=days)
        async_to_sync(queue_app.job_manager.delete_old_jobs)(
            **catalog_queue_prune_arguments(older_than=older_than)
        )
        deleted = catalog_jobs_prune(older_than=older_than)
        self.stdout.write(
            f"Deleted {count_noun(deleted, 'catalog job')}, and the catalog queue's rows of "
            f"jobs, that finished more than {count_noun(days, 'day')} ago."
        )
