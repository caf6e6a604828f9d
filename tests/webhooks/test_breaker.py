"""The circuit breaker against real local servers and real PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.webhooks.behaviours import Switchable, json_reply, point_webhooks_at, slow
from webhooks.breaker import breaker_reset
from webhooks.dispatch import CartAction, FailureReason, cart_change, cart_fetch, products_fetch
from webhooks.models import CircuitBreaker, WebhookDelivery, WebhookKind

PRODUCTS_OK = json_reply(200, {"products": [{"sku": "a", "price": 10, "in_stock": True}]})
NOT_FOUND = json_reply(404, {"error": "not_found"})


@pytest.fixture
def breaker_settings(settings, local_webhooks):
    settings.WEBHOOK_BREAKER_ENABLED = True
    settings.WEBHOOK_BREAKER_WINDOW_SECONDS = 60
    settings.WEBHOOK_BREAKER_MIN_FAILURES = 5
    settings.WEBHOOK_BREAKER_FAILURE_RATIO = 0.5
    settings.WEBHOOK_BREAKER_COOLDOWN_SECONDS = 30
    settings.WEBHOOK_RETRY_DELAY_SECONDS = 0.01
    return settings


def fetch(tenant):
    return products_fetch(tenant=tenant, skus=["a"], store_id="store-1")


def trip(tenant, calls: int = 5):
    for _ in range(calls):
        assert fetch(tenant).failure == FailureReason.ERROR


def breaker_state(tenant, kind=WebhookKind.PRODUCTS) -> str:
    row = CircuitBreaker.objects.filter(tenant=tenant, kind=kind).first()
    return row.state if row else "closed"


@pytest.mark.django_db
def test_breaker_opens_after_five_failures(tenant, breaker_settings, start_server):
    server = start_server(NOT_FOUND)
    point_webhooks_at(tenant, server)

    trip(tenant, calls=4)
    state_after_four = breaker_state(tenant)
    assert fetch(tenant).failure == FailureReason.ERROR

    assert state_after_four == "closed"
    assert breaker_state(tenant) == "open"
    assert len(server.log.requests) == 5


@pytest.mark.django_db
def test_breaker_opens_with_longest_window_and_cooldown(tenant, breaker_settings, start_server):
    # The largest values that settings.py accepts: 100 years each.
    breaker_settings.WEBHOOK_BREAKER_WINDOW_SECONDS = breaker_settings.WEBHOOK_BREAKER_MAX_SECONDS
    breaker_settings.WEBHOOK_BREAKER_COOLDOWN_SECONDS = breaker_settings.WEBHOOK_BREAKER_MAX_SECONDS
    server = start_server(NOT_FOUND)
    point_webhooks_at(tenant, server)

    trip(tenant)

    assert breaker_state(tenant) == "open"
    row = CircuitBreaker.objects.get(tenant=tenant, kind=WebhookKind.PRODUCTS)
    assert row.retry_at - row.opened_at == timedelta(days=36_500)


@pytest.mark.django_db
def test_open_breaker_fails_fast_without_requests(tenant, breaker_settings, start_server):
    server = start_server(NOT_FOUND)
    point_webhooks_at(tenant, server)
    trip(tenant)
    requests_before = len(server.log.requests)

    started = time.monotonic()
    results = [fetch(tenant) for _ in range(20)]
    elapsed = time.monotonic() - started

    assert {result.failure for result in results} == {FailureReason.CIRCUIT_OPEN}
    assert len(server.log.requests) == requests_before
    assert elapsed < 1.0
    rejected = WebhookDelivery.objects.filter(tenant=tenant, outcome="circuit_open")
    assert rejected.count() == 20
    assert set(rejected.values_list("status_code", "error_code", "response_bytes")) == {
        (None, "circuit_open", 0)
    }


@pytest.mark.django_db
def test_breaker_counts_each_retried_attempt(tenant, breaker_settings, start_server):
    server = start_server(json_reply(503, {"error": "busy"}))
    point_webhooks_at(tenant, server)

    for _ in range(3):
        fetch(tenant)

    assert breaker_state(tenant) == "open"
    assert len(server.log.requests) == 6
    assert fetch(tenant).failure == FailureReason.CIRCUIT_OPEN


@pytest.mark.django_db
def test_breaker_stays_closed_below_failure_ratio(tenant, breaker_settings, start_server):
    behaviour = Switchable(PRODUCTS_OK)
    server = start_server(behaviour)
    point_webhooks_at(tenant, server)
    for _ in range(6):
        assert fetch(tenant).ok

    behaviour.current = NOT_FOUND
    trip(tenant, calls=5)

    assert breaker_state(tenant) == "closed"
    assert fetch(tenant).failure == FailureReason.ERROR
    assert breaker_state(tenant) == "open"
    assert len(server.log.requests) == 12


@pytest.mark.django_db
def test_failures_outside_the_window_do_not_count(tenant, breaker_settings, start_server):
    server = start_server(NOT_FOUND)
    point_webhooks_at(tenant, server)
    trip(tenant, calls=4)
    WebhookDelivery.objects.filter(tenant=tenant).update(
        created_at=timezone.now() - timedelta(seconds=61)
    )

    trip(tenant, calls=4)

    assert breaker_state(tenant) == "closed"
    assert len(server.log.requests) == 8


@pytest.mark.django_db
def test_breaker_recovers_after_cool_down(tenant, breaker_settings, start_server):
    breaker_settings.WEBHOOK_BREAKER_COOLDOWN_SECONDS = 0.3
    behaviour = Switchable(NOT_FOUND)
    server = start_server(behaviour)
    point_webhooks_at(tenant, server)
    trip(tenant)
    assert fetch(tenant).failure == FailureReason.CIRCUIT_OPEN
    behaviour.current = PRODUCTS_OK
    requests_before = len(server.log.requests)

    time.sleep(0.35)
    probe = fetch(tenant)

    assert probe.ok
    assert list(probe.available) == ["a"]
    assert len(server.log.requests) == requests_before + 1
    assert breaker_state(tenant) == "closed"
    assert fetch(tenant).ok


@pytest.mark.django_db
def test_failed_probe_reopens_with_one_request(tenant, breaker_settings, start_server):
    breaker_settings.WEBHOOK_BREAKER_COOLDOWN_SECONDS = 0.3
    server = start_server(json_reply(503, {"error": "still down"}))
    point_webhooks_at(tenant, server)
    for _ in range(3):
        fetch(tenant)
    first_retry_at = CircuitBreaker.objects.get(tenant=tenant).retry_at
    requests_before = len(server.log.requests)

    time.sleep(0.35)
    probe = fetch(tenant)

    breaker = CircuitBreaker.objects.get(tenant=tenant)
    assert probe.failure == FailureReason.ERROR
    assert len(server.log.requests) == requests_before + 1
    assert breaker.state == "open"
    assert breaker.retry_at > first_retry_at
    assert breaker.times_opened == 2
    assert fetch(tenant).failure == FailureReason.CIRCUIT_OPEN


@pytest.mark.django_db
def test_closing_starts_a_fresh_window(tenant, breaker_settings, start_server):
    breaker_settings.WEBHOOK_BREAKER_COOLDOWN_SECONDS = 0.2
    behaviour = Switchable(NOT_FOUND)
    server = start_server(behaviour)
    point_webhooks_at(tenant, server)
    trip(tenant)
    behaviour.current = PRODUCTS_OK
    time.sleep(0.25)
    assert fetch(tenant).ok

    behaviour.current = NOT_FOUND
    trip(tenant, calls=4)

    assert breaker_state(tenant) == "closed"


@pytest.mark.django_db
def test_lost_probe_is_taken_over_after_its_lease(tenant, breaker_settings, start_server):
    server = start_server(PRODUCTS_OK)
    point_webhooks_at(tenant, server)
    CircuitBreaker.objects.create(
        tenant=tenant,
        kind=WebhookKind.PRODUCTS,
        state=CircuitBreaker.State.HALF_OPEN,
        probe_started_at=timezone.now(),
    )
    assert fetch(tenant).failure == FailureReason.CIRCUIT_OPEN
    CircuitBreaker.objects.filter(tenant=tenant).update(
        probe_started_at=timezone.now() - timedelta(seconds=12)
    )

    result = fetch(tenant)

    assert result.ok
    assert breaker_state(tenant) == "closed"
    assert len(server.log.requests) == 1


@pytest.mark.django_db
def test_breaker_is_per_kind(tenant, breaker_settings, start_server):
    server = start_server(NOT_FOUND)
    point_webhooks_at(tenant, server)
    trip(tenant)

    cart = cart_change(
        tenant=tenant, action=CartAction.CLEAR, store_id="store-1", session_id="shopper-1"
    )
    cart_load = cart_fetch(tenant=tenant, store_id="store-1", session_id="shopper-1")

    assert cart.reason == FailureReason.ERROR
    assert cart_load.failure == FailureReason.ERROR
    assert [request.path.split("?")[0] for request in server.log.requests[-2:]] == [
        "/cart",
        "/cart",
    ]
    assert breaker_state(tenant, WebhookKind.CART) == "closed"


@pytest.mark.django_db
def test_breaker_is_per_tenant(tenant, other_tenant, breaker_settings, start_server):
    broken = start_server(NOT_FOUND)
    healthy = start_server(PRODUCTS_OK)
    point_webhooks_at(tenant, broken)
    point_webhooks_at(other_tenant, healthy)
    trip(tenant)

    assert fetch(tenant).failure == FailureReason.CIRCUIT_OPEN
    assert fetch(other_tenant).ok
    assert len(healthy.log.requests) == 1
    assert not CircuitBreaker.objects.filter(tenant=other_tenant).exists()


@pytest.mark.django_db
def test_cart_reports_circuit_open(tenant, breaker_settings, start_server):
    server = start_server(NOT_FOUND)
    point_webhooks_at(tenant, server)
    for _ in range(5):
        cart_change(
            tenant=tenant, action=CartAction.CLEAR, store_id="store-1", session_id="shopper-1"
        )

    result = cart_change(
        tenant=tenant, action=CartAction.CLEAR, store_id="store-1", session_id="shopper-1"
    )
    loaded = cart_fetch(tenant=tenant, store_id="store-1", session_id="shopper-1")

    assert result.ok is False
    assert result.reason == "circuit_open"
    assert loaded.failure == FailureReason.ERROR
    assert len(server.log.requests) == 6


@pytest.mark.django_db
def test_disabled_breaker_never_opens(tenant, breaker_settings, start_server):
    breaker_settings.WEBHOOK_BREAKER_ENABLED = False
    server = start_server(NOT_FOUND)
    point_webhooks_at(tenant, server)

    trip(tenant, calls=8)

    assert len(server.log.requests) == 8
    assert not CircuitBreaker.objects.exists()


@pytest.mark.django_db
def test_breaker_reset_closes_an_open_breaker(tenant, breaker_settings, start_server):
    behaviour = Switchable(NOT_FOUND)
    server = start_server(behaviour)
    point_webhooks_at(tenant, server)
    trip(tenant)
    behaviour.current = PRODUCTS_OK

    changed = breaker_reset(tenant_id=tenant.pk, kind=WebhookKind.PRODUCTS)

    assert changed is True
    assert fetch(tenant).ok
    assert breaker_state(tenant) == "closed"


@pytest.mark.django_db(transaction=True)
def test_half_open_admits_one_probe_under_concurrency(tenant, breaker_settings, start_server):
    breaker_settings.WEBHOOK_BREAKER_COOLDOWN_SECONDS = 0.2
    behaviour = Switchable(NOT_FOUND)
    server = start_server(behaviour)
    point_webhooks_at(tenant, server)
    trip(tenant)
    behaviour.current = slow(0.3, PRODUCTS_OK)
    requests_before = len(server.log.requests)
    time.sleep(0.25)
    start = threading.Barrier(8)
    failures: list[FailureReason | None] = []

    def worker() -> None:
        try:
            start.wait()
            failures.append(fetch(tenant).failure)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(server.log.requests) == requests_before + 1
    assert sorted(str(failure) for failure in failures) == ["None"] + ["circuit_open"] * 7
    assert breaker_state(tenant) == "closed"


def wait_for_requests(server, count: int, *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(server.log.requests) < count:
        assert time.monotonic() < deadline, f"server got {len(server.log.requests)} requests"
        time.sleep(0.01)


def run_in_thread(results: dict[str, FailureReason | None], name: str, tenant) -> threading.Thread:
    def worker() -> None:
        try:
            results[name] = fetch(tenant).failure
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    return thread


def start_overlapping_probes(tenant, breaker_settings, start_server, monkeypatch, *, late, current):
    """Trip the breaker, then start a probe that outlives its lease and the probe after it.

    The lease is cut to 0.2 s, so the first probe is taken as lost while its request still
    runs. Return the server, the dict that each thread writes its failure reason to, and both
    running threads (``late`` first).
    """
    monkeypatch.setattr("webhooks.breaker.PROBE_LEASE_MARGIN", timedelta(seconds=-0.8))
    breaker_settings.WEBHOOK_BREAKER_COOLDOWN_SECONDS = 0.1
    behaviour = Switchable(NOT_FOUND)
    server = start_server(behaviour)
    point_webhooks_at(tenant, server)
    trip(tenant)
    time.sleep(0.15)
    results: dict[str, FailureReason | None] = {}

    behaviour.current = late
    late_thread = run_in_thread(results, "late", tenant)
    wait_for_requests(server, 6)
    behaviour.current = current
    time.sleep(0.25)
    current_thread = run_in_thread(results, "current", tenant)
    wait_for_requests(server, 7)
    return server, results, late_thread, current_thread


@pytest.mark.django_db(transaction=True)
def test_late_probe_success_keeps_current_probe(
    tenant, breaker_settings, start_server, monkeypatch, caplog
):
    caplog.set_level("INFO", logger="webhooks.breaker")
    server, results, late_thread, current_thread = start_overlapping_probes(
        tenant,
        breaker_settings,
        start_server,
        monkeypatch,
        late=slow(0.5, PRODUCTS_OK),
        current=slow(0.6, NOT_FOUND),
    )

    late_thread.join(timeout=5)
    state_after_late = CircuitBreaker.objects.get(tenant=tenant, kind=WebhookKind.PRODUCTS)
    current_thread.join(timeout=5)

    breaker = CircuitBreaker.objects.get(tenant=tenant, kind=WebhookKind.PRODUCTS)
    events = [record.getMessage() for record in caplog.records]
    assert results == {"late": None, "current": FailureReason.ERROR}
    assert len(server.log.requests) == 7
    assert state_after_late.state == "half_open"
    assert state_after_late.probe_started_at is not None
    assert breaker.state == "open"
    assert breaker.probe_started_at is None
    assert breaker.times_opened == 2
    assert events.count("webhooks.breaker.late_probe_ignored") == 1
    assert events.count("webhooks.breaker.reopened") == 1
    assert "webhooks.breaker.closed" not in events


@pytest.mark.django_db(transaction=True)
def test_late_probe_failure_keeps_current_probe(
    tenant, breaker_settings, start_server, monkeypatch, caplog
):
    caplog.set_level("INFO", logger="webhooks.breaker")
    server, results, late_thread, current_thread = start_overlapping_probes(
        tenant,
        breaker_settings,
        start_server,
        monkeypatch,
        late=slow(0.5, NOT_FOUND),
        current=slow(0.6, PRODUCTS_OK),
    )

    late_thread.join(timeout=5)
    state_after_late = CircuitBreaker.objects.get(tenant=tenant, kind=WebhookKind.PRODUCTS)
    current_thread.join(timeout=5)

    breaker = CircuitBreaker.objects.get(tenant=tenant, kind=WebhookKind.PRODUCTS)
    events = [record.getMessage() for record in caplog.records]
    assert results == {"late": FailureReason.ERROR, "current": None}
    assert len(server.log.requests) == 7
    assert state_after_late.state == "half_open"
    assert breaker.state == "closed"
    assert breaker.times_opened == 1
    assert events.count("webhooks.breaker.late_probe_ignored") == 1
    assert events.count("webhooks.breaker.closed") == 1
    assert "webhooks.breaker.reopened" not in events


@pytest.mark.django_db(transaction=True)
def test_probe_after_reset_changes_nothing(tenant, breaker_settings, start_server, caplog):
    breaker_settings.WEBHOOK_BREAKER_COOLDOWN_SECONDS = 0.1
    behaviour = Switchable(NOT_FOUND)
    server = start_server(behaviour)
    point_webhooks_at(tenant, server)
    trip(tenant)
    time.sleep(0.15)
    caplog.set_level("INFO", logger="webhooks.breaker")

    def reset_then_fail(handler) -> None:
        # The server thread has its own connection, like an admin closing the breaker.
        try:
            breaker_reset(tenant_id=tenant.pk, kind=WebhookKind.PRODUCTS)
        finally:
            connection.close()
        NOT_FOUND(handler)

    behaviour.current = reset_then_fail
    probe = fetch(tenant)

    breaker = CircuitBreaker.objects.get(tenant=tenant, kind=WebhookKind.PRODUCTS)
    events = [record.getMessage() for record in caplog.records]
    assert probe.failure == FailureReason.ERROR
    assert len(server.log.requests) == 6
    assert breaker.state == "closed"
    assert breaker.times_opened == 1
    assert events.count("webhooks.breaker.late_probe_ignored") == 1
    assert "webhooks.breaker.reopened" not in events
