"""Checks of the migrations: what breaks a running release, and that each one can be undone.

docs/deployment.md lists the migrations that need the old release stopped first.
A migration that adds a NOT NULL column without a database default is one of them: the
old release's inserts leave the column out and fail until its processes restart. The
document also rolls a release back by undoing its migrations, which the round trip checks.
"""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.apps import apps
from django.db import connection, migrations
from django.db.migrations.loader import MigrationLoader
from django.db.models import NOT_PROVIDED, GeneratedField

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEPLOYMENT_DOC = PROJECT_DIR / "docs" / "deployment.md"
PROJECT_APPS = ("vizochok", "tenants", "catalog", "webhooks", "conversations")

# Every such column, by app, migration number and "table.column", as docs/deployment.md
# lists them under "Installing and upgrading".
COLUMNS_WITHOUT_DATABASE_DEFAULT = {
    ("conversations", "0002", "conversations_message.public_id"),
    ("tenants", "0002", "tenants_tenant.user_token_secret"),
    ("tenants", "0002", "tenants_assistantsettings.rate_limit_messages"),
    ("tenants", "0002", "tenants_assistantsettings.rate_limit_window_seconds"),
    ("tenants", "0003", "tenants_tenant.catalog_version"),
    ("tenants", "0004", "tenants_tenant.widget_allowed_origins"),
    ("tenants", "0006", "tenants_assistantsettings.anonymous_limit_identity"),
    ("conversations", "0003", "conversations_message.llm_messages"),
    ("conversations", "0004", "conversations_conversation.limit_identity"),
    ("conversations", "0006", "conversations_message.idempotency_key"),
    ("webhooks", "0002", "webhooks_webhookdelivery.is_test"),
    ("catalog", "0011", "catalog_catalogjob.embedded_through_id"),
}


def _columns_added_without_default() -> set[tuple[str, str, str]]:
    """Return the NOT NULL columns that migrations add to existing tables with no default.

    A column counts when an ``AddField`` adds it as NOT NULL, or when an ``AlterField`` makes
    NOT NULL a column that was nullable or missing before the migration (added nullable,
    filled, then altered). Columns of a model that the same migration creates are left out,
    because no running release writes to a table that did not exist before.
    """
    loader = MigrationLoader(None, ignore_no_migrations=True)
    found = set()
    for (app_label, name), migration in loader.disk_migrations.items():
        if app_label not in PROJECT_APPS:
            continue
        created = {
            operation.name_lower
            for operation in migration.operations
            if isinstance(operation, migrations.CreateModel)
        }
        before = loader.project_state((app_label, name), at_end=False)
        for operation in migration.operations:
            if isinstance(operation, migrations.AlterField):
                model_state = before.models[(app_label, operation.model_name_lower)]
                old_field = model_state.fields.get(operation.name)
                if old_field is not None and not old_field.null:
                    continue
            elif not isinstance(operation, migrations.AddField):
                continue
            field = operation.field
            if operation.model_name_lower in created or field.null:
                continue
            if field.db_default is not NOT_PROVIDED or isinstance(field, GeneratedField):
                continue
            model = apps.get_model(app_label, operation.model_name)
            column = model._meta.get_field(operation.name).column
            found.add((app_label, name[:4], f"{model._meta.db_table}.{column}"))
    return found


def test_columns_without_default_are_listed():
    found = _columns_added_without_default()

    unlisted = found - COLUMNS_WITHOUT_DATABASE_DEFAULT
    assert unlisted == set(), (
        f"give these columns a db_default, or list them in docs/deployment.md: {sorted(unlisted)}"
    )
    assert COLUMNS_WITHOUT_DATABASE_DEFAULT - found == set()


def test_deployment_doc_lists_each_column():
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"\| `\w+ \d{4}` \|", line)]

    for app_label, number, column in sorted(COLUMNS_WITHOUT_DATABASE_DEFAULT):
        table, column_name = column.split(".")
        row = next((line for line in rows if line.startswith(f"| `{app_label} {number}` |")), "")
        assert row, f"docs/deployment.md has no row for {app_label} {number}"
        assert table in row, f"the row of {app_label} {number} does not name {table}"
        assert column_name in row, f"the row of {app_label} {number} does not name {column_name}"


@pytest.mark.django_db
def test_listed_columns_have_no_database_default():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name || '.' || column_name, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = current_schema()"
        )
        columns = {name: (nullable, default) for name, nullable, default in cursor.fetchall()}

    for _app_label, _number, column in sorted(COLUMNS_WITHOUT_DATABASE_DEFAULT):
        assert columns[column] == ("NO", None), column


@pytest.fixture
def empty_database() -> Iterator[str]:
    """Create an empty database beside the test database; yield its URL, then drop it."""
    params = connection.settings_dict
    name = f"{params['NAME']}_round_trip_{os.getpid()}"
    server = {
        "host": params["HOST"],
        "port": params["PORT"],
        "user": params["USER"],
        "password": params["PASSWORD"] or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**server) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    password = f":{params['PASSWORD']}" if params["PASSWORD"] else ""
    try:
        yield f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/{name}"
    finally:
        with psycopg.connect(**server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_undo_and_apply_again(empty_database):
    result = subprocess.run(
        [sys.executable, "-m", "tests.vizochok.migration_round_trip"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": empty_database, "DJANGO_ENV_FILE": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    loader = MigrationLoader(None, ignore_no_migrations=True)
    project_migrations = {
        f"{app_label}.{name}"
        for app_label, name in loader.disk_migrations
        if app_label in PROJECT_APPS
    }
    assert sorted(report["undone"]) == sorted(project_migrations)
    assert len(report["undone"]) == len(project_migrations)
    for part in ("columns", "indexes", "constraints", "triggers", "functions"):
        assert report["second"][part] == report["first"][part], part
