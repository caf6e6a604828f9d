"""Count, per tenant and lexeme, the active products whose full-text document contains it.

Search read its document frequencies by counting matching products, which reads every
product holding a common word. The counts now live in ``catalog_termcount``, kept by
statement triggers on ``catalog_product`` in the transaction of each write.

Each trigger turns the statement's transition tables into per-lexeme changes: +1 for each
lexeme of an active row written, -1 for each lexeme of an active row replaced or deleted.
An UPDATE that leaves the tenant, ``is_active`` and ``search_vector`` of every row as they
were (an embedding write) changes nothing and takes no lock. Otherwise the trigger locks
the tenants' rows, as the catalog version bump does in the same transaction, so the counts
of one tenant change one transaction at a time. Rows whose count falls to zero are
deleted.

Creating the triggers locks the product table against writes until the migration commits,
so the counts filled in afterwards miss no concurrent write.
"""

from django.db import migrations, models
import django.db.models.deletion

_APPLY_FUNCTION = """
CREATE FUNCTION catalog_term_counts_apply(tenant_ids bigint[], lexemes text[], deltas integer[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(tenant_ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM 1 FROM tenants_tenant WHERE id = ANY(tenant_ids) ORDER BY id FOR NO KEY UPDATE;
    INSERT INTO catalog_termcount AS term (tenant_id, lexeme, documents)
    SELECT change.tenant_id, change.lexeme, change.delta
    FROM unnest(tenant_ids, lexemes, deltas) AS change(tenant_id, lexeme, delta)
    WHERE change.delta > 0
    ORDER BY change.tenant_id, change.lexeme
    ON CONFLICT (tenant_id, lexeme)
    DO UPDATE SET documents = term.documents + excluded.documents;
    UPDATE catalog_termcount AS term SET documents = term.documents + change.delta
    FROM unnest(tenant_ids, lexemes, deltas) AS change(tenant_id, lexeme, delta)
    WHERE change.delta < 0 AND term.tenant_id = change.tenant_id
      AND term.lexeme = change.lexeme;
    DELETE FROM catalog_termcount AS term
    USING unnest(tenant_ids, lexemes, deltas) AS change(tenant_id, lexeme, delta)
    WHERE change.delta < 0 AND term.tenant_id = change.tenant_id
      AND term.lexeme = change.lexeme AND term.documents <= 0;
END
$$;
"""

# Each function gathers the statement's changes, summed per tenant and lexeme, into three
# arrays sorted by tenant and lexeme, and hands them to catalog_term_counts_apply.
_GATHER = """
    SELECT coalesce(array_agg(tenant_id ORDER BY tenant_id, lexeme), '{{}}'),
           coalesce(array_agg(lexeme::text ORDER BY tenant_id, lexeme), '{{}}'),
           coalesce(array_agg(delta::integer ORDER BY tenant_id, lexeme), '{{}}')
    INTO tenant_ids, lexemes, deltas
    FROM ({changes}) AS summed
    WHERE delta <> 0;
"""

_TRIGGER_FUNCTION = """
CREATE FUNCTION catalog_term_counts_after_{operation}() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tenant_ids bigint[];
    lexemes text[];
    deltas integer[];
BEGIN
{gather}
    PERFORM catalog_term_counts_apply(tenant_ids, lexemes, deltas);
    RETURN NULL;
END
$$;
"""

_INSERTED = """
        SELECT tenant_id, entry.lexeme, count(*) AS delta
        FROM new_products, unnest(search_vector) AS entry
        WHERE is_active
        GROUP BY tenant_id, entry.lexeme"""

_DELETED = """
        SELECT tenant_id, entry.lexeme, -count(*) AS delta
        FROM old_products, unnest(search_vector) AS entry
        WHERE is_active
        GROUP BY tenant_id, entry.lexeme"""

_UPDATED = """
        WITH changed AS (
            SELECT old_row.tenant_id AS old_tenant_id, old_row.is_active AS old_active,
                   old_row.search_vector AS old_vector, new_row.tenant_id AS new_tenant_id,
                   new_row.is_active AS new_active, new_row.search_vector AS new_vector
            FROM old_products AS old_row JOIN new_products AS new_row USING (id)
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
        GROUP BY tenant_id, lexeme"""

_TRIGGERS = """
CREATE TRIGGER catalog_term_counts_insert AFTER INSERT ON catalog_product
    REFERENCING NEW TABLE AS new_products
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_term_counts_after_insert();
CREATE TRIGGER catalog_term_counts_update AFTER UPDATE ON catalog_product
    REFERENCING OLD TABLE AS old_products NEW TABLE AS new_products
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_term_counts_after_update();
CREATE TRIGGER catalog_term_counts_delete AFTER DELETE ON catalog_product
    REFERENCING OLD TABLE AS old_products
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_term_counts_after_delete();
"""

_FILL = """
INSERT INTO catalog_termcount (tenant_id, lexeme, documents)
SELECT tenant_id, entry.lexeme, count(*)
FROM catalog_product, unnest(search_vector) AS entry
WHERE is_active
GROUP BY tenant_id, entry.lexeme;
"""

_FORWARD = "\n".join(
    [
        _APPLY_FUNCTION,
        *(
            _TRIGGER_FUNCTION.format(
                operation=operation, gather=_GATHER.format(changes=changes)
            )
            for operation, changes in (
                ("insert", _INSERTED),
                ("update", _UPDATED),
                ("delete", _DELETED),
            )
        ),
        _TRIGGERS,
        _FILL,
    ]
)

_REVERSE = """
DROP TRIGGER catalog_term_counts_insert ON catalog_product;
DROP TRIGGER catalog_term_counts_update ON catalog_product;
DROP TRIGGER catalog_term_counts_delete ON catalog_product;
DROP FUNCTION catalog_term_counts_after_insert();
DROP FUNCTION catalog_term_counts_after_update();
DROP FUNCTION catalog_term_counts_after_delete();
DROP FUNCTION catalog_term_counts_apply(bigint[], text[], integer[]);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0004_field_word_counts"),
        ("tenants", "0003_catalog_version"),
    ]

    operations = [
        migrations.CreateModel(
            name="TermCount",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("lexeme", models.TextField(db_collation="C")),
                ("documents", models.IntegerField()),
                (
                    "tenant",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="term_counts",
                        to="tenants.tenant",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant", "lexeme"), name="uniq_term_count_lexeme"
                    )
                ],
            },
        ),
        migrations.RunSQL(sql=_FORWARD, reverse_sql=_REVERSE),
    ]
