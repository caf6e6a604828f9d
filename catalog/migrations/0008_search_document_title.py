"""Add a copy of the product title to the narrow search table (filled in by 0009).

A migration of its own, because adding a column locks the table against reads until the
migration commits. Adding a column with a constant default writes no row, so this one
commits at once and searches wait only for that moment. The default stays in the
database, so that the triggers of 0007, which do not name the column, can still insert.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0007_search_documents"),
    ]

    operations = [
        migrations.AddField(
            model_name="searchdocument",
            name="search_title",
            field=models.TextField(db_default=""),
        ),
    ]
