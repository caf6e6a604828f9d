"""Copy the columns that the lexical stage of search reads into a narrow table.

A search reads one row per product that contains a query word. Product rows are wide
(names, descriptions and often the 1.5 KiB vector), so PostgreSQL visited about one page
per matching product. ``catalog_searchdocument`` holds only the tenant, ``is_active``, the
category path, ``search_vector`` and the field word counts, about a sixth of a product
row, with the full-text GIN index, which moves off the product table.

Row triggers on ``catalog_product`` keep the copy in the transaction of every write,
including writes that bypass the catalog services. An UPDATE that changes none of the
copied columns (an embedding write) writes nothing. TRUNCATE empties the copy.

Creating the triggers locks the product table against writes until the migration commits,
so the copy filled in afterwards misses no concurrent write. Searches go on until the old
index is dropped, at the end.
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.deletion
from django.db import migrations, models


_COPIED = (
    "tenant_id, is_active, category_path, search_vector, search_title_words, search_body_words"
)

_FUNCTIONS = f"""
CREATE FUNCTION catalog_search_document_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.id <> NEW.id THEN
        DELETE FROM catalog_searchdocument WHERE product_id = OLD.id;
    END IF;
    INSERT INTO catalog_searchdocument (product_id, {_COPIED})
    VALUES (NEW.id, NEW.tenant_id, NEW.is_active, NEW.category_path, NEW.search_vector,
            NEW.search_title_words, NEW.search_body_words)
    ON CONFLICT (product_id) DO UPDATE SET
        tenant_id = excluded.tenant_id,
        is_active = excluded.is_active,
        category_path = excluded.category_path,
        search_vector = excluded.search_vector,
        search_title_words = excluded.search_title_words,
        search_body_words = excluded.search_body_words;
    RETURN NULL;
END
$$;

CREATE FUNCTION catalog_search_document_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM catalog_searchdocument WHERE product_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION catalog_search_document_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- DELETE rather than TRUNCATE: a TRUNCATE of both tables in one statement (a test
    -- database flush) would otherwise truncate a table that the statement is using.
    DELETE FROM catalog_searchdocument;
    RETURN NULL;
END
$$;
"""

_TRIGGERS = f"""
LOCK TABLE catalog_product IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER catalog_search_document_insert
AFTER INSERT ON catalog_product
FOR EACH ROW EXECUTE FUNCTION catalog_search_document_write();

CREATE TRIGGER catalog_search_document_update
AFTER UPDATE ON catalog_product
FOR EACH ROW
WHEN ((OLD.id, OLD.{_COPIED.replace(", ", ", OLD.")})
      IS DISTINCT FROM (NEW.id, NEW.{_COPIED.replace(", ", ", NEW.")}))
EXECUTE FUNCTION catalog_search_document_write();

CREATE TRIGGER catalog_search_document_delete
AFTER DELETE ON catalog_product
FOR EACH ROW EXECUTE FUNCTION catalog_search_document_delete();

CREATE TRIGGER catalog_search_document_truncate
AFTER TRUNCATE ON catalog_product
FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_document_truncate();

INSERT INTO catalog_searchdocument (product_id, {_COPIED})
SELECT id, {_COPIED} FROM catalog_product;
"""

_DROP = """
DROP TRIGGER catalog_search_document_truncate ON catalog_product;
DROP TRIGGER catalog_search_document_delete ON catalog_product;
DROP TRIGGER catalog_search_document_update ON catalog_product;
DROP TRIGGER catalog_search_document_insert ON catalog_product;
DROP FUNCTION catalog_search_document_truncate();
DROP FUNCTION catalog_search_document_delete();
DROP FUNCTION catalog_search_document_write();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0006_term_counts_id_changes_truncate"),
        ("tenants", "0003_catalog_version"),
    ]

    operations = [
        migrations.CreateModel(
            name="SearchDocument",
            fields=[
                (
                    "product",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="search_document",
                        serialize=False,
                        to="catalog.product",
                    ),
                ),
                ("is_active", models.BooleanField()),
                ("category_path", models.CharField(max_length=500)),
                ("search_vector", django.contrib.postgres.search.SearchVectorField(null=True)),
                ("search_title_words", models.IntegerField(null=True)),
                ("search_body_words", models.IntegerField(null=True)),
            ],
        ),
        migrations.AddField(
            model_name="searchdocument",
            name="tenant",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="tenants.tenant",
            ),
        ),
        migrations.AddIndex(
            model_name="searchdocument",
            index=django.contrib.postgres.indexes.GinIndex(
                fastupdate=False, fields=["search_vector"], name="search_document_vector_gin"
            ),
        ),
        migrations.RunSQL(sql=_FUNCTIONS + _TRIGGERS, reverse_sql=_DROP),
        # Last, because dropping an index locks its table against reads too, so searches
        # wait only for the end of the migration rather than all of it.
        migrations.RemoveIndex(
            model_name="product",
            name="product_search_vector_gin",
        ),
    ]
