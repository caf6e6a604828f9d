"""Store the word counts of the full-text title and body, which BM25F normalises by.

Adding a stored generated column rewrites the product table, so both columns are added by
one ALTER TABLE: the table is rewritten once, under an exclusive lock, taking about as long
as copying the table.
"""

import django.contrib.postgres.fields
from django.db import migrations, models


def _word_count(field_name: str) -> models.Func:
    words = models.Func(
        models.F(field_name),
        models.Value(" "),
        function="string_to_array",
        output_field=django.contrib.postgres.fields.ArrayField(base_field=models.TextField()),
    )
    return models.Func(words, function="cardinality", output_field=models.IntegerField())


class Migration(migrations.Migration):
    dependencies = [("catalog", "0003_gin_indexes_without_fastupdate")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    sql=(
                        "ALTER TABLE catalog_product"
                        " ADD COLUMN search_title_words integer GENERATED ALWAYS AS"
                        " (cardinality(string_to_array(search_title, ' '))) STORED,"
                        " ADD COLUMN search_body_words integer GENERATED ALWAYS AS"
                        " (cardinality(string_to_array(search_body, ' '))) STORED"
                    ),
                    reverse_sql=(
                        "ALTER TABLE catalog_product"
                        " DROP COLUMN search_title_words, DROP COLUMN search_body_words"
                    ),
                )
            ],
            state_operations=[
                migrations.AddField(
                    model_name="product",
                    name=name,
                    field=models.GeneratedField(
                        expression=_word_count(source),
                        output_field=models.IntegerField(),
                        db_persist=True,
                    ),
                )
                for name, source in (
                    ("search_title_words", "search_title"),
                    ("search_body_words", "search_body"),
                )
            ],
        )
    ]
