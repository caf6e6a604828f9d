"""Search evaluation: the metric arithmetic on hand-computed values, and the command."""

import math
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog.evaluation import (
    JudgmentFileError,
    condensed_ndcg_at_k,
    judged_share_at_k,
    judgments_load,
    ndcg_at_k,
    precision_at_k,
    query_groups_load,
    recall_at_k,
    search_evaluate,
)
from catalog.search import SearchMethod
from tests.catalog.helpers import DATA_DIR
from tests.catalog.test_search import add_products, load_products

GRADES = {"a": 3, "b": 2, "c": 0, "d": 1, "e": 3}
# "x" is unjudged.
RANKED = ["c", "a", "x", "b", "e"]
# Ideal order of the judged grades: 3, 3, 2, 1, 0.
IDEAL_DCG = 7 + 7 / math.log2(3) + 3 / math.log2(4) + 1 / math.log2(5)


def test_ndcg_counts_unjudged_as_zero():
    dcg = 7 / math.log2(3) + 3 / math.log2(5) + 7 / math.log2(6)

    assert ndcg_at_k(RANKED, GRADES, 10) == pytest.approx(dcg / IDEAL_DCG)
    assert ndcg_at_k(RANKED, GRADES, 10) == pytest.approx(0.63058, abs=1e-5)


def test_ndcg_cuts_at_k():
    assert ndcg_at_k(RANKED, GRADES, 2) == pytest.approx(
        (7 / math.log2(3)) / (7 + 7 / math.log2(3))
    )


def test_ndcg_perfect_and_empty():
    assert ndcg_at_k(["a", "e", "b", "d"], GRADES, 10) == pytest.approx(1.0)
    assert ndcg_at_k([], GRADES, 10) == 0.0
    assert ndcg_at_k(["a"], {"a": 0}, 10) == 0.0


def test_condensed_ndcg_drops_unjudged():
    dcg = 7 / math.log2(3) + 3 / math.log2(4) + 7 / math.log2(5)

    assert condensed_ndcg_at_k(RANKED, GRADES, 10) == pytest.approx(dcg / IDEAL_DCG)
    assert condensed_ndcg_at_k(RANKED, GRADES, 10) == pytest.approx(0.66915, abs=1e-5)


def test_precision_counts_grade_two_and_up():
    assert precision_at_k(RANKED, GRADES, 5) == pytest.approx(3 / 5)
    assert precision_at_k(["d", "c"], GRADES, 5) == 0.0
    assert precision_at_k(["a"], GRADES, 5) == pytest.approx(1 / 5)


def test_recall_over_relevant_judged():
    assert recall_at_k(RANKED, GRADES, 50) == pytest.approx(1.0)
    assert recall_at_k(RANKED, GRADES, 2) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, {"a": 1}, 50) == 0.0


def test_judged_share_of_returned():
    assert judged_share_at_k(RANKED, GRADES, 10) == pytest.approx(4 / 5)
    assert judged_share_at_k(RANKED, GRADES, 3) == pytest.approx(2 / 3)
    assert judged_share_at_k([], GRADES, 10) is None


def test_search_evaluate_scores_only_queries_with_relevant():
    judgments = {"q1": GRADES, "q2": {"a": 2}, "nothing": {"a": 1}, "unsold": {}}
    rankings = {"q1": RANKED, "q2": ["x", "a"], "nothing": ["a", "b"], "unsold": []}

    (report,) = search_evaluate(
        judgments=judgments,
        search=lambda query, method: rankings[query],
        methods=[SearchMethod.FULL_TEXT],
    )

    assert [score.query for score in report.queries] == ["q1", "q2"]
    assert report.no_match_queries == ["nothing", "unsold"]
    assert report.no_match_results == [2, 0]
    assert report.mean("ndcg") == pytest.approx((0.630580 + 1 / math.log2(3)) / 2, abs=1e-5)
    assert report.mean("precision_at_5") == pytest.approx((3 / 5 + 1 / 5) / 2)
    assert report.mean("judged_share") == pytest.approx((4 / 5 + 1 / 2) / 2)
    assert report.mean("condensed_ndcg", ["q2"]) == pytest.approx(1.0)


def test_judgments_load(tmp_path: Path):
    path = tmp_path / "judgments.csv"
    path.write_text(
        "# comment\nquery,docid,rating,group\nmilk,sku-1,3,en\nmilk,sku-2,0,en\nbeer,,,none\n",
        encoding="utf-8",
    )

    assert judgments_load(path) == {"milk": {"sku-1": 3, "sku-2": 0}, "beer": {}}
    assert query_groups_load(path) == {"milk": "en", "beer": "none"}


@pytest.mark.parametrize(
    ("_case", "content", "message"),
    [
        ("bad_grade", "query,docid,rating\nmilk,sku-1,4\n", "rating 4 is not between 0 and 3"),
        ("not_a_number", "query,docid,rating\nmilk,sku-1,high\n", "invalid rating 'high'"),
        ("missing_column", "query,sku\nmilk,sku-1\n", "expected the columns query,docid,rating"),
        ("no_rows", "query,docid,rating\n", "contains no query"),
        ("blank_query", "query,docid,rating\n ,sku-1,3\n", "contains no query"),
    ],
)
def test_judgments_load_rejects(tmp_path: Path, _case, content, message):
    path = tmp_path / "judgments.csv"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(JudgmentFileError, match=message):
        judgments_load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            "query,docid,rating\nmilk,sku-1,3\nbeer,sku-2\n",
            "line 3: expected 3 values (query,docid,rating); found 2.",
            id="short_row",
        ),
        pytest.param(
            "query,docid,rating\nmilk,sku-1,3\n" + "x" * 200_000 + ",sku-2,1\n",
            "line 3: the CSV row cannot be read (field larger than field limit (131072)).",
            id="cell_too_long",
        ),
    ],
)
def test_judgments_load_rejects_unreadable_row(tmp_path: Path, content, message):
    path = tmp_path / "judgments.csv"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(JudgmentFileError) as exc_info:
        judgments_load(path)

    assert str(exc_info.value) == f"{path}, {message}"


def test_judgments_load_skips_byte_order_mark(tmp_path: Path):
    path = tmp_path / "judgments.csv"
    path.write_bytes("query,docid,rating,group\nmilk,sku-1,3,en\n".encode("utf-8-sig"))

    assert judgments_load(path) == {"milk": {"sku-1": 3}}
    assert query_groups_load(path) == {"milk": "en"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            "# first\n# second\nquery,docid,rating\nmilk,sku-1,3\nmilk,sku-2,high\n",
            "line 5: invalid rating 'high'.",
            id="after_comments",
        ),
        pytest.param(
            "query,docid,rating\n# note\nmilk,sku-1,3\n# note\n\nbeer,sku-2\n",
            "line 6: expected 3 values (query,docid,rating); found 2.",
            id="between_comments_and_blank_lines",
        ),
        pytest.param(
            'query,docid,rating\n"milk\n2.5%",sku-1,3\nbeer,sku-2,7\n',
            "line 4: rating 7 is not between 0 and 3.",
            id="after_multiline_cell",
        ),
        pytest.param(
            "# comment\nquery,docid,rating\nmilk,sku-1,3\n" + "x" * 200_000 + ",sku-2,1\n",
            "line 4: the CSV row cannot be read (field larger than field limit (131072)).",
            id="unreadable_after_comment",
        ),
    ],
)
def test_judgments_load_error_names_file_line(tmp_path: Path, content, message):
    path = tmp_path / "judgments.csv"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(JudgmentFileError) as exc_info:
        judgments_load(path)

    assert str(exc_info.value) == f"{path}, {message}"


@pytest.mark.django_db
def test_evaluate_search_command(tenant, embedder, settings):
    add_products(tenant=tenant, products=load_products("grocery.json"), embedder=embedder)
    output = StringIO()

    call_command(
        "evaluate_search",
        tenant=tenant.slug,
        judgments=DATA_DIR / "evaluation-judgments.csv",
        methods="fulltext,hybrid",
        stdout=output,
    )

    lines = output.getvalue().splitlines()
    assert lines[0] == "3 queries, 2 scored (a product rated >= 2); relevant means rated >= 2."
    fulltext = lines[2].split()
    # ряжанка: its one relevant product first; кефір: both relevant kefirs first.
    assert fulltext[:7] == ["fulltext", "1.000", "0.300", "1.000", "1.000", "1.000", "0.0"]
    hybrid = lines[3].split()
    assert hybrid[0] == "hybrid"
    assert hybrid[1] == "1.000"
    # No product for "iphone": the hybrid search returns nothing rather than padding.
    assert hybrid[6] == "0.0"


@pytest.mark.django_db
def test_evaluate_search_command_unknown_method(tenant):
    with pytest.raises(CommandError, match="Unknown method 'bm25'"):
        call_command(
            "evaluate_search",
            tenant=tenant.slug,
            judgments=DATA_DIR / "evaluation-judgments.csv",
            methods="bm25",
        )


def test_judgments_load_rejects_non_utf8(tmp_path: Path):
    path = tmp_path / "judgments.csv"
    path.write_bytes(b"query,docid,rating\n\xff\xfe,sku-1,3\n")

    with pytest.raises(JudgmentFileError, match="not valid UTF-8"):
        judgments_load(path)
