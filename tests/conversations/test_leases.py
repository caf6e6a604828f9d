import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from conversations.leases import LeaseLost, lease_duration, turn_lease_acquire
from conversations.models import Conversation


@pytest.mark.django_db
def test_lease_is_exclusive_until_released(conversation):
    first = turn_lease_acquire(conversation=conversation)

    assert first is not None
    assert turn_lease_acquire(conversation=conversation) is None
    first.release()
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at is None
    assert turn_lease_acquire(conversation=conversation) is not None


@pytest.mark.django_db
def test_expired_lease_is_taken_over(conversation):
    stale = timezone.now() - lease_duration() - timedelta(seconds=1)
    Conversation.objects.filter(pk=conversation.pk).update(turn_started_at=stale)

    lease = turn_lease_acquire(conversation=conversation)

    assert lease is not None
    assert lease.started_at > stale


@pytest.mark.parametrize(
    ("turn_timeout", "expected"),
    [
        (120, timedelta(minutes=5)),
        (30, timedelta(minutes=5)),
        (600, timedelta(seconds=780)),
        (600.5, timedelta(seconds=780.5)),
        (86_400, timedelta(seconds=86_580)),
    ],
)
def test_lease_outlasts_the_agent_turn_limit(settings, turn_timeout, expected):
    settings.AGENT_TURN_TIMEOUT_SECONDS = turn_timeout
    settings.WEBHOOK_RETRY_DELAY_SECONDS = 1

    assert lease_duration() == expected


@pytest.mark.parametrize(("delay", "expected"), [(0, 300), (1, 300), (2, 302), (10, 318)])
def test_lease_outlasts_longer_retry_delays(settings, delay, expected):
    # Two webhook calls of 60 s plus the delay each, after a turn of 120 s, and 58 s margin.
    settings.AGENT_TURN_TIMEOUT_SECONDS = 120
    settings.WEBHOOK_RETRY_DELAY_SECONDS = delay

    assert lease_duration() == timedelta(seconds=expected)


@pytest.mark.django_db
def test_long_turn_limit_keeps_the_lease(conversation, settings):
    # A turn of 10 minutes may still be running after 12, so its lease must hold.
    settings.AGENT_TURN_TIMEOUT_SECONDS = 600
    started = timezone.now() - timedelta(minutes=12)
    Conversation.objects.filter(pk=conversation.pk).update(turn_started_at=started)

    assert turn_lease_acquire(conversation=conversation) is None
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at == started


@pytest.mark.django_db
def test_lease_taken_at_longest_turn_limit(conversation, settings):
    settings.AGENT_TURN_TIMEOUT_SECONDS = settings.AGENT_MAX_TURN_TIMEOUT_SECONDS

    lease = turn_lease_acquire(conversation=conversation)

    assert lease is not None
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at == lease.started_at


@pytest.mark.django_db
def test_recent_lease_is_not_taken_over(conversation):
    recent = timezone.now() - lease_duration() + timedelta(seconds=30)
    Conversation.objects.filter(pk=conversation.pk).update(turn_started_at=recent)

    assert turn_lease_acquire(conversation=conversation) is None
    assert Conversation.objects.get(pk=conversation.pk).turn_started_at == recent


@pytest.mark.django_db
def test_release_after_takeover_keeps_the_new_lease(conversation):
    old = turn_lease_acquire(conversation=conversation)
    stale = timezone.now() - lease_duration() - timedelta(seconds=1)
    Conversation.objects.filter(pk=conversation.pk).update(turn_started_at=stale)
    new = turn_lease_acquire(conversation=conversation)

    old.release()

    assert Conversation.objects.get(pk=conversation.pk).turn_started_at == new.started_at


@pytest.mark.django_db
def test_save_with_a_lost_lease_writes_nothing(conversation):
    lease = turn_lease_acquire(conversation=conversation)
    lease.release()
    conversation.state = {"shown": []}

    with pytest.raises(LeaseLost):
        lease.save(conversation, ["state"])

    assert Conversation.objects.get(pk=conversation.pk).state == {}


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_get_one_lease(tenant):
    conversation = Conversation.objects.create(tenant=tenant, store_id="store-1", session_id="s-1")
    workers = 8
    barrier = threading.Barrier(workers)
    results: list[bool] = []

    def take() -> None:
        try:
            barrier.wait()
            results.append(turn_lease_acquire(conversation=conversation) is not None)
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * (workers - 1) + [True]
