"""Periodic tasks of the conversations app, found by procrastinate when Django starts.

They run on the catalog queue, because ``manage.py procrastinate worker --queues catalog``
is the worker every deployment already runs.
"""

from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from procrastinate.contrib.django import app

from catalog.jobs import CATALOG_QUEUE
from conversations.retention import conversations_prune


@app.periodic(cron=settings.CONVERSATION_PRUNE_CRON, periodic_id="conversations_prune")
@app.task(name="conversations_prune", queue=CATALOG_QUEUE, queueing_lock="conversations_prune")
async def conversations_prune_task(timestamp: int) -> None:
    """Delete conversations idle for more than ``CONVERSATION_RETENTION_DAYS``."""
    if settings.CONVERSATION_RETENTION_DAYS <= 0:
        return
    older_than = timedelta(days=settings.CONVERSATION_RETENTION_DAYS)
    await sync_to_async(conversations_prune)(older_than=older_than)
