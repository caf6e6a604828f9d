"""Turn off fastupdate on the full-text and trigram GIN indexes.

The indexes are altered in place rather than rebuilt, and the pending lists that
fastupdate collected are merged into them at once.
"""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import migrations

INDEXES = ("product_search_vector_gin", "product_search_title_trgm")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_catalogjob")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    sql=[
                        *(f"ALTER INDEX {name} SET (fastupdate = off)" for name in INDEXES),
                        *(f"SELECT gin_clean_pending_list('{name}'::regclass)" for name in INDEXES),
                    ],
                    reverse_sql=[f"ALTER INDEX {name} RESET (fastupdate)" for name in INDEXES],
                )
            ],
            state_operations=[
                migrations.RemoveIndex(model_name="product", name="product_search_vector_gin"),
                migrations.RemoveIndex(model_name="product", name="product_search_title_trgm"),
                migrations.AddIndex(
                    model_name="product",
                    index=GinIndex(
                        fields=["search_vector"], name="product_search_vector_gin", fastupdate=False
                    ),
                ),
                migrations.AddIndex(
                    model_name="product",
                    index=GinIndex(
                        OpClass("search_title", name="gin_trgm_ops"),
                        name="product_search_title_trgm",
                        fastupdate=False,
                    ),
                ),
            ],
        )
    ]
