"""Offline evaluation of product search against graded relevance judgments.

A judgment file is a CSV with the header ``query,docid,rating``: ``docid`` is a product SKU
and ``rating`` a grade from 0 (irrelevant) to 3 (exactly what the query asks for). A
product not listed for a query is unjudged.

Metrics, for one query and a ranked list of SKUs:

- nDCG@k: DCG = Σ (2^grade − 1) / log2(rank + 1) over the first k results, with unjudged
  results counting as grade 0; the ideal DCG comes from all judged products of the query
  sorted by grade.
- nDCG@k over judged results ("condensed" list): unjudged results are dropped before the
  list is cut at k, so the score measures how the judged products are ordered.
- precision@k: the share of the first k positions holding a relevant product (grade ≥ 2).
  Missing positions count as not relevant, so a list shorter than k is penalised.
- recall@k: the share of the query's relevant judged products (grade ≥ 2) in the first k.
- judged share@k: the share of the returned results among the first k that are judged. It
  tells how far nDCG@k can be trusted: unjudged results may be relevant.

Only queries with at least one product graded ≥ 2 are scored. The other queries are
listed as "no-match" queries, whose useful measure is how many results come back at all.
"""

import csv
import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from catalog.search import SearchMethod

RELEVANT_GRADE = 2
MAX_GRADE = 3

Grades = Mapping[str, int]
RankedSkus = Sequence[str]


class JudgmentFileError(ValueError):
    """The judgment file is missing, not a CSV with ``query,docid,rating``, or has bad rows."""


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Read the CSV rows of a judgment file, each with the file line on which it ends.

    Lines starting with ``#`` are comments. A UTF-8 byte order mark, which spreadsheet
    programs write, is skipped. The line numbers count comments too, so they match what an
    editor shows.
    """
    # File line numbers of the lines passed to the CSV reader, which receives no comments.
    line_numbers: list[int] = []

    def data_lines(file: Iterable[str]) -> Iterator[str]:
        for number, line in enumerate(file, start=1):
            if not line.startswith("#"):
                line_numbers.append(number)
                yield line

    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            reader = csv.DictReader(data_lines(file))
            rows: list[tuple[int, dict[str, str]]] = []
            try:
                for row in reader:
                    rows.append((line_numbers[reader.line_num - 1], row))
            except csv.Error as exc:
                # When the reader raises, line_num does not yet count the failing line
                # (observed with CPython 3.11's csv module).
                failing = line_numbers[min(reader.line_num, len(line_numbers) - 1)]
                raise JudgmentFileError(
                    f"{path}, line {failing}: the CSV row cannot be read ({exc})."
                ) from None
            return rows
    except OSError as exc:
        raise JudgmentFileError(f"Cannot read the judgment file {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise JudgmentFileError(
            f"The judgment file {path} is not valid UTF-8 (byte {exc.start});"
            " save it as UTF-8 and retry."
        ) from exc


def judgments_load(path: Path) -> dict[str, dict[str, int]]:
    """Read a ``query,docid,rating`` CSV into ``{query: {sku: grade}}``, in file order.

    A row with an empty ``docid`` declares a query without listing a product, which is how
    a judged set states that a shop sells nothing matching that query. A file without a
    query raises ``JudgmentFileError``.
    """
    rows = _read_rows(path)

    judgments: dict[str, dict[str, int]] = {}
    for line, row in rows:
        if not {"query", "docid", "rating"} <= row.keys():
            raise JudgmentFileError(
                f"{path}: expected the columns query,docid,rating; found {list(row)}."
            )
        query, docid, rating = (row[name] for name in ("query", "docid", "rating"))
        # csv.DictReader fills the columns that a short row lacks with None.
        if query is None or docid is None or rating is None:
            raise JudgmentFileError(
                f"{path}, line {line}: expected 3 values (query,docid,rating); "
                f"found {sum(value is not None for value in (query, docid, rating))}."
            )
        grades = judgments.setdefault(query.strip(), {})
        if not docid.strip():
            continue
        grades[docid.strip()] = _parse_grade(rating, path=path, line=line)
    judgments.pop("", None)
    if not judgments:
        raise JudgmentFileError(f"{path} contains no query: add rows of query,docid,rating.")
    return judgments


def query_groups_load(path: Path) -> dict[str, str]:
    """Read the optional ``group`` column of a judgment CSV into ``{query: group}``.

    Groups label queries for separate reporting, such as their language. Returns {} when
    the file has no such column.
    """
    rows = _read_rows(path)
    return {
        row["query"].strip(): row["group"].strip()
        for _, row in rows
        if row.get("group") and row.get("query")
    }


def _parse_grade(value: str, *, path: Path, line: int) -> int:
    try:
        grade = int(value)
    except ValueError:
        raise JudgmentFileError(f"{path}, line {line}: invalid rating {value!r}.") from None
    if not 0 <= grade <= MAX_GRADE:
        raise JudgmentFileError(f"{path}, line {line}: rating {grade} is not between 0 and 3.")
    return grade


def _dcg(grades: Iterable[int]) -> float:
    return sum((2**grade - 1) / math.log2(rank + 1) for rank, grade in enumerate(grades, start=1))


def ndcg_at_k(ranked: RankedSkus, grades: Grades, k: int = 10) -> float:
    """Return nDCG@k of ``ranked``; unjudged results count as grade 0."""
    ideal = _dcg(sorted(grades.values(), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return _dcg(grades.get(sku, 0) for sku in ranked[:k]) / ideal


def condensed_ndcg_at_k(ranked: RankedSkus, grades: Grades, k: int = 10) -> float:
    """Return nDCG@k of ``ranked`` after dropping its unjudged results."""
    return ndcg_at_k([sku for sku in ranked if sku in grades], grades, k)


def precision_at_k(ranked: RankedSkus, grades: Grades, k: int = 5) -> float:
    """Return the share of the first ``k`` positions that hold a product graded ≥ 2."""
    return sum(grades.get(sku, 0) >= RELEVANT_GRADE for sku in ranked[:k]) / k


def recall_at_k(ranked: RankedSkus, grades: Grades, k: int = 50) -> float:
    """Return the share of the products graded ≥ 2 that appear in the first ``k``."""
    relevant = {sku for sku, grade in grades.items() if grade >= RELEVANT_GRADE}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def judged_share_at_k(ranked: RankedSkus, grades: Grades, k: int = 10) -> float | None:
    """Return the share of the returned results among the first ``k`` that are judged.

    Returns None for an empty result list, which has no share.
    """
    top = ranked[:k]
    if not top:
        return None
    return sum(sku in grades for sku in top) / len(top)


def has_relevant(grades: Grades) -> bool:
    """Tell whether a query has a judged product graded ≥ 2, so that it is scored."""
    return any(grade >= RELEVANT_GRADE for grade in grades.values())


@dataclass(frozen=True)
class QueryScore:
    """The metrics of one scored query under one method."""

    query: str
    ndcg: float
    precision_at_5: float
    recall_at_50: float
    judged_share: float | None
    condensed_ndcg: float
    result_count: int


@dataclass(frozen=True)
class MethodReport:
    """The metrics of one search method averaged over the scored queries.

    ``no_match_queries`` are the queries without a product graded ≥ 2, in the order of the
    judgment file, and ``no_match_results`` the number of results returned for each.
    """

    method: str
    k: int
    queries: list[QueryScore]
    no_match_queries: list[str] = field(default_factory=list)
    no_match_results: list[int] = field(default_factory=list)
    mean_latency_ms: float = 0.0

    def mean(self, metric: str, queries: Iterable[str] | None = None) -> float:
        """Average ``metric`` over the scored queries, or over those of them in ``queries``."""
        selected = (
            self.queries
            if queries is None
            else [score for score in self.queries if score.query in set(queries)]
        )
        values = [getattr(score, metric) for score in selected]
        present = [value for value in values if value is not None]
        return statistics.fmean(present) if present else 0.0


def query_score(*, query: str, ranked: RankedSkus, grades: Grades, k: int = 10) -> QueryScore:
    """Compute every metric of one query; ``ranked`` should hold at least 50 results."""
    return QueryScore(
        query=query,
        ndcg=ndcg_at_k(ranked, grades, k),
        precision_at_5=precision_at_k(ranked, grades, 5),
        recall_at_50=recall_at_k(ranked, grades, 50),
        judged_share=judged_share_at_k(ranked, grades, k),
        condensed_ndcg=condensed_ndcg_at_k(ranked, grades, k),
        result_count=len(ranked),
    )


SearchFunction = Callable[[str, SearchMethod], list[str]]


def search_evaluate(
    *,
    judgments: Mapping[str, Grades],
    search: SearchFunction,
    methods: Sequence[SearchMethod],
    k: int = 10,
) -> list[MethodReport]:
    """Run every judged query through ``search(query, method)`` and score the rankings.

    ``search`` returns SKUs best first and should return up to 50 of them, the depth of
    recall@50.
    """
    reports = []
    for method in methods:
        scores: list[QueryScore] = []
        no_match_queries: list[str] = []
        no_match_results: list[int] = []
        started = time.monotonic()
        for query, grades in judgments.items():
            ranked = search(query, method)
            if has_relevant(grades):
                scores.append(query_score(query=query, ranked=ranked, grades=grades, k=k))
            else:
                no_match_queries.append(query)
                no_match_results.append(len(ranked))
        elapsed_ms = (time.monotonic() - started) * 1000
        reports.append(
            MethodReport(
                method=method.value,
                k=k,
                queries=scores,
                no_match_queries=no_match_queries,
                no_match_results=no_match_results,
                mean_latency_ms=elapsed_ms / max(len(judgments), 1),
            )
        )
    return reports
