"""Import the Chorus Icecat electronics catalog as one tenant, for ``evaluate_search``.

Usage, from the repository root::

    python benchmarks/chorus_import.py PATH_TO_CHORUS_DATA --tenant chorus

PATH_TO_CHORUS_DATA is the folder with ``products_1.json.zip`` … ``products_4.json.zip``
(each zip contains one JSON array of products). The products are mapped to catalog products
and go through ``catalog_import``, the same path as ``manage.py import_catalog``, so they
are upserted and embedded like any merchant's catalog. Embedding 19,406 products takes
about 6–10 minutes on 2 cores. Running the script again re-imports unchanged products
without embedding them again.

Field mapping: ``title`` → name (it carries brand, model and product type), ``supplier``
→ brand, ``short_description`` → description (``<br />`` and other tags removed), the
first ``ean`` → barcode, ``id`` → sku (the ``docid`` of the judgments), ``name`` (the
model code) and the product-type attributes → attributes. Attributes are stored but
neither embedded nor indexed for full-text search.
"""

import argparse
import html
import json
import re
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _django import setup_django

_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")
# Textual attributes that name what the product is; the rest are measurements and specs.
_TYPE_ATTRIBUTES = ("attr_t_product_type", "attr_t_type", "attr_t_form_factor")


def _plain_text(value: Any) -> str:
    text = _TAG.sub(" ", html.unescape(str(value or "")))
    return _SPACES.sub(" ", text).strip()


def read_chorus_products(data_dir: Path) -> Iterator[dict[str, Any]]:
    """Yield the raw Chorus products of every ``products_*.json.zip`` in ``data_dir``."""
    archives = sorted(data_dir.glob("products_*.json.zip"))
    if not archives:
        raise SystemExit(f"No products_*.json.zip files in {data_dir}.")
    for archive in archives:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                yield from json.loads(zipped.read(member))


def chorus_product_input(raw: dict[str, Any]) -> dict[str, Any]:
    """Map one Chorus product to the fields of ``catalog.schemas.ProductInput``."""
    barcodes = raw.get("ean") or []
    attributes = {"model": _plain_text(raw.get("name"))}
    for key in _TYPE_ATTRIBUTES:
        if raw.get(key):
            attributes[key.removeprefix("attr_t_")] = _plain_text(raw[key])
    return {
        "sku": str(raw["id"]),
        "name": _plain_text(raw.get("title") or raw.get("name"))[:500],
        "brand": _plain_text(raw.get("supplier"))[:200],
        "description": _plain_text(raw.get("short_description")),
        "barcode": str(barcodes[0])[:64] if barcodes else "",
        "attributes": attributes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="Folder with products_*.json.zip.")
    parser.add_argument("--tenant", default="chorus", help="Tenant slug (created if missing).")
    parser.add_argument(
        "--no-embed", action="store_true", help="Import without embedding the products."
    )
    args = parser.parse_args()

    setup_django()
    from catalog.importing import catalog_import
    from tenants.models import Tenant
    from tenants.services import tenant_create

    tenant = Tenant.objects.filter(slug=args.tenant).first()
    if tenant is None:
        tenant = tenant_create(name=f"Chorus ({args.tenant})", slug=args.tenant).tenant

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "chorus.jsonl"
        with path.open("w", encoding="utf-8") as file:
            for raw in read_chorus_products(args.data_dir):
                file.write(json.dumps(chorus_product_input(raw), ensure_ascii=False) + "\n")
        started = time.monotonic()
        report = catalog_import(tenant=tenant, path=path, embed=not args.no_embed)

    print(
        f"tenant={tenant.slug} created={report.created} updated={report.updated} "
        f"unchanged={report.unchanged} rejected={len(report.rejected)} "
        f"embedded={report.embedded} pending={report.pending_embedding} "
        f"seconds={time.monotonic() - started:.1f}"
    )
    for rejected in report.rejected[:20]:
        print(f"rejected line {rejected.line}: {rejected.reason}", file=sys.stderr)


if __name__ == "__main__":
    main()
