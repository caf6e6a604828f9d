"""Store the webhook and user token secrets encrypted (see tenants/encryption.py).

Forward, the columns become text, because the encrypted form of a 200-character secret is
longer than 200 characters, and every plain value is encrypted with the first key of
VIZOCHOK_ENCRYPTION_KEYS. Backward, every value is decrypted and the columns become
varchar(200) again. A value that no configured key decrypts stops the reverse migration,
which then changes nothing.
"""

from django.core.management.base import CommandError
from django.db import migrations

import tenants.encryption

# Table and secret columns of each model, named as in the database.
SECRET_COLUMNS = [
    ("tenants_tenant", ("user_token_secret",)),
    ("tenants_webhooksettings", ("secret", "next_secret")),
]


def _convert_rows(schema_editor, convert):
    with schema_editor.connection.cursor() as cursor:
        for table, columns in SECRET_COLUMNS:
            cursor.execute(f"SELECT id, {', '.join(columns)} FROM {table} FOR UPDATE")
            for row_id, *values in cursor.fetchall():
                for column, value in zip(columns, values, strict=True):
                    converted = convert(value or "", table=table, column=column, row_id=row_id)
                    if converted != (value or ""):
                        cursor.execute(
                            f"UPDATE {table} SET {column} = %s WHERE id = %s", [converted, row_id]
                        )
        # PostgreSQL refuses an ALTER TABLE, which the reverse migration runs next, while
        # the deferred foreign key checks of these updates are pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _encrypt_plain(value, *, table, column, row_id):
    if not value or tenants.encryption.is_encrypted(value):
        return value
    return tenants.encryption.encrypt(value)


def _decrypt(value, *, table, column, row_id):
    try:
        return tenants.encryption.decrypt(value)
    except tenants.encryption.UndecryptableValueError:
        # A CommandError, because migrate prints its message without a traceback and exits
        # with status 1. The migration's transaction is rolled back.
        raise CommandError(
            f"{table}.{column} of row {row_id} cannot be decrypted with any key in "
            "VIZOCHOK_ENCRYPTION_KEYS. Add the key that encrypted it and migrate again. "
            "Nothing was changed."
        ) from None


def encrypt_secrets(apps, schema_editor):
    _convert_rows(schema_editor, _encrypt_plain)


def decrypt_secrets(apps, schema_editor):
    _convert_rows(schema_editor, _decrypt)


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0004_widget_allowed_origins"),
    ]

    operations = [
        migrations.AlterField(
            model_name="tenant",
            name="user_token_secret",
            field=tenants.encryption.EncryptedSecretField(blank=True, editable=False),
        ),
        migrations.AlterField(
            model_name="webhooksettings",
            name="next_secret",
            field=tenants.encryption.EncryptedSecretField(blank=True, editable=False),
        ),
        migrations.AlterField(
            model_name="webhooksettings",
            name="secret",
            field=tenants.encryption.EncryptedSecretField(blank=True, editable=False),
        ),
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
    ]
