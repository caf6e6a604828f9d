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

_UPDATE_FUNCTION = """
CREATE OR REPLACE FUNCTION catalog_term_counts_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tenant_ids bigint[];
    lexemes text[];
    deltas integer[];
BEGIN
    SELECT coalesce(array_agg(tenant_id ORDER BY tenant_id, lexeme), '{}'),
           coalesce(array_agg(lexeme::text ORDER BY tenant_id, lexeme), '{}'),
           coalesce(array_agg(delta::integer ORDER BY tenant_id, lexeme), '{}')
    INTO tenant_ids, lexemes, deltas
    FROM (
        WITH changed AS (
            SELECT old_row.tenant_id AS old_tenant_id, old_row.is_active AS old_active,
                   old_row.search_vector AS old_vector, new_row.tenant_id AS new_tenant_id,
                   new_row.is_active AS new_active, new_row.search_vector AS new_vector
            FROM old_products AS old_row FULL JOIN new_products AS new_row USING (id)
            WHERE (old_row.tenant_id, old_row.is_active, old_row.search_vector)
                  IS DISTINCT FROM (new_row.tenant_id, new_row.is_active, new_row.search_vector)
        ),
        entries AS (
            SELECT old_tenant_id AS tenant_id, entry.lexeme, -1 AS delta
            FROM changed, unnest(old_vector) AS entry
            WHERE old_active
            UNION ALL
            SELECT new_tenant_id, entry.lexeme, 1
            FROM changed, unnest(new_vector) AS entry
            WHERE new_active
        )
        SELECT tenant_id, lexeme, sum(delta) AS delta
        FROM entries
        GROUP BY tenant_id, lexeme
    ) AS summed
    WHERE delta <> 0;
    PERFORM catalog_term_counts_apply(tenant_ids, lexemes, deltas);
    RETURN NULL;
END
$$;
"""

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


def _previous_update_function() -> str:
    """Return the SQL that restores migration 0005's UPDATE trigger function."""
    previous = importlib.import_module("catalog.migrations.0005_term_counts")
    created = previous._TRIGGER_FUNCTION.format(
        operation="update", gather=previous._GATHER.format(changes=previous._UPDATED)
    )
    return created.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0005_term_counts")]

    operations = [
        migrations.RunSQL(
            sql=_UPDATE_FUNCTION + _TRUNCATE_TRIGGER,
            reverse_sql=(
                "DROP TRIGGER catalog_term_counts_truncate ON catalog_product;\n"
                "DROP FUNCTION catalog_term_counts_after_truncate();\n"
                + _previous_update_function()
            ),
        ),
    ]
