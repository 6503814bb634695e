"""Database triggers that make the ledger append-only: no UPDATE, no DELETE, on either database.

``governance_labelevent`` and ``governance_treehead`` refuse every UPDATE and DELETE, whoever sends
it: the ORM (which already refuses with ``LedgerAppendOnlyError``), raw SQL, another client, a bug.
On PostgreSQL they also refuse TRUNCATE. A trigger stops accidents, not the table owner, who can
disable or drop it: that kind of tampering is caught by ``ledger verify`` against tree heads kept
outside the database (REFERENCE.md, "Tamper-evident logs").

The one sanctioned way to remove events is emptying the whole database with ``manage.py flush``,
which is also how Django's TransactionTestCase (pytest-django's ``transaction=True`` and
``live_server``) cleans up between tests: on SQLite it runs ``DELETE FROM`` on every table, on
PostgreSQL ``TRUNCATE``. A row trigger cannot tell a flush from a deliberate delete, so the
governance app overrides the ``flush`` command (``governance/management/commands/flush.py``): inside
the flush's own transaction it sets ``flush_in_progress`` in the one-row table
``governance_ledger_maintenance``, runs Django's flush, and clears the flag before committing. The
DELETE and TRUNCATE triggers let rows go only while that flag is set, so it is never visible to any
other connection and never committed as set. The table is not a Django model, so flush leaves it
alone. UPDATE is refused whatever the flag says.

On SQLite, a later migration that rebuilds one of these tables (SQLite's AlterField/AddField copy the
table) drops its triggers with the old table: such a migration must call ``create_triggers`` again.
``tests/governance/test_ledger_append_only.py`` checks that the triggers exist after all migrations.
"""

from django.db import migrations

TABLES = ["governance_labelevent", "governance_treehead"]
FLAG_TABLE = "governance_ledger_maintenance"

SQLITE_FLAG = f"""
CREATE TABLE IF NOT EXISTS {FLAG_TABLE} (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  flush_in_progress INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO {FLAG_TABLE} (id, flush_in_progress) VALUES (1, 0);
"""

SQLITE_TRIGGERS = """
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, 'ledger_append_only: {table} rows cannot be updated'); END;
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
WHEN COALESCE((SELECT flush_in_progress FROM {flag} WHERE id = 1), 0) = 0
BEGIN SELECT RAISE(ABORT, 'ledger_append_only: {table} rows cannot be deleted'); END;
"""

PG_FLAG = f"""
CREATE TABLE IF NOT EXISTS {FLAG_TABLE} (
  id integer PRIMARY KEY CHECK (id = 1),
  flush_in_progress boolean NOT NULL DEFAULT false
);
INSERT INTO {FLAG_TABLE} (id, flush_in_progress) VALUES (1, false) ON CONFLICT (id) DO NOTHING;
"""

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION governance_refuse_ledger_change() RETURNS trigger AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'TRUNCATE')
     AND COALESCE((SELECT flush_in_progress FROM {FLAG_TABLE} WHERE id = 1), false) THEN
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'ledger_append_only: % on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'integrity_constraint_violation';
END $$ LANGUAGE plpgsql;
"""

PG_TRIGGERS = """
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
  FOR EACH ROW EXECUTE FUNCTION governance_refuse_ledger_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
  FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse_ledger_change();
"""


def _sqlite_statements(sql: str) -> list[str]:
    # Trigger bodies contain ';' inside BEGIN ... END: split on the END that closes them.
    parts, current = [], []
    for line in sql.strip().splitlines():
        current.append(line)
        if line.rstrip().endswith("END;"):
            parts.append("\n".join(current))
            current = []
    return parts


def trigger_statements(vendor: str) -> list[str]:
    """The statements that create the triggers (not the flag table) on this database."""
    if vendor == "sqlite":
        statements = []
        for table in TABLES:
            statements += _sqlite_statements(SQLITE_TRIGGERS.format(table=table, flag=FLAG_TABLE))
        return statements
    if vendor == "postgresql":
        return [PG_FUNCTION] + [PG_TRIGGERS.format(table=table) for table in TABLES]
    raise RuntimeError(f"No append-only ledger triggers written for {vendor}")


def trigger_names(vendor: str) -> dict[str, list[str]]:
    """Trigger names per table, for tests and for migrations that must re-create them."""
    suffixes = ["no_update", "no_delete"] if vendor == "sqlite" else ["append_only", "no_truncate"]
    return {table: [f"{table}_{suffix}" for suffix in suffixes] for table in TABLES}


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    flag = {"sqlite": SQLITE_FLAG, "postgresql": PG_FLAG}.get(vendor)
    if flag is None:
        raise RuntimeError(f"No append-only ledger triggers written for {vendor}")
    # A plain cursor: no parameters, so PL/pgSQL's '%' placeholders are not taken for ours.
    with schema_editor.connection.cursor() as cursor:
        for statement in [s for s in flag.split(";\n") if s.strip()]:
            cursor.execute(statement)
        for statement in trigger_statements(vendor):
            cursor.execute(statement)


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        for table, names in trigger_names(vendor).items():
            for name in names:
                if vendor == "sqlite":
                    cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
                else:
                    cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        if vendor == "postgresql":
            cursor.execute("DROP FUNCTION IF EXISTS governance_refuse_ledger_change()")
        cursor.execute(f"DROP TABLE IF EXISTS {FLAG_TABLE}")


class Migration(migrations.Migration):
    dependencies = [("governance", "0003_ledger_chunks")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
