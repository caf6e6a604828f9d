"""``import_catalog --async``, ``reembed_catalog``, ``rebuild_search_text`` and
``recount_search_terms``."""

from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.jobs import Status

from catalog import importing
from catalog.jobs import catalog_job_run
from catalog.management.commands import reembed_catalog
from catalog.models import CatalogJob, Product, TermCount
from tenants.models import Tenant
from tests.catalog.embedding_server import EmbeddingServer, run_embedding_server
from tests.catalog.helpers import DATA_DIR
from tests.catalog.test_jobs import _queue_row
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def embedding_server(settings) -> Iterator[EmbeddingServer]:
    with run_embedding_server() as server:
        settings.EMBEDDING_BACKEND = "openai"
        settings.EMBEDDING_BASE_URL = server.base_url
        settings.EMBEDDING_MODEL = "model-a"
        yield server


def _call(*args: str) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command(*args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def _embedded_models(tenant) -> dict[str, str]:
    return dict(
        Product.objects.filter(tenant=tenant, embedding__isnull=False).values_list(
            "sku", "embedding_model"
        )
    )


def test_import_async_leaves_embedding_to_a_job(
    tenant, embedding_server, django_capture_on_commit_callbacks
):
    # when
    with django_capture_on_commit_callbacks(execute=True):
        stdout, stderr = _call(
            "import_catalog", str(DATA_DIR / "products.jsonl"), "--tenant", "shop-a", "--async"
        )

    # then
    job = CatalogJob.objects.get(tenant=tenant)
    assert stdout == (
        "Imported products.jsonl into tenant 'shop-a': 6 rows.\n"
        "Created: 2, updated: 0, unchanged: 0, rejected: 4.\n"
        f"Embedding job {job.public_id} (pending): 2 products to embed on a catalog worker.\n"
    )
    assert stderr.startswith("Line 4: rejected. Invalid JSON")
    assert job.source == CatalogJob.Source.IMPORT
    assert (job.total, job.created, job.to_embed) == (6, 2, 2)
    assert job.errors == [
        "Line 4: Invalid JSON: Expecting ',' delimiter at column 33.",
        "Line 5: sku: This field is required.",
        "Line 6: unit: This field must not be empty.",
        "Line 7: non_field: Each product must be a JSON object.",
    ]
    assert ProcrastinateJob.objects.get().args == {"job_pk": job.pk}
    assert embedding_server.state.requests == []
    assert _embedded_models(tenant) == {}


def test_import_async_excludes_no_embed(tenant):
    with pytest.raises(CommandError, match="not allowed with argument"):
        _call(
            "import_catalog",
            str(DATA_DIR / "products.jsonl"),
            "--tenant",
            "shop-a",
            "--async",
            "--no-embed",
        )

    assert CatalogJob.objects.count() == 0


def test_reembed_dry_run_counts_other_model(tenant, embedding_server, settings):
    # given: products embedded by model-a, then the deployment switches to model-b
    _call("import_catalog", str(DATA_DIR / "products.jsonl"), "--tenant", "shop-a")
    settings.EMBEDDING_MODEL = "model-b"
    requests_before = len(embedding_server.state.requests)

    # when
    stdout, _ = _call("reembed_catalog", "--tenant", "shop-a")

    # then
    assert stdout == (
        "Dry run: 2 products of tenant 'shop-a' would be re-embedded with 'model-b'. Run "
        "again with --commit to re-embed them.\n"
    )
    assert _embedded_models(tenant) == {"milk-1": "model-a", "kefir-1": "model-a"}
    assert len(embedding_server.state.requests) == requests_before
    assert CatalogJob.objects.count() == 0


def test_reembed_counts_one_product_in_singular(tenant, embedding_server, settings, tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text('{"sku": "milk-1", "name": "Молоко 900 г"}\n', encoding="utf-8")
    _call("import_catalog", str(path), "--tenant", "shop-a")
    settings.EMBEDDING_MODEL = "model-b"

    dry_run, _ = _call("reembed_catalog", "--tenant", "shop-a")
    committed, _ = _call("reembed_catalog", "--tenant", "shop-a", "--commit")

    assert dry_run == (
        "Dry run: 1 product of tenant 'shop-a' would be re-embedded with 'model-b'. Run "
        "again with --commit to re-embed it.\n"
    )
    assert committed == "Re-embedded 1 product of tenant 'shop-a' with 'model-b'.\n"
    assert _embedded_models(tenant) == {"milk-1": "model-b"}


def test_reembed_commit_embeds_with_new_model(tenant, embedding_server, settings):
    _call("import_catalog", str(DATA_DIR / "products.jsonl"), "--tenant", "shop-a")
    settings.EMBEDDING_MODEL = "model-b"

    stdout, _ = _call("reembed_catalog", "--tenant", "shop-a", "--commit")
    again, _ = _call("reembed_catalog", "--tenant", "shop-a")

    assert stdout == "Re-embedded 2 products of tenant 'shop-a' with 'model-b'.\n"
    assert _embedded_models(tenant) == {"milk-1": "model-b", "kefir-1": "model-b"}
    assert again.startswith("Dry run: 0 products of tenant 'shop-a'")


def test_reembed_async_queues_a_job(
    tenant, other_tenant, embedding_server, settings, django_capture_on_commit_callbacks
):
    # given: both tenants have embedded products, and the model changes
    _call("import_catalog", str(DATA_DIR / "products.jsonl"), "--tenant", "shop-a")
    _call("import_catalog", str(DATA_DIR / "products.jsonl"), "--tenant", "shop-b")
    settings.EMBEDDING_MODEL = "model-b"

    # when
    with django_capture_on_commit_callbacks(execute=True):
        stdout, _ = _call("reembed_catalog", "--tenant", "shop-a", "--commit", "--async")
    job = CatalogJob.objects.get()
    catalog_job_run(job_pk=job.pk)

    # then: only tenant A is re-embedded
    assert stdout == (
        f"Queued job {job.public_id} (pending) to re-embed 2 products of tenant 'shop-a' "
        "with 'model-b'.\n"
    )
    assert job.source == CatalogJob.Source.REEMBED
    assert ProcrastinateJob.objects.get().args == {"job_pk": job.pk}
    assert CatalogJob.objects.get(pk=job.pk).embedded == 2
    assert _embedded_models(tenant) == {"milk-1": "model-b", "kefir-1": "model-b"}
    assert _embedded_models(other_tenant) == {"milk-1": "model-a", "kefir-1": "model-a"}


def test_reembed_async_without_commit_is_rejected(tenant, embedding_server, settings):
    _call("import_catalog", str(DATA_DIR / "products.jsonl"), "--tenant", "shop-a")
    settings.EMBEDDING_MODEL = "model-b"
    jobs_before = CatalogJob.objects.count()

    with pytest.raises(CommandError) as exc_info:
        _call("reembed_catalog", "--tenant", "shop-a", "--async")

    assert str(exc_info.value) == (
        "--async requires --commit, so nothing was queued. Run again with --commit --async to "
        "queue a catalog job, or without --async for a dry run."
    )
    assert CatalogJob.objects.count() == jobs_before
    assert ProcrastinateJob.objects.count() == 0
    assert _embedded_models(tenant) == {"milk-1": "model-a", "kefir-1": "model-a"}


def test_reembed_reports_failure(tenant, embedding_server, settings):
    _call("import_catalog", str(DATA_DIR / "products.jsonl"), "--tenant", "shop-a")
    settings.EMBEDDING_MODEL = "model-b"
    embedding_server.state.error_status = 400

    with pytest.raises(CommandError) as exc_info:
        _call("reembed_catalog", "--tenant", "shop-a", "--commit")

    assert str(exc_info.value) == (
        f"Embedding failed: The embedding request to {embedding_server.base_url}/ for model "
        "'model-b' failed: Error code: 400 - The test server is down. 2 products still need "
        "an embedding; run the command again to embed them."
    )
    assert _embedded_models(tenant) == {"milk-1": "model-a", "kefir-1": "model-a"}


class _InterruptedEmbedder:
    """Wraps an embedder and raises KeyboardInterrupt, as Ctrl-C does, from its second batch."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimensions = inner.dimensions
        self.batches = 0

    def embed_queries(self, texts):
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts):
        self.batches += 1
        if self.batches > 1:
            raise KeyboardInterrupt
        return self.inner.embed_passages(texts)


def _interrupt_second_batch(monkeypatch, module) -> None:
    real_get_embedder = module.get_embedder
    monkeypatch.setattr(module, "get_embedder", lambda: _InterruptedEmbedder(real_get_embedder()))


def test_reembed_interrupted_keeps_written_batch(tenant, embedding_server, settings, monkeypatch):
    _call("import_catalog", str(DATA_DIR / "products.jsonl"), "--tenant", "shop-a")
    settings.EMBEDDING_MODEL = "model-b"
    settings.EMBEDDING_BATCH_SIZE = 1
    _interrupt_second_batch(monkeypatch, reembed_catalog)

    with pytest.raises(CommandError) as exc_info:
        _call("reembed_catalog", "--tenant", "shop-a", "--commit")

    assert str(exc_info.value) == (
        "Interrupted. The embeddings written before the interrupt are kept; run the command "
        "again to embed the rest."
    )
    assert exc_info.value.returncode == 130
    assert sorted(_embedded_models(tenant).values()) == ["model-a", "model-b"]


def test_import_interrupted_keeps_written_products(tenant, embedding_server, settings, monkeypatch):
    settings.EMBEDDING_BATCH_SIZE = 1
    _interrupt_second_batch(monkeypatch, importing)

    with pytest.raises(CommandError) as exc_info:
        _call("import_catalog", str(DATA_DIR / "products.jsonl"), "--tenant", "shop-a")

    assert str(exc_info.value) == (
        "Interrupted. The products and embeddings written before the interrupt are kept; run "
        "the import again to finish it."
    )
    assert exc_info.value.returncode == 130
    assert sorted(Product.objects.filter(tenant=tenant).values_list("sku", flat=True)) == [
        "kefir-1",
        "milk-1",
    ]
    assert len(_embedded_models(tenant)) == 1


def test_reembed_unknown_tenant(db):
    with pytest.raises(CommandError) as exc_info:
        _call("reembed_catalog", "--tenant", "no-such-shop")

    assert str(exc_info.value) == "Tenant 'no-such-shop' not found; check the slug."


@pytest.mark.parametrize(
    "command",
    [
        "import_catalog",
        "reembed_catalog",
        "rebuild_search_text",
        "recount_search_terms",
        "evaluate_search",
    ],
)
@pytest.mark.parametrize(
    ("slug", "shown"),
    # A command line's bytes that are not UTF-8 reach Python as unpaired surrogates.
    [("shop-a\udcff", "'shop-a\\udcff'"), ("shop-a\x00", "'shop-a\\x00'")],
    ids=["surrogate", "nul"],
)
def test_unencodable_tenant_slug_is_not_found(tenant, command, slug, shown):
    arguments = {
        "import_catalog": [str(DATA_DIR / "products.csv")],
        "evaluate_search": ["--judgments", str(DATA_DIR / "evaluation-judgments.csv")],
    }.get(command, [])

    with pytest.raises(CommandError) as exc_info:
        _call(command, *arguments, "--tenant", slug)

    assert str(exc_info.value) == f"Tenant {shown} not found; check the slug."
    assert Product.objects.count() == 0
    assert CatalogJob.objects.count() == 0


def test_rebuild_search_text_stale_documents(tenant):
    # given: one document written by an older analyzer, one up to date
    stale = ProductFactory(tenant=tenant, name="Canon Batteries", brand="Canon")
    current = ProductFactory(tenant=tenant, name="Kefir", description="Fresh kefir")
    Product.objects.filter(pk=current.pk).update(search_title="kefir", search_body="fresh kefir")
    Product.objects.filter(pk=stale.pk).update(search_title="canon batterie", search_body="old")

    # when
    stdout, _ = _call("rebuild_search_text", "--tenant", "shop-a")

    # then
    assert stdout == (
        "Rebuilt the full-text documents of 1 product of tenant 'shop-a'. The other products'"
        " documents were already up to date.\n"
    )
    stale.refresh_from_db()
    assert stale.search_title == "canon battery"
    assert stale.search_body == ""
    current.refresh_from_db()
    assert current.search_title == "kefir"
    tenant.refresh_from_db(fields=["catalog_version"])
    assert tenant.catalog_version == 1
    rerun, _ = _call("rebuild_search_text", "--tenant", "shop-a")
    assert rerun == (
        "Rebuilt the full-text documents of 0 products of tenant 'shop-a'. The other products'"
        " documents were already up to date.\n"
    )
    tenant.refresh_from_db(fields=["catalog_version"])
    assert tenant.catalog_version == 1


def test_rebuild_search_text_unknown_tenant(db):
    with pytest.raises(CommandError, match="not found"):
        _call("rebuild_search_text", "--tenant", "missing")


def _stale_counts(tenant, other_tenant) -> None:
    """Give each tenant one product with one lexeme, and store a wrong count for both."""
    ProductFactory(tenant=tenant, sku="milk")
    ProductFactory(tenant=other_tenant, sku="tea")
    Product.objects.filter(sku="milk").update(search_title="milk")
    Product.objects.filter(sku="tea").update(search_title="tea")
    TermCount.objects.update(documents=9)


def test_recount_search_terms_all_tenants(tenant, other_tenant):
    _stale_counts(tenant, other_tenant)

    stdout, _ = _call("recount_search_terms")

    assert stdout == (
        "Counted 1 lexeme and copied 1 search document of tenant 'shop-a'.\n"
        "Counted 1 lexeme and copied 1 search document of tenant 'shop-b'.\n"
    )
    assert set(TermCount.objects.values_list("tenant__slug", "lexeme", "documents")) == {
        ("shop-a", "milk", 1),
        ("shop-b", "tea", 1),
    }


def test_recount_search_terms_one_tenant(tenant, other_tenant):
    _stale_counts(tenant, other_tenant)

    stdout, _ = _call("recount_search_terms", "--tenant", "shop-a")

    assert stdout == "Counted 1 lexeme and copied 1 search document of tenant 'shop-a'.\n"
    assert set(TermCount.objects.values_list("tenant__slug", "lexeme", "documents")) == {
        ("shop-a", "milk", 1),
        ("shop-b", "tea", 9),
    }


def test_recount_search_terms_unknown_tenant(tenant, other_tenant):
    _stale_counts(tenant, other_tenant)
    versions = dict(Tenant.objects.values_list("slug", "catalog_version"))

    with pytest.raises(CommandError) as exc_info:
        _call("recount_search_terms", "--tenant", "no-such-shop")

    assert str(exc_info.value) == "Tenant 'no-such-shop' not found; check the slug."
    # Nothing was recounted: the wrong counts and the catalog versions are as they were.
    assert set(TermCount.objects.values_list("tenant__slug", "lexeme", "documents")) == {
        ("shop-a", "milk", 9),
        ("shop-b", "tea", 9),
    }
    assert dict(Tenant.objects.values_list("slug", "catalog_version")) == versions


def _aged_jobs(tenant) -> dict[int, CatalogJob]:
    """Return a job that completed 40 days ago, one 10 days ago, and an old pending one, by age."""
    now = timezone.now()
    jobs = {}
    for days, status in ((40, CatalogJob.Status.COMPLETE), (10, CatalogJob.Status.FAILED)):
        jobs[days] = CatalogJob.objects.create(
            tenant=tenant, source=CatalogJob.Source.API, status=status
        )
        CatalogJob.objects.filter(pk=jobs[days].pk).update(completed_at=now - timedelta(days=days))
    jobs[400] = CatalogJob.objects.create(tenant=tenant, source=CatalogJob.Source.API)
    CatalogJob.objects.filter(pk=jobs[400].pk).update(created_at=now - timedelta(days=400))
    return jobs


def test_prune_catalog_jobs_days(tenant):
    jobs = _aged_jobs(tenant)

    stdout, _ = _call("prune_catalog_jobs", "--days", "30")

    assert stdout == (
        "Deleted 1 catalog job, and the catalog queue's rows of jobs, that finished more "
        "than 30 days ago.\n"
    )
    assert set(CatalogJob.objects.values_list("pk", flat=True)) == {jobs[10].pk, jobs[400].pk}


def test_prune_catalog_jobs_one_day(tenant):
    _aged_jobs(tenant)

    stdout, _ = _call("prune_catalog_jobs", "--days", "1")

    assert stdout == (
        "Deleted 2 catalog jobs, and the catalog queue's rows of jobs, that finished more "
        "than 1 day ago.\n"
    )


def test_prune_catalog_jobs_default_retention(tenant, settings):
    settings.CATALOG_JOB_RETENTION_DAYS = 5
    jobs = _aged_jobs(tenant)

    stdout, _ = _call("prune_catalog_jobs")

    assert "more than 5 days ago" in stdout
    assert set(CatalogJob.objects.values_list("pk", flat=True)) == {jobs[400].pk}


@pytest.mark.parametrize(
    ("args", "retention", "message"),
    [
        (["--days", "0"], 90, "--days must be between 1 and 36500, got 0."),
        (["--days", "36501"], 90, "--days must be between 1 and 36500, got 36501."),
        (["--days", "3000000000"], 90, "--days must be between 1 and 36500, got 3000000000."),
        (
            [],
            0,
            "CATALOG_JOB_RETENTION_DAYS is 0, which keeps every job. Give --days to delete "
            "old jobs anyway.",
        ),
    ],
)
def test_prune_catalog_jobs_rejects_invalid_age(tenant, settings, args, retention, message):
    settings.CATALOG_JOB_RETENTION_DAYS = retention
    jobs = _aged_jobs(tenant)
    old_row = _queue_row(jobs[400], status=Status.FAILED, days_ago=40_000)

    with pytest.raises(CommandError) as exc_info:
        _call("prune_catalog_jobs", *args)

    assert str(exc_info.value) == message
    assert set(CatalogJob.objects.values_list("pk", flat=True)) == {job.pk for job in jobs.values()}
    assert list(ProcrastinateJob.objects.values_list("id", flat=True)) == [old_row]
