"""The circuit breaker against real local servers and real PostgreSQL."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.webhooks.behaviours import Gate, Switchable, json_reply, point_webhooks_at
from tests.webhooks.conftest import LocalServer
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


def end_cool_down(tenant, kind=WebhookKind.PRODUCTS) -> None:
    """Move the open breaker's retry time into the past, as if its cool-down had passed.

    Tests keep the 30 s cool-down of ``breaker_settings`` and call this instead of sleeping
    through a short one. A short cool-down can also pass before the test's next call on a
    busy machine, and that call then probes where the test expects a rejection.
    """
    updated = CircuitBreaker.objects.filter(
        tenant=tenant, kind=kind, state=CircuitBreaker.State.OPEN
    ).update(retry_at=timezone.now() - timedelta(seconds=1))
    assert updated == 1


def wait_until(condition, description: str, *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {description}"
        time.sleep(0.01)


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
    behaviour = Switchable(NOT_FOUND)
    server = start_server(behaviour)
    point_webhooks_at(tenant, server)
    trip(tenant)
    opened = CircuitBreaker.objects.get(tenant=tenant)
    assert fetch(tenant).failure == FailureReason.CIRCUIT_OPEN
    behaviour.current = PRODUCTS_OK
    requests_before = len(server.log.requests)

    end_cool_down(tenant)
    probe = fetch(tenant)

    assert opened.retry_at - opened.opened_at == timedelta(seconds=30)
    assert probe.ok
    assert list(probe.available) == ["a"]
    assert len(server.log.requests) == requests_before + 1
    assert breaker_state(tenant) == "closed"
    assert fetch(tenant).ok


@pytest.mark.django_db
def test_failed_probe_reopens_with_one_request(tenant, breaker_settings, start_server):
    server = start_server(json_reply(503, {"error": "still down"}))
    point_webhooks_at(tenant, server)
    for _ in range(3):
        fetch(tenant)
    first_retry_at = CircuitBreaker.objects.get(tenant=tenant).retry_at
    requests_before = len(server.log.requests)

    end_cool_down(tenant)
    probe = fetch(tenant)

    breaker = CircuitBreaker.objects.get(tenant=tenant)
    assert probe.failure == FailureReason.ERROR
    assert len(server.log.requests) == requests_before + 1
    assert breaker.state == "open"
    assert breaker.retry_at > first_retry_at
    assert breaker.retry_at - breaker.opened_at == timedelta(seconds=30)
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
    behaviour = Switchable(NOT_FOUND)
    server = start_server(behaviour)
    # The probe's request waits at the gate, so the client timeout must outlast that wait.
    point_webhooks_at(tenant, server, timeout_seconds=10)
    trip(tenant)
    end_cool_down(tenant)
    # The probe's response waits until the other seven calls have returned. A call that
    # came after the probe had closed the breaker would be admitted as a normal call.
    gate = Gate(PRODUCTS_OK)
    behaviour.current = gate
    requests_before = len(server.log.requests)
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
    gate.wait_entered()
    wait_until(lambda: len(failures) == 7, "the seven callers besides the probe")
    gate.open()
    for thread in threads:
        thread.join(timeout=10)

    assert len(server.log.requests) == requests_before + 1
    assert sorted(str(failure) for failure in failures) == ["None"] + ["circuit_open"] * 7
    assert breaker_state(tenant) == "closed"


def run_in_thread(results: dict[str, FailureReason | None], name: str, tenant) -> threading.Thread:
    def worker() -> None:
        try:
            results[name] = fetch(tenant).failure
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    return thread


@dataclass
class OverlappingProbes:
    server: LocalServer
    # The failure reason of each probe, under "late" and "current", once its thread ends.
    results: dict[str, FailureReason | None]
    late_thread: threading.Thread
    late_gate: Gate
    current_thread: threading.Thread
    current_gate: Gate


def start_overlapping_probes(
    tenant, start_server, monkeypatch, *, late, current
) -> OverlappingProbes:
    """Trip the breaker, then start a probe that outlives its lease and the probe after it.

    Both responses (``late`` and ``current``) wait at gates that the test opens, so the test
    decides which probe ends first. The lease is cut to 0.2 s, so the first probe is taken as
    lost while its request waits. The client timeout stays at 10 s, longer than any wait here.
    """
    # The lease is the webhook timeout plus this margin: 10 s - 9.8 s.
    monkeypatch.setattr("webhooks.breaker.PROBE_LEASE_MARGIN", timedelta(seconds=-9.8))
    behaviour = Switchable(NOT_FOUND)
    server = start_server(behaviour)
    point_webhooks_at(tenant, server, timeout_seconds=10)
    trip(tenant)
    end_cool_down(tenant)
    results: dict[str, FailureReason | None] = {}
    late_gate, current_gate = Gate(late), Gate(current)

    behaviour.current = late_gate
    late_thread = run_in_thread(results, "late", tenant)
    # Once the late request is at its gate, switching the behaviour cannot change its reply.
    late_gate.wait_entered()
    behaviour.current = current_gate
    # The late probe claimed the breaker before its request reached the gate, so its 0.2 s
    # lease is over after this wait. A busy machine can only make the wait longer.
    time.sleep(0.25)
    current_thread = run_in_thread(results, "current", tenant)
    current_gate.wait_entered()
    return OverlappingProbes(
        server=server,
        results=results,
        late_thread=late_thread,
        late_gate=late_gate,
        current_thread=current_thread,
        current_gate=current_gate,
    )


def finish_overlapping_probes(tenant, probes: OverlappingProbes) -> CircuitBreaker:
    """End the late probe, then the current one; return the breaker between the two."""
    probes.late_gate.open()
    probes.late_thread.join(timeout=5)
    state_after_late = CircuitBreaker.objects.get(tenant=tenant, kind=WebhookKind.PRODUCTS)
    probes.current_gate.open()
    probes.current_thread.join(timeout=5)
    return state_after_late


@pytest.mark.django_db(transaction=True)
def test_late_probe_success_keeps_current_probe(
    tenant, breaker_settings, start_server, monkeypatch, caplog
):
    caplog.set_level("INFO", logger="webhooks.breaker")
    probes = start_overlapping_probes(
        tenant, start_server, monkeypatch, late=PRODUCTS_OK, current=NOT_FOUND
    )

    state_after_late = finish_overlapping_probes(tenant, probes)

    breaker = CircuitBreaker.objects.get(tenant=tenant, kind=WebhookKind.PRODUCTS)
    events = [record.getMessage() for record in caplog.records]
    assert probes.results == {"late": None, "current": FailureReason.ERROR}
    assert len(probes.server.log.requests) == 7
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
    probes = start_overlapping_probes(
        tenant, start_server, monkeypatch, late=NOT_FOUND, current=PRODUCTS_OK
    )

    state_after_late = finish_overlapping_probes(tenant, probes)

    breaker = CircuitBreaker.objects.get(tenant=tenant, kind=WebhookKind.PRODUCTS)
    events = [record.getMessage() for record in caplog.records]
    assert probes.results == {"late": FailureReason.ERROR, "current": None}
    assert len(probes.server.log.requests) == 7
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
