"""The ledger's DELETE and TRUNCATE triggers let rows go only during a flush of a *test* database.

0004 let events and tree heads be deleted whenever ``governance_ledger_maintenance.flush_in_progress``
was set, and anyone who could write that one row could set it: a production process could delete the
newest, not yet signed, events through it. From here on the flag counts only on a test database (on
PostgreSQL one named ``test_...``, on SQLite an in-memory one), the condition marketplace 0005 uses
for released content; ``manage.py flush`` refuses to touch the ledger elsewhere.
"""

import importlib

from django.db import migrations

APPEND_ONLY = importlib.import_module("governance.migrations.0004_append_only_triggers")
RELEASED = importlib.import_module("marketplace.migrations.0006_released_content_triggers")

SQLITE_NO_DELETE = """
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
WHEN NOT {test_flush}
BEGIN SELECT RAISE(ABORT, 'ledger_append_only: {table} rows cannot be deleted'); END
"""

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION governance_refuse_ledger_change() RETURNS trigger AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'TRUNCATE') AND registry_test_flush() THEN
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'ledger_append_only: % on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'integrity_constraint_violation';
END $$ LANGUAGE plpgsql;
"""


def sqlite_no_delete_statements() -> list[str]:
    return [
        SQLITE_NO_DELETE.format(table=table, test_flush=RELEASED.SQLITE_TEST_FLUSH).strip()
        for table in APPEND_ONLY.TABLES
    ]


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for table in APPEND_ONLY.TABLES:
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            for statement in sqlite_no_delete_statements():
                cursor.execute(statement)
        elif connection.vendor == "postgresql":
            cursor.execute(PG_FUNCTION)


def backwards(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for table in APPEND_ONLY.TABLES:
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            for statement in APPEND_ONLY.trigger_statements("sqlite"):
                if "_no_delete" in statement:
                    cursor.execute(statement)
        elif connection.vendor == "postgresql":
            cursor.execute(APPEND_ONLY.PG_FUNCTION)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0006_content_digest_blocks"),
        ("marketplace", "0006_released_content_triggers"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
