"""Pruning of idle conversations: the service, the periodic task and the command."""

import threading
import time
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from catalog.models import CatalogJob
from conversations import retention, tasks
from conversations.leases import lease_duration, turn_lease_acquire
from conversations.models import Conversation, Message, TokenUsage, UserDailyUsage
from conversations.retention import DeletedCounts, conversations_prune
from tests.factories import ConversationFactory, MessageFactory, ProductFactory
from vizochok.exceptions import NotFound

pytestmark = pytest.mark.django_db

RETENTION = timedelta(days=30)


def _conversation(tenant, *, idle_days: float, messages: int = 2, **fields) -> Conversation:
    """Create a conversation whose row and messages were last written ``idle_days`` ago."""
    conversation = ConversationFactory(tenant=tenant, **fields)
    for _ in range(messages):
        MessageFactory(tenant=tenant, conversation=conversation, role=Message.Role.USER)
    written_at = timezone.now() - timedelta(days=idle_days)
    Conversation.objects.filter(pk=conversation.pk).update(
        created_at=written_at, updated_at=written_at
    )
    Message.objects.filter(conversation=conversation).update(created_at=written_at)
    return conversation


def _kept_ids() -> set[str]:
    return set(Conversation.objects.values_list("public_id", flat=True))


def test_prune_deletes_idle_conversations_and_messages(tenant, caplog):
    caplog.set_level("INFO", logger="conversations.retention")
    old = _conversation(tenant, idle_days=31, messages=3)
    recent = _conversation(tenant, idle_days=29)

    counts = conversations_prune(older_than=RETENTION)

    assert counts == DeletedCounts(conversations=1, messages=3, usage_rows=0)
    assert _kept_ids() == {recent.public_id}
    assert not Message.objects.filter(conversation_id=old.pk).exists()
    assert Message.objects.filter(conversation=recent).count() == 2
    records = [record for record in caplog.records if record.msg == "conversations.pruned"]
    assert len(records) == 1
    assert records[0].conversations == 1
    assert records[0].messages == 3
    assert records[0].usage_rows == 0
    assert records[0].tenant_id is None


def test_prune_keeps_conversation_with_recent_message(tenant):
    # A worker that stopped mid-turn saved the shopper's message but never wrote the row.
    conversation = _conversation(tenant, idle_days=40)
    MessageFactory(tenant=tenant, conversation=conversation, role=Message.Role.USER)
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - timedelta(days=40)
    )

    counts = conversations_prune(older_than=RETENTION)

    assert counts == DeletedCounts()
    assert _kept_ids() == {conversation.public_id}
    assert Message.objects.filter(conversation=conversation).count() == 3


def test_prune_keeps_conversation_with_turn_in_progress(tenant):
    busy = _conversation(tenant, idle_days=40)
    Conversation.objects.filter(pk=busy.pk).update(turn_started_at=timezone.now())
    # A lease older than its duration was left by a stopped worker: no turn runs.
    abandoned = _conversation(tenant, idle_days=40)
    Conversation.objects.filter(pk=abandoned.pk).update(
        turn_started_at=timezone.now() - lease_duration() - timedelta(seconds=1)
    )

    counts = conversations_prune(older_than=RETENTION)

    assert counts == DeletedCounts(conversations=1, messages=2, usage_rows=0)
    assert _kept_ids() == {busy.public_id}
    assert Message.objects.filter(conversation=busy).count() == 2


def test_prune_deletes_in_batches(tenant, monkeypatch):
    monkeypatch.setattr(retention, "PRUNE_BATCH_SIZE", 2)
    for _ in range(5):
        _conversation(tenant, idle_days=31, messages=1)
    kept = _conversation(tenant, idle_days=1)

    counts = conversations_prune(older_than=RETENTION)

    assert counts == DeletedCounts(conversations=5, messages=5, usage_rows=0)
    assert _kept_ids() == {kept.public_id}


def test_prune_of_one_tenant_keeps_other_tenants(tenant, other_tenant, caplog):
    caplog.set_level("INFO", logger="conversations.retention")
    own = _conversation(tenant, idle_days=31)
    other = _conversation(other_tenant, idle_days=31)
    old_day = timezone.now().date() - timedelta(days=40)
    UserDailyUsage.objects.create(tenant=tenant, identity="user:u1", date=old_day, messages=4)
    UserDailyUsage.objects.create(tenant=other_tenant, identity="user:u1", date=old_day)

    counts = conversations_prune(older_than=RETENTION, tenant=tenant)

    assert counts == DeletedCounts(conversations=1, messages=2, usage_rows=1)
    assert _kept_ids() == {other.public_id}
    assert not Conversation.objects.filter(pk=own.pk).exists()
    assert list(UserDailyUsage.objects.values_list("tenant_id", flat=True)) == [other_tenant.pk]
    records = [record for record in caplog.records if record.msg == "conversations.pruned"]
    assert records[0].tenant_id == tenant.pk


def test_prune_deletes_old_usage_rows_only(tenant):
    today = timezone.now().date()
    for days_ago in (31, 30, 0):
        UserDailyUsage.objects.create(
            tenant=tenant, identity="key:1", date=today - timedelta(days=days_ago)
        )

    counts = conversations_prune(older_than=RETENTION)

    assert counts == DeletedCounts(conversations=0, messages=0, usage_rows=1)
    assert sorted(UserDailyUsage.objects.values_list("date", flat=True)) == [
        today - timedelta(days=30),
        today,
    ]


def test_prune_deletes_usage_rows_in_batches(tenant, monkeypatch):
    monkeypatch.setattr(retention, "PRUNE_BATCH_SIZE", 2)
    old_date = timezone.now().date() - timedelta(days=40)
    for index in range(5):
        UserDailyUsage.objects.create(tenant=tenant, identity=f"user:{index}", date=old_date)

    counts = conversations_prune(older_than=RETENTION)

    assert counts == DeletedCounts(conversations=0, messages=0, usage_rows=5)
    assert UserDailyUsage.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_prune_skips_usage_rows_an_erasure_locked(tenant):
    old_date = timezone.now().date() - timedelta(days=40)
    locked_row = UserDailyUsage.objects.create(tenant=tenant, identity="user:a", date=old_date)
    UserDailyUsage.objects.create(tenant=tenant, identity="user:b", date=old_date)
    row_locked = threading.Event()
    prune_done = threading.Event()

    def hold_lock() -> None:
        # As an erasure of the shopper "a" does until it commits.
        try:
            with transaction.atomic():
                list(UserDailyUsage.objects.filter(pk=locked_row.pk).select_for_update())
                row_locked.set()
                prune_done.wait(timeout=10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert row_locked.wait(timeout=10)
    try:
        started = time.monotonic()
        counts = conversations_prune(older_than=RETENTION)
        elapsed = time.monotonic() - started
    finally:
        prune_done.set()
        holder.join(timeout=30)

    assert counts == DeletedCounts(conversations=0, messages=0, usage_rows=1)
    assert elapsed < 5
    assert list(UserDailyUsage.objects.values_list("identity", flat=True)) == ["user:a"]


def test_prune_leaves_other_tables_alone(tenant):
    _conversation(tenant, idle_days=31)
    product = ProductFactory(tenant=tenant)
    job = CatalogJob.objects.create(tenant=tenant, source=CatalogJob.Source.API)
    TokenUsage.objects.create(tenant=tenant, date=timezone.now().date() - timedelta(days=400))

    conversations_prune(older_than=RETENTION)

    assert Conversation.objects.count() == 0
    assert list(tenant.products.values_list("pk", flat=True)) == [product.pk]
    assert list(tenant.catalog_jobs.values_list("pk", flat=True)) == [job.pk]
    assert TokenUsage.objects.filter(tenant=tenant).count() == 1


@override_settings(CONVERSATION_RETENTION_DAYS=30)
def test_prune_task_uses_the_retention_setting(tenant):
    _conversation(tenant, idle_days=31)
    recent = _conversation(tenant, idle_days=29)

    async_to_sync(tasks.conversations_prune_task.func)(timestamp=0)

    assert _kept_ids() == {recent.public_id}


@override_settings(CONVERSATION_RETENTION_DAYS=0)
def test_prune_task_keeps_everything_by_default(tenant):
    old = _conversation(tenant, idle_days=10_000)

    async_to_sync(tasks.conversations_prune_task.func)(timestamp=0)

    assert _kept_ids() == {old.public_id}
    assert Message.objects.count() == 2


def test_prune_task_runs_daily_on_the_catalog_queue():
    task = tasks.conversations_prune_task

    assert task.name == "conversations_prune"
    assert task.queue == "catalog"
    assert task.queueing_lock == "conversations_prune"


def test_command_deletes_with_days_and_tenant(tenant, other_tenant, capsys):
    _conversation(tenant, idle_days=8, messages=1)
    kept = _conversation(tenant, idle_days=6)
    other = _conversation(other_tenant, idle_days=8)

    call_command("prune_conversations", "--days", "7", "--tenant", "shop-a")

    assert _kept_ids() == {kept.public_id, other.public_id}
    assert capsys.readouterr().out == (
        "Deleted 1 conversation with 1 message whose last activity was more than 7 days "
        "ago, and 0 daily usage rows.\n"
    )


@override_settings(CONVERSATION_RETENTION_DAYS=0)
def test_command_without_days_needs_a_retention(tenant):
    old = _conversation(tenant, idle_days=400)

    with pytest.raises(CommandError) as error:
        call_command("prune_conversations")

    assert str(error.value) == (
        "CONVERSATION_RETENTION_DAYS is 0, which keeps every conversation. Give --days to "
        "delete old conversations anyway."
    )
    assert _kept_ids() == {old.public_id}


@override_settings(CONVERSATION_RETENTION_DAYS=30)
def test_command_defaults_to_the_retention(tenant, capsys):
    _conversation(tenant, idle_days=31)

    call_command("prune_conversations")

    assert Conversation.objects.count() == 0
    assert "more than 30 days ago" in capsys.readouterr().out


@pytest.mark.parametrize("days", ["0", "-1", "36501"])
def test_command_rejects_days_out_of_range(tenant, days):
    old = _conversation(tenant, idle_days=400)

    with pytest.raises(CommandError) as error:
        call_command("prune_conversations", "--days", days)

    assert str(error.value) == f"--days must be between 1 and 36500, got {days}."
    assert _kept_ids() == {old.public_id}


def test_command_rejects_unknown_tenant(tenant):
    old = _conversation(tenant, idle_days=400)

    with pytest.raises(CommandError) as error:
        call_command("prune_conversations", "--days", "1", "--tenant", "nope")

    assert str(error.value) == "Tenant 'nope' not found; check the slug."
    assert _kept_ids() == {old.public_id}


def test_command_rejects_empty_tenant(tenant, caplog):
    caplog.set_level("INFO", logger="conversations.retention")
    old = _conversation(tenant, idle_days=400)

    with pytest.raises(CommandError) as error:
        call_command("prune_conversations", "--days", "1", "--tenant", "")

    assert str(error.value) == "Tenant '' not found; check the slug."
    assert _kept_ids() == {old.public_id}
    logged = [record.getMessage() for record in caplog.records]
    assert "conversations.pruned" not in logged


@pytest.mark.django_db(transaction=True)
def test_erase_blocks_a_turn_that_starts_meanwhile(tenant, monkeypatch):
    conversation = ConversationFactory(tenant=tenant, user_id="u-1", session_id="u-1")
    locked = threading.Event()
    lease_requested = threading.Event()
    check = retention._reject_turn_in_progress

    def check_after_a_lease_request(conversations):
        # The rows are locked now: let a turn try to take the lease, then go on.
        locked.set()
        lease_requested.wait(timeout=10)
        time.sleep(0.3)
        check(conversations)

    monkeypatch.setattr(retention, "_reject_turn_in_progress", check_after_a_lease_request)
    results: dict[str, object] = {}

    def erase() -> None:
        try:
            results["counts"] = retention.shopper_data_erase(tenant=tenant, user_id="u-1")
        finally:
            connection.close()

    def take_lease() -> None:
        try:
            locked.wait(timeout=10)
            lease_requested.set()
            results["lease"] = turn_lease_acquire(conversation=conversation)
        except NotFound as error:
            results["lease_error"] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=erase), threading.Thread(target=take_lease)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert results.get("counts") == DeletedCounts(conversations=1, messages=0, usage_rows=0)
    assert "lease" not in results
    assert isinstance(results.get("lease_error"), NotFound)
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
