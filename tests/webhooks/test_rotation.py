"""Secret rotation under load: the merchant switches secrets mid-load without failures.

The load is products calls through the real dispatcher, from a few threads, against the
reference merchant, which verifies every signature. The merchant starts with the old
secret. Mid-load the secret is rotated with an overlap, then the merchant switches to the
new secret, then the overlap ends and the new secret is promoted. Every request must pass.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tenants.models import WebhookSettings
from tenants.services import webhook_secret_set
from webhooks.dispatch import FailureReason, products_fetch
from webhooks.models import WebhookDelivery
from webhooks.signing import NEXT_SIGNATURE_HEADER

WORKERS = 4
DEADLINE_SECONDS = 90
CUSTOM_SECRET = "merchant-chosen-secret-0123456789abcdef"


@dataclass
class Load:
    """Shared state of the worker threads and the controller."""

    total: int
    started: int = 0
    finished: int = 0
    failures: list[str] = field(default_factory=list)
    # Per worker: the index of its latest call that has finished.
    last_finished: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def next_index(self) -> int | None:
        with self.lock:
            if self.started >= self.total or self.stop.is_set():
                return None
            self.started += 1
            return self.started

    def done(self, worker: int, index: int, failure: str | None) -> None:
        with self.lock:
            self.finished += 1
            self.last_finished[worker] = index
            if failure is not None:
                self.failures.append(failure)

    def wait_for(self, predicate, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "load did not progress"
            time.sleep(0.005)


def worker(tenant, load: Load, number: int) -> None:
    try:
        while (index := load.next_index()) is not None:
            result = products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-1")
            failure = None if "atb-0318" in result.available else str(result.failure)
            load.done(number, index, failure)
    finally:
        connection.close()


def rotate_under_load(tenant, merchant, *, total: int, secret: str | None) -> dict[str, float]:
    """Run the load, rotating mid-way; return counts and throughput."""
    load = Load(total=total)
    threads = [
        threading.Thread(target=worker, args=(tenant, load, number)) for number in range(WORKERS)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        load.wait_for(lambda: load.finished >= total * 0.25)
        new_secret = webhook_secret_set(
            webhook_settings=WebhookSettings.objects.get(tenant=tenant),
            secret=secret,
            overlap=timedelta(hours=1),
        )
        rotated_at = load.started
        # Calls that began before the rotation carry only the old signature, so the
        # merchant switches once every worker has finished a call begun after it.
        load.wait_for(
            lambda: (
                len(load.last_finished) == WORKERS and min(load.last_finished.values()) > rotated_at
            )
        )
        merchant.set_secret(new_secret)
        load.wait_for(lambda: load.finished >= total * 0.6)
        # The overlap ends: the next call promotes the new secret.
        WebhookSettings.objects.filter(tenant=tenant).update(
            next_secret_promote_at=timezone.now() - timedelta(seconds=1)
        )
    finally:
        for thread in threads:
            thread.join(timeout=DEADLINE_SECONDS)
        load.stop.set()
    elapsed = time.monotonic() - started
    return {
        "requests": load.finished,
        "failures": len(load.failures),
        "failure_reasons": sorted(set(load.failures)),
        "elapsed": elapsed,
        "per_second": load.finished / elapsed,
        "new_secret": new_secret,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("_case", "total", "secret"),
    [("generated secret", 1200, None), ("custom secret", 300, CUSTOM_SECRET)],
)
def test_rotation_under_load_has_no_failures(tenant, merchant, _case, total, secret):
    stats = rotate_under_load(tenant, merchant, total=total, secret=secret)

    print(
        f"\nrotation under load ({_case}): {stats['requests']} requests, "
        f"{stats['failures']} failures, {stats['elapsed']:.2f} s, "
        f"{stats['per_second']:.0f} requests/s with {WORKERS} threads"
    )
    assert stats["requests"] == total
    assert stats["failure_reasons"] == []
    assert stats["failures"] == 0
    assert [request.status for request in merchant.requests if request.status != 200] == []
    assert len(merchant.requests) == total
    with_next = [
        request for request in merchant.requests if NEXT_SIGNATURE_HEADER in request.headers
    ]
    assert 0 < len(with_next) < total
    assert NEXT_SIGNATURE_HEADER not in merchant.requests[-1].headers
    webhook_settings = WebhookSettings.objects.get(tenant=tenant)
    assert webhook_settings.secret == stats["new_secret"]
    assert webhook_settings.next_secret == ""
    if secret is not None:
        assert stats["new_secret"] == secret
    assert WebhookDelivery.objects.filter(tenant=tenant).exclude(outcome="success").count() == 0


@pytest.mark.django_db
def test_rotation_without_overlap_switches_at_once(tenant, merchant):
    old_secret = tenant.webhook_settings.secret

    new_secret = webhook_secret_set(webhook_settings=tenant.webhook_settings)
    stale_merchant = products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-1")
    merchant.set_secret(new_secret)
    switched_merchant = products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-1")

    assert new_secret != old_secret
    assert stale_merchant.failure == FailureReason.ERROR
    assert switched_merchant.ok
    assert [request.status for request in merchant.requests] == [401, 200]
    assert all(NEXT_SIGNATURE_HEADER not in request.headers for request in merchant.requests)
    assert WebhookDelivery.objects.filter(tenant=tenant).first().outcome == "success"


@pytest.mark.django_db
def test_merchant_may_switch_any_time_during_the_overlap(tenant, merchant):
    new_secret = webhook_secret_set(
        webhook_settings=tenant.webhook_settings, overlap=timedelta(hours=24)
    )

    before_switch = products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-1")
    merchant.set_secret(new_secret)
    after_switch = products_fetch(tenant=tenant, skus=["atb-0318"], store_id="store-1")

    assert before_switch.ok
    assert after_switch.ok
    assert all(NEXT_SIGNATURE_HEADER in request.headers for request in merchant.requests)
