"""Catalog content: products with their embeddings and full-text documents, and the jobs
that embed uploaded products in the background.

Prices and stock are never stored here: the merchant's products webhook is the system of
record for them.
"""

import secrets

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models.functions import Lower
from pgvector.django import HnswIndex, VectorField

from tenants.models import Tenant
from vizochok.models import TimestampedModel

EMBEDDING_DIMENSIONS = 384

# PostgreSQL ships no Ukrainian stemmer, and language-specific configurations mangle
# Cyrillic words they do not know, so the full-text document uses "simple" over text that
# catalog.text has already normalised in Python.
TEXT_SEARCH_CONFIG = "simple"


def _word_count(field_name: str) -> models.Func:
    """Return the number of space-separated words in a normalised text field."""
    words = models.Func(
        models.F(field_name),
        models.Value(" "),
        function="string_to_array",
        output_field=ArrayField(models.TextField()),
    )
    return models.Func(words, function="cardinality", output_field=models.IntegerField())


class Product(TimestampedModel):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="products")
    sku = models.CharField(max_length=200)
    name = models.CharField(max_length=500)
    category_path = models.CharField(max_length=500, blank=True)
    brand = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    ingredients = models.TextField(blank=True)
    country = models.CharField(max_length=100, blank=True)
    unit = models.CharField(max_length=20, default="pcs")
    quantity_step = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    min_quantity = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    weight = models.FloatField(null=True, blank=True, help_text="Grams.")
    volume = models.FloatField(null=True, blank=True, help_text="Millilitres.")
    image_url = models.URLField(max_length=2000, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    barcode = models.CharField(max_length=64, blank=True)
    is_active = models.BooleanField(default=True)

    # SHA-256 of the embedded content fields; the embedding is current while
    # embedding_hash equals it.
    content_hash = models.CharField(max_length=64)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    embedding_hash = models.CharField(max_length=64, blank=True)
    embedding_model = models.CharField(max_length=200, blank=True)

    # Normalised text (see catalog.text) from which PostgreSQL builds the full-text
    # document: the title part weighs more than the body part.
    search_title = models.TextField(blank=True, editable=False)
    search_body = models.TextField(blank=True, editable=False)
    search_vector = models.GeneratedField(
        expression=SearchVector("search_title", weight="A", config=TEXT_SEARCH_CONFIG)
        + SearchVector("search_body", weight="B", config=TEXT_SEARCH_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    # The fields' lengths in words, which BM25F normalises by. Stored, so that a search reads
    # them with the match instead of splitting every shortlisted text again.
    search_title_words = models.GeneratedField(
        expression=_word_count("search_title"),
        output_field=models.IntegerField(),
        db_persist=True,
    )
    search_body_words = models.GeneratedField(
        expression=_word_count("search_body"),
        output_field=models.IntegerField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["tenant_id", "sku"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "sku"], name="uniq_product_tenant_sku"),
        ]
        indexes = [
            models.Index(fields=["tenant", "is_active"], name="product_tenant_active_idx"),
            models.Index(fields=["tenant", "barcode"], name="product_tenant_barcode_idx"),
            # The search's exact stage finds a SKU typed in another case ("atb-0001").
            models.Index(models.F("tenant"), Lower("sku"), name="product_tenant_sku_lower_idx"),
            HnswIndex(
                name="product_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            # The full-text and trigram indexes are on SearchDocument, which the lexical
            # and trigram stages read.
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    @property
    def needs_embedding(self) -> bool:
        return self.embedding is None or self.embedding_hash != self.content_hash


class SearchDocument(models.Model):
    """The columns of one product that the lexical and trigram stages of search read.

    A search reads one row per product that contains a query word. This table's rows are
    about a sixth as wide as the product table's, which also carry the names, descriptions
    and the vector, so those reads touch far fewer pages. Row triggers on the product
    table, created by migration 0007 and extended by 0009, keep it in the transaction of
    every product write, including writes that bypass the catalog services. Nothing else
    writes it. An embedding write changes none of these columns, so it writes nothing here
    and adds no entry to this table's GIN indexes.
    """

    product = models.OneToOneField(
        Product,
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="search_document",
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    is_active = models.BooleanField()
    category_path = models.CharField(max_length=500)
    search_title = models.TextField(db_default="")
    search_vector = SearchVectorField(null=True)
    search_title_words = models.IntegerField(null=True)
    search_body_words = models.IntegerField(null=True)

    class Meta:
        indexes = [
            # Without fastupdate, a write updates the index at once. With it, writes collect
            # in a pending list that every search scans until a vacuum merges it, which cost
            # 5-8 ms per search after a few thousand product updates.
            GinIndex(fields=["search_vector"], name="search_document_vector_gin", fastupdate=False),
            GinIndex(
                OpClass("search_title", name="gin_trgm_ops"),
                name="search_document_title_trgm",
                fastupdate=False,
            ),
        ]

    def __str__(self) -> str:
        return f"search document of product {self.product_id}"


class TermCount(models.Model):
    """How many of a tenant's active products contain one full-text lexeme.

    BM25 reads its document frequencies here. Statement triggers on the product table,
    created by migrations 0005 and 0006, keep the counts in the transaction of every product
    write, including writes that bypass the catalog services. A row exists only while some
    active product contains its lexeme.

    NOTE: writes that fire no trigger leave the counts wrong: sessions with
    ``session_replication_role = replica``, disabled triggers, or a migration that rebuilds
    ``search_vector``. The ``recount_search_terms`` command counts them again.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="term_counts")
    # The "C" collation lets a btree index serve prefix matches (lexeme LIKE 'abc%').
    lexeme = models.TextField(db_collation="C")
    documents = models.IntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "lexeme"], name="uniq_term_count_lexeme"),
        ]

    def __str__(self) -> str:
        return f"{self.lexeme} {self.documents}"


def new_catalog_job_id() -> str:
    """Return a new public job id: ``job_`` and 24 random hex digits."""
    return f"job_{secrets.token_hex(12)}"


class CatalogJob(TimestampedModel):
    """One catalog upload and the background embedding of its products.

    The product metadata is written before the job exists; the job records what the upload
    changed and embeds ``product_ids``. A worker runs it through the ``catalog`` queue.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        EMBEDDING = "embedding", "Embedding"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"

    class Source(models.TextChoices):
        API = "api", "API upload"
        IMPORT = "import", "import_catalog command"
        REEMBED = "reembed", "reembed_catalog command"
        ADMIN = "admin", "Django admin"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="catalog_jobs")
    public_id = models.CharField(
        max_length=40, unique=True, default=new_catalog_job_id, editable=False
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # Products in the upload, valid or not.
    total = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    to_embed = models.PositiveIntegerField(default=0)
    # Vectors this job wrote, at most one per product. It ends below to_embed when some
    # products no longer needed a vector by the time the worker reached them.
    embedded = models.PositiveIntegerField(default=0)
    # Messages for the merchant: rejected products, then the final failure if any.
    errors = models.JSONField(default=list, blank=True)
    # The products to embed; emptied when the job completes.
    product_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # The highest product id of the batches this job has written. Batches are written in id
    # order, so a run after a crash or a shutdown continues after it, as the first run would.
    embedded_through_id = models.BigIntegerField(default=0)
    # Runs started, including runs cut short by a crash or a shutdown.
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # Id of the job's row in the task queue (procrastinate_jobs), once enqueued.
    queue_job_id = models.BigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="catalog_job_tenant_recent_idx"),
            models.Index(
                fields=["created_at"],
                name="catalog_job_unfinished_idx",
                condition=models.Q(status__in=["pending", "embedding"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.COMPLETE, self.Status.FAILED)
