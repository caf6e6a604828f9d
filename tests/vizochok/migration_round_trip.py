"""Apply every migration, undo them one by one with rows in the tables, and apply them again.

Run as ``python -m tests.vizochok.migration_round_trip`` with ``DATABASE_URL`` naming an
empty database. It prints one JSON object: the schema after the first and after the second
forward run, and the migrations undone in order. Each step back runs while the tables hold
the rows that ``_fill`` wrote, so an undo that fails on existing data fails the run.
"""

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vizochok.settings")
django.setup()

from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402

PROJECT_APPS = ("vizochok", "tenants", "catalog", "webhooks", "conversations")

# Every column, index, constraint, trigger and function of the public schema, in a stable
# order, so that two runs compare as plain lists.
_SCHEMA_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, ''),
               coalesce(generation_expression, '')
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY 1, 2
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        ORDER BY 1, 2
    """,
    "constraints": """
        SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        ORDER BY 1, 2, 3
    """,
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
        FROM pg_trigger WHERE NOT tgisinternal
        ORDER BY 1, 2
    """,
    "functions": """
        SELECT proname, pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.prokind = 'f'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.objid = p.oid AND d.deptype = 'e')
        ORDER BY 1, 2
    """,
}


def _schema() -> dict[str, list[list[str]]]:
    with connection.cursor() as cursor:
        snapshot = {}
        for name, sql in _SCHEMA_QUERIES.items():
            cursor.execute(sql)
            snapshot[name] = [[str(value) for value in row] for row in cursor.fetchall()]
    return snapshot


def _fill() -> None:
    """Write a few rows into the main tables, as a running shop has them."""
    from tests.factories import (
        MessageFactory,
        ProductFactory,
        TenantFactory,
        WebhookSettingsFactory,
    )

    tenant = TenantFactory(name="Round trip", slug="round-trip")
    WebhookSettingsFactory(tenant=tenant)
    for number in range(3):
        ProductFactory(tenant=tenant, name=f"Молоко {number}", category_path="Молочне")
    MessageFactory(conversation__tenant=tenant)


def _project_leaves(executor: MigrationExecutor) -> list[tuple[str, str]]:
    return [node for node in executor.loader.graph.leaf_nodes() if node[0] in PROJECT_APPS]


def main() -> None:
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    plan = executor.migration_plan(leaves, clean_start=True)
    executor.migrate(leaves)
    first = _schema()
    _fill()

    undone = []
    for migration, _backwards in reversed(plan):
        if migration.app_label not in PROJECT_APPS:
            continue
        executor = MigrationExecutor(connection)
        parents = [
            parent
            for parent in executor.loader.graph.node_map[
                (migration.app_label, migration.name)
            ].parents
            if parent.key[0] == migration.app_label
        ]
        target = (migration.app_label, parents[0].key[1] if parents else None)
        executor.migrate([target])
        undone.append(f"{migration.app_label}.{migration.name}")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    second = _schema()
    json.dump({"first": first, "second": second, "undone": undone}, sys.stdout)


if __name__ == "__main__":
    main()
