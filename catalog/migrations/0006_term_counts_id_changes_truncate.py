"""Keep the term counts right after UPDATEs that change a product's id, and after TRUNCATE.

The UPDATE trigger of migration 0005 paired the old and new rows by id, so a row whose id
changed was counted in neither and its old lexemes stayed counted. The new function pairs
them with a full join: an unpaired old row counts -1 for each lexeme and an unpaired new row
+1, and rows whose contributions are equal still cancel out. TRUNCATE fires no DELETE
trigger, so a TRUNCATE trigger now deletes every count. TRUNCATE holds an exclusive lock on
the product table until its transaction ends, so no count can change concurrently.
"""

import importlib

from django.db import migrations

_PREVIOUS = importlib.import_module("catalog.migrations.0005_term_counts")


def _update_function(changes: str) -> str:
    """Return SQL that creates or replaces the UPDATE trigger function for ``changes``."""
    created = _PREVIOUS._TRIGGER_FUNCTION.format(
        operation="update", gather=_PREVIOUS._GATHER.format(changes=changes)
    )
    return created.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


# The same changes as in 0005, with old and new rows paired by a full join on id.
_PAIRED_BY_ID = "FROM old_products AS old_row JOIN new_products AS new_row USING (id)"
if _PAIRED_BY_ID not in _PREVIOUS._UPDATED:
    raise RuntimeError("Migration 0005's UPDATE changes no longer pair rows as 0006 expects.")
_UPDATED = _PREVIOUS._UPDATED.replace(_PAIRED_BY_ID, _PAIRED_BY_ID.replace(" JOIN", " FULL JOIN"))

_TRUNCATE_TRIGGER = """
CREATE FUNCTION catalog_term_counts_after_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM catalog_termcount;
    RETURN NULL;
END
$$;
CREATE TRIGGER catalog_term_counts_truncate AFTER TRUNCATE ON catalog_product
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_term_counts_after_truncate();
"""


class Migration(migrations.Migration):
    dependencies = [("catalog", "0005_term_counts")]

    operations = [
        migrations.RunSQL(
            sql=_update_function(_UPDATED) + _TRUNCATE_TRIGGER,
            reverse_sql=(
                "DROP TRIGGER catalog_term_counts_truncate ON catalog_product;\n"
                "DROP FUNCTION catalog_term_counts_after_truncate();\n"
                + _update_function(_PREVIOUS._UPDATED)
            ),
        ),
    ]
