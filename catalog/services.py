"""Writes to the catalog: product upserts and embedding."""

import hashlib
import json
from collections.abc import Mapping

# Fields joined into the embedded text; a change to any of them re-embeds the product.
CONTENT_FIELDS = ("name", "description", "ingredients", "brand", "category_path", "country")


def product_content_fields_hash(fields: Mapping[str, str]) -> str:
    """Return the SHA-256 of the embedded content fields of one product."""
    payload = json.dumps(
        [(name, fields.get(name) or "") for name in CONTENT_FIELDS], ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()
