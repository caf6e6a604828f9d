"""Move the trigram index on product titles to the narrow search table.

The typo stage of search reads titles through a trigram GIN index. On the product table,
every write of a product's vector added about 40 entries to that index (one per trigram of
the title), because an UPDATE that changes an indexed column, here the vector, adds a new
entry to every index of the table. The triggers now copy ``search_title`` into
``catalog_searchdocument`` with the other columns, and the index moves there.

The product table is locked against writes first, so the titles copied in afterwards miss
no concurrent write. Searches go on until the old index is dropped, at the end.
"""

import django.contrib.postgres.indexes
from django.db import migrations

_BEFORE = (
    "tenant_id, is_active, category_path, search_vector, search_title_words, search_body_words"
)
_AFTER = _BEFORE + ", search_title"


def _write_function(columns: str) -> str:
    values = ", ".join(f"NEW.{column}" for column in columns.split(", "))
    updates = ",\n        ".join(f"{column} = excluded.{column}" for column in columns.split(", "))
    return f"""
CREATE OR REPLACE FUNCTION catalog_search_document_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.id <> NEW.id THEN
        DELETE FROM catalog_searchdocument WHERE product_id = OLD.id;
    END IF;
    INSERT INTO catalog_searchdocument (product_id, {columns})
    VALUES (NEW.id, {values})
    ON CONFLICT (product_id) DO UPDATE SET
        {updates};
    RETURN NULL;
END
$$;
"""


def _update_trigger(columns: str) -> str:
    old = ", ".join(f"OLD.{column}" for column in columns.split(", "))
    new = ", ".join(f"NEW.{column}" for column in columns.split(", "))
    return f"""
CREATE OR REPLACE TRIGGER catalog_search_document_update
AFTER UPDATE ON catalog_product
FOR EACH ROW
WHEN ((OLD.id, {old}) IS DISTINCT FROM (NEW.id, {new}))
EXECUTE FUNCTION catalog_search_document_write();
"""


_FORWARD = (
    "LOCK TABLE catalog_product IN SHARE ROW EXCLUSIVE MODE;\n"
    + _write_function(_AFTER)
    + _update_trigger(_AFTER)
    + """
UPDATE catalog_searchdocument AS document SET search_title = product.search_title
FROM catalog_product AS product
WHERE product.id = document.product_id;
"""
)

_BACKWARD = (
    "LOCK TABLE catalog_product IN SHARE ROW EXCLUSIVE MODE;\n"
    + _write_function(_BEFORE)
    + _update_trigger(_BEFORE)
)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0008_search_document_title"),
    ]

    operations = [
        migrations.RunSQL(sql=_FORWARD, reverse_sql=_BACKWARD),
        migrations.AddIndex(
            model_name="searchdocument",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass("search_title", name="gin_trgm_ops"),
                fastupdate=False,
                name="search_document_title_trgm",
            ),
        ),
        # Last, because dropping an index locks its table against reads too, so searches
        # wait only for the end of the migration rather than all of it.
        migrations.RemoveIndex(
            model_name="product",
            name="product_search_title_trgm",
        ),
    ]
