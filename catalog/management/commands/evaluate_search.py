"""``manage.py evaluate_search``: score product search against graded relevance judgments."""

from argparse import ArgumentParser
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from catalog.embeddings import Embedder, get_embedder
from catalog.evaluation import (
    JudgmentFileError,
    MethodReport,
    judgments_load,
    query_groups_load,
    search_evaluate,
)
from catalog.search import MAX_LIMIT, SearchMethod, product_search
from tenants.management.tenants import command_tenant
from vizochok.text import count_noun

# recall@50 needs 50 results per query.
RESULT_DEPTH = 50


class _QueryCachingEmbedder:
    """Embeds each distinct query once, however many methods search with it."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimensions = inner.dimensions
        self._embed_query = cache(self._embed_one)

    def _embed_one(self, text: str) -> np.ndarray:
        return self.inner.embed_queries([text])[0]

    def embed_queries(self, texts: Any) -> np.ndarray:
        return np.stack([self._embed_query(text) for text in texts])

    def embed_passages(self, texts: Any) -> np.ndarray:
        return self.inner.embed_passages(texts)


def _parse_methods(value: str) -> list[SearchMethod]:
    methods = []
    for name in (part.strip() for part in value.split(",")):
        try:
            methods.append(SearchMethod(name))
        except ValueError:
            choices = ", ".join(method.value for method in SearchMethod)
            raise CommandError(f"Unknown method {name!r}; choose from {choices}.") from None
    return methods


class Command(BaseCommand):
    help = (
        "Run a judged query set (CSV with the header query,docid,rating, where docid is a "
        "product SKU and rating 0-3) against a tenant's catalog and print nDCG@k, "
        "precision@5, recall@50, the judged share of the top k and nDCG@k over judged "
        "results, per search method. Only queries with a product rated 2 or more are scored."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", required=True, help="Slug of the tenant to search.")
        parser.add_argument("--judgments", required=True, type=Path, help="Judgment CSV file.")
        parser.add_argument(
            "--methods",
            default=",".join(method.value for method in SearchMethod),
            help="Comma-separated search methods: hybrid, fulltext, vector. Default: all.",
        )
        parser.add_argument("--k", type=int, default=10, help="Cut-off of nDCG. Default: 10.")
        parser.add_argument(
            "--per-query",
            action="store_true",
            help="Also print nDCG@k and precision@5 of every scored query.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = command_tenant(options["tenant"])
        if not 1 <= options["k"] <= RESULT_DEPTH:
            raise CommandError(f"--k must be between 1 and {RESULT_DEPTH}, got {options['k']}.")
        try:
            judgments = judgments_load(options["judgments"])
            groups = query_groups_load(options["judgments"])
        except JudgmentFileError as exc:
            raise CommandError(str(exc)) from exc
        methods = _parse_methods(options["methods"])
        embedder = _QueryCachingEmbedder(get_embedder())

        def search(query: str, method: SearchMethod) -> list[str]:
            hits = product_search(
                tenant=tenant,
                query=query,
                limit=min(RESULT_DEPTH, MAX_LIMIT),
                embedder=embedder,
                method=method,
            )
            return [hit.product.sku for hit in hits]

        reports = search_evaluate(
            judgments=judgments, search=search, methods=methods, k=options["k"]
        )
        self._print_summary(reports, query_count=len(judgments))
        if groups:
            self._print_groups(reports, groups)
        if options["per_query"]:
            self._print_per_query(reports)

    def _print_summary(self, reports: list[MethodReport], *, query_count: int) -> None:
        k = reports[0].k if reports else 10
        scored = len(reports[0].queries) if reports else 0
        self.stdout.write(
            f"{count_noun(query_count, 'query', 'queries')}, {scored} scored (a product rated "
            ">= 2); "
            f"relevant means rated >= 2."
        )
        if not scored:
            self.stderr.write(
                "No query has a product rated >= 2, so every mean below is 0: add ratings of"
                " 2 or 3 to the judgment file."
            )
        self.stdout.write(
            f"{'method':<10} {f'nDCG@{k}':>8} {'P@5':>6} {'R@50':>6} "
            f"{f'judged@{k}':>9} {f'nDCG@{k} judged':>14} {'no-match results':>16} {'ms/query':>9}"
        )
        for report in reports:
            no_match = report.no_match_results
            mean_no_match = sum(no_match) / len(no_match) if no_match else 0.0
            self.stdout.write(
                f"{report.method:<10} {report.mean('ndcg'):>8.3f} "
                f"{report.mean('precision_at_5'):>6.3f} {report.mean('recall_at_50'):>6.3f} "
                f"{report.mean('judged_share'):>9.3f} {report.mean('condensed_ndcg'):>14.3f} "
                f"{mean_no_match:>16.1f} {report.mean_latency_ms:>9.1f}"
            )

    def _print_groups(self, reports: list[MethodReport], groups: dict[str, str]) -> None:
        """Print nDCG@k and P@5 of each method per query group (the CSV's group column)."""
        names = sorted(set(groups.values()))
        self.stdout.write("\nBy query group (scored queries in brackets): nDCG@k / P@5")
        header = " ".join(f"{name:>14}" for name in names)
        self.stdout.write(f"{'method':<10} {header}")
        for report in reports:
            cells = []
            for name in names:
                members = {query for query, group in groups.items() if group == name}
                scored = sum(score.query in members for score in report.queries)
                if scored == 0:
                    no_match = [
                        count
                        for query, count in zip(
                            report.no_match_queries, report.no_match_results, strict=True
                        )
                        if query in members
                    ]
                    mean = sum(no_match) / len(no_match) if no_match else 0.0
                    cells.append(f"{f'{mean:.1f} results':>14}")
                    continue
                cell = (
                    f"{report.mean('ndcg', members):.3f}/"
                    f"{report.mean('precision_at_5', members):.3f} ({scored})"
                )
                cells.append(f"{cell:>14}")
            self.stdout.write(f"{report.method:<10} {' '.join(cells)}")

    def _print_per_query(self, reports: list[MethodReport]) -> None:
        for report in reports:
            self.stdout.write(f"\n{report.method}: nDCG@{report.k}, P@5, results, query")
            for score in report.queries:
                self.stdout.write(
                    f"{score.ndcg:.3f} {score.precision_at_5:.2f} {score.result_count:>3} "
                    f"{score.query}"
                )
