"""Catalog jobs run by real worker processes (``manage.py procrastinate worker``).

The workers embed through a local OpenAI-compatible server that the test controls, and
share the test database, so these tests commit their data (``transaction=True``).
"""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from catalog.embeddings import product_embedding_text
from catalog.models import CatalogJob, Product
from tests.catalog.embedding_server import EmbeddingServer, run_embedding_server

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
MODEL = "test-embedding"
URL = "/api/v1/catalog/products"

# Fast heartbeats and a recovery check every second, so that a dead worker's job is taken
# over within about two seconds.
WORKER_SETTINGS = {
    "EMBEDDING_BACKEND": "openai",
    "EMBEDDING_MODEL": MODEL,
    "EMBEDDING_BATCH_SIZE": "4",
    "WORKER_HEARTBEAT_SECONDS": "0.2",
    "WORKER_STALLED_AFTER_SECONDS": "1",
    "CATALOG_RECOVERY_CRON": "* * * * * *",
    "CATALOG_JOB_MAX_RETRIES": "1",
    "CATALOG_JOB_RETRY_BACKOFF_SECONDS": "0",
}

_QUEUE_TABLES = (
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_jobs",
    "procrastinate_workers",
)


def _test_database_url() -> str:
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params["PASSWORD"] else ""
    return (
        f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/{params['NAME']}"
    )


@pytest.fixture
def embedding_server() -> Iterator[EmbeddingServer]:
    with run_embedding_server() as server:
        yield server


@pytest.fixture
def clean_queue() -> Iterator[None]:
    """Empty the queue's tables afterwards; the test database flush skips them."""
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(_QUEUE_TABLES)} CASCADE")


@pytest.fixture
def start_worker(embedding_server, clean_queue) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start worker processes on the test database; stop the ones still running at the end.

    Keyword arguments of the returned function are extra environment variables.
    """
    processes: list[subprocess.Popen] = []
    env = {
        **os.environ,
        **WORKER_SETTINGS,
        "DATABASE_URL": _test_database_url(),
        "DJANGO_SETTINGS_MODULE": "vizochok.settings",
        "EMBEDDING_BASE_URL": embedding_server.base_url,
    }

    def start(**extra_env: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "procrastinate", "worker", "--queues", "catalog"],
            cwd=ROOT,
            env={**env, **extra_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)


@pytest.fixture
def embedding_writes() -> Iterator[Callable[[], Counter]]:
    """Count committed writes of Product.embedding per product, whichever process made them."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE TABLE test_embedding_write (product_id bigint NOT NULL);
            CREATE FUNCTION test_record_embedding_write() RETURNS trigger AS $$
            BEGIN
                INSERT INTO test_embedding_write (product_id) VALUES (NEW.id);
                RETURN NEW;
            END
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_embedding_write AFTER UPDATE OF embedding ON catalog_product
                FOR EACH ROW EXECUTE FUNCTION test_record_embedding_write();
            """
        )

    def counts() -> Counter:
        with connection.cursor() as cursor:
            cursor.execute("SELECT product_id FROM test_embedding_write")
            return Counter(row[0] for row in cursor.fetchall())

    yield counts
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DROP TRIGGER test_embedding_write ON catalog_product;
            DROP FUNCTION test_record_embedding_write();
            DROP TABLE test_embedding_write;
            """
        )


def _wait_until(condition: Callable[[], bool], *, timeout: float, description: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {description}.")
        time.sleep(0.05)


def _job(job_id: str) -> CatalogJob:
    return CatalogJob.objects.get(public_id=job_id)


def _queue_status(job: CatalogJob) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", [job.queue_job_id])
        row = cursor.fetchone()
    return row[0] if row else None


def _upload(client, count: int) -> str:
    products = [
        {"sku": f"milk-{number:02d}", "name": f"Молоко {number}", "brand": "Галичина"}
        for number in range(1, count + 1)
    ]
    response = client.put(URL, {"products": products}, format="json")
    assert response.status_code == 202
    return response.json()["job_id"]


def test_restarted_worker_finishes_job_of_killed_worker(
    tenant, server_client, embedding_server, start_worker, embedding_writes
):
    # given: a worker that has written two batches of four and is waiting on the third
    state = embedding_server.state
    state.hold_from_request = 3
    job_id = _upload(server_client, 20)
    first_worker = start_worker()
    assert state.wait_for_requests(3, timeout=30)
    _wait_until(lambda: _job(job_id).embedded == 8, timeout=10, description="two batches written")
    running = _job(job_id)
    assert running.status == CatalogJob.Status.EMBEDDING
    assert running.attempts == 1
    assert _queue_status(running) == "doing"

    # when: the worker is killed mid-batch and another worker starts
    os.killpg(first_worker.pid, signal.SIGKILL)
    first_worker.wait(timeout=10)
    state.hold_from_request = None
    state.release.set()
    start_worker()
    _wait_until(
        lambda: _job(job_id).status == CatalogJob.Status.COMPLETE,
        timeout=30,
        description="the job to complete on the second worker",
    )

    # then: every product was written exactly once, and only the lost batch was embedded twice
    job = _job(job_id)
    products = list(Product.objects.filter(tenant=tenant))
    assert job.embedded == 20
    assert job.to_embed == 20
    assert job.attempts == 2
    assert job.errors == []
    assert job.last_error == ""
    assert job.product_ids == []
    assert len(products) == 20
    assert all(product.embedding_hash == product.content_hash for product in products)
    assert {product.embedding_model for product in products} == {MODEL}
    assert embedding_writes() == Counter({product.pk: 1 for product in products})
    texts = Counter(state.texts())
    lost_batch = [product_embedding_text(vars(product)) for product in products[8:12]]
    assert len(state.requests) == 6
    assert sorted(text for text, count in texts.items() if count == 2) == sorted(lost_batch)
    assert sum(texts.values()) == 24


def test_job_fails_when_embedding_endpoint_is_down(
    tenant, server_client, embedding_server, start_worker
):
    # given
    embedding_server.state.error_status = 503
    job_id = _upload(server_client, 3)

    # when
    start_worker()
    # The task marks the catalog job failed before the queue records its own failure.
    _wait_until(
        lambda: (
            _job(job_id).status == CatalogJob.Status.FAILED
            and _queue_status(_job(job_id)) == "failed"
        ),
        timeout=60,
        description="the job and its queue entry to fail",
    )

    # then: two runs (one retry), each making three requests (the client retries twice)
    job = _job(job_id)
    detail = (
        f"The embedding request to {embedding_server.base_url}/ for model '{MODEL}' failed: "
        "Error code: 503 - The test server is down."
    )
    assert job.errors == [
        f"Embedding failed after 2 attempts: {detail} 0 of 3 products were embedded; "
        "upload the others again to embed them."
    ]
    assert job.last_error == f"Embedding failed after 2 attempts: {detail}"
    assert job.attempts == 2
    assert job.embedded == 0
    assert job.completed_at is not None
    assert len(embedding_server.state.requests) == 6
    assert Product.objects.filter(tenant=tenant, embedding__isnull=False).count() == 0
    assert _queue_status(job) == "failed"


def test_stopped_worker_hands_job_to_next_worker(
    tenant, server_client, embedding_server, start_worker, embedding_writes
):
    # given: a worker waiting on its second batch, with half a second to finish on shutdown
    state = embedding_server.state
    state.hold_from_request = 2
    job_id = _upload(server_client, 12)
    first_worker = start_worker(WORKER_SHUTDOWN_TIMEOUT_SECONDS="0.5")
    assert state.wait_for_requests(2, timeout=30)

    # when: it is told to stop, and its batch finishes only after the shutdown timeout
    os.killpg(first_worker.pid, signal.SIGTERM)
    time.sleep(1)
    state.hold_from_request = None
    state.release.set()
    assert first_worker.wait(timeout=15) == 0
    stopped = _job(job_id)
    queue_status = _queue_status(stopped)
    start_worker()
    _wait_until(
        lambda: _job(job_id).status == CatalogJob.Status.COMPLETE,
        timeout=30,
        description="the job to complete on the second worker",
    )

    # then: the first worker saved its batch and returned the job to the queue
    job = _job(job_id)
    assert (stopped.status, stopped.embedded) == (CatalogJob.Status.EMBEDDING, 8)
    assert queue_status == "todo"
    assert (job.embedded, job.attempts) == (12, 2)
    assert embedding_writes() == Counter(
        {product.pk: 1 for product in Product.objects.filter(tenant=tenant)}
    )
    assert len(state.requests) == 3


def test_stopped_worker_on_last_attempt_fails_job(
    tenant, server_client, embedding_server, start_worker, embedding_writes
):
    # given: a job stopped once by a worker shutdown, which used its only retry
    state = embedding_server.state
    state.hold_from_request = 2
    job_id = _upload(server_client, 16)
    first_worker = start_worker(WORKER_SHUTDOWN_TIMEOUT_SECONDS="0.5")
    assert state.wait_for_requests(2, timeout=30)
    os.killpg(first_worker.pid, signal.SIGTERM)
    time.sleep(1)
    state.release.set()
    assert first_worker.wait(timeout=15) == 0
    state.release.clear()
    state.hold_from_request = 3

    # when: the next worker, on the last attempt, is stopped in its first batch too
    second_worker = start_worker(WORKER_SHUTDOWN_TIMEOUT_SECONDS="0.5")
    assert state.wait_for_requests(3, timeout=30)
    os.killpg(second_worker.pid, signal.SIGTERM)
    time.sleep(1)
    state.hold_from_request = None
    state.release.set()
    assert second_worker.wait(timeout=15) == 0

    # then: the job is failed at once, and the batches the workers wrote are kept
    job = _job(job_id)
    reason = "The worker running the last attempt was stopped before it finished."
    assert job.status == CatalogJob.Status.FAILED
    assert (job.embedded, job.attempts) == (12, 2)
    assert job.errors == [
        f"Embedding failed after 2 attempts: {reason} 12 of 16 products were embedded; "
        "upload the others again to embed them."
    ]
    assert _queue_status(job) == "aborted"
    embedded = Product.objects.filter(tenant=tenant, embedding__isnull=False)
    assert embedding_writes() == Counter({product.pk: 1 for product in embedded})
    assert embedded.count() == 12
    assert b"catalog.job.failed" in second_worker.stderr.read()
