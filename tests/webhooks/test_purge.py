"""The purge_webhook_deliveries retention command."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.webhooks.test_admin import delivery
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def aged(tenant, days: float) -> WebhookDelivery:
    row = delivery(tenant)
    WebhookDelivery.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - timedelta(days=days)
    )
    return row


def purge(*args: str) -> str:
    output = StringIO()
    call_command("purge_webhook_deliveries", *args, stdout=output)
    return output.getvalue()


def test_purge_without_commit_only_counts(tenant):
    aged(tenant, 40)
    aged(tenant, 31)
    aged(tenant, 1)

    output = purge("--older-than-days", "30")

    assert output == (
        "Dry run: 2 webhook deliveries are older than 30 days. "
        "Run again with --commit to delete them.\n"
    )
    assert WebhookDelivery.objects.count() == 3


def test_purge_with_commit_deletes_only_old_rows(tenant):
    aged(tenant, 40)
    aged(tenant, 31)
    recent = aged(tenant, 29)

    output = purge("--older-than-days", "30", "--commit")

    assert output.strip() == "Deleted 2 webhook deliveries older than 30 days."
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [recent.pk]


def test_purge_accepts_maximum_age(tenant):
    aged(tenant, 40)

    output = purge("--older-than-days", "36500", "--commit")

    assert output.strip() == "Deleted 0 webhook deliveries older than 36500 days."
    assert WebhookDelivery.objects.count() == 1


def test_purge_can_be_limited_to_one_tenant(tenant, other_tenant):
    aged(tenant, 40)
    kept = aged(other_tenant, 40)

    purge("--older-than-days", "30", "--tenant", "shop-a", "--commit")

    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [kept.pk]


def test_purge_deletes_in_batches(tenant, monkeypatch):
    monkeypatch.setattr("webhooks.services.PURGE_BATCH_SIZE", 2)
    for _ in range(5):
        aged(tenant, 10)

    output = purge("--older-than-days", "7", "--commit")

    assert "Deleted 5 " in output
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.parametrize(
    ("_case", "args", "message"),
    [
        (
            "zero days",
            ["--older-than-days", "0"],
            r"^--older-than-days must be between 1 and 36500, got 0\.$",
        ),
        # An age whose cutoff falls before the year 1 raised OverflowError.
        (
            "age past datetime's range",
            ["--older-than-days", "1000000"],
            r"^--older-than-days must be between 1 and 36500, got 1000000\.$",
        ),
        (
            "unknown tenant",
            ["--older-than-days", "3", "--tenant", "nope"],
            "^Tenant 'nope' not found; check the slug.$",
        ),
        # An unset shell variable in a cron line gives an empty slug.
        (
            "empty tenant",
            ["--older-than-days", "3", "--tenant", ""],
            "^Tenant '' not found; check the slug.$",
        ),
    ],
)
def test_purge_rejects_bad_arguments(tenant, _case, args, message):
    aged(tenant, 40)

    with pytest.raises(CommandError, match=message):
        purge(*args, "--commit")

    assert WebhookDelivery.objects.count() == 1


def test_purge_counts_one_delivery_and_one_day(tenant):
    aged(tenant, 2)

    dry_run = purge("--older-than-days", "1")
    deleted = purge("--older-than-days", "1", "--commit")

    assert dry_run == (
        "Dry run: 1 webhook delivery is older than 1 day. Run again with --commit to delete it.\n"
    )
    assert deleted == "Deleted 1 webhook delivery older than 1 day.\n"
    assert WebhookDelivery.objects.count() == 0
