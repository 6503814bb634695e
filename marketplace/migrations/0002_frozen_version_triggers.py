"""Database triggers that make a released version's content unchangeable.

The model layer already refuses such writes with a clear error; the triggers stop the writes
that bypass it (raw SQL, another client, a bug). They refuse UPDATE of a released version's
items and labels, INSERT into a released version, and edits of a released version's identity
(number, hash, notes). Deletion is guarded in Python only, so staff can still remove a whole
dataset (a takedown) and test databases can be flushed.
"""

from django.db import migrations

CONTENT_TABLES = ["marketplace_item", "marketplace_label"]

SQLITE_CONTENT = """
CREATE TRIGGER {table}_frozen_update BEFORE UPDATE ON {table}
WHEN (SELECT status FROM marketplace_datasetversion WHERE id = OLD.version_id) != 'draft'
  OR (SELECT status FROM marketplace_datasetversion WHERE id = NEW.version_id) != 'draft'
BEGIN SELECT RAISE(ABORT, 'version_frozen: {table} rows of a published version cannot be changed'); END;
CREATE TRIGGER {table}_frozen_insert BEFORE INSERT ON {table}
WHEN (SELECT status FROM marketplace_datasetversion WHERE id = NEW.version_id) != 'draft'
BEGIN SELECT RAISE(ABORT, 'version_frozen: cannot add {table} rows to a published version'); END;
"""

SQLITE_VERSION = """
CREATE TRIGGER marketplace_datasetversion_frozen BEFORE UPDATE ON marketplace_datasetversion
WHEN OLD.status != 'draft' AND (
  NEW.status = 'draft' OR NEW.number IS NOT OLD.number OR NEW.dataset_id IS NOT OLD.dataset_id
  OR NEW.content_hash IS NOT OLD.content_hash OR NEW.release_notes IS NOT OLD.release_notes
  OR NEW.published_at IS NOT OLD.published_at)
BEGIN SELECT RAISE(ABORT, 'version_frozen: a published version cannot be edited'); END;
"""

PG_FUNCTIONS = """
CREATE OR REPLACE FUNCTION marketplace_refuse_frozen_content() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND EXISTS (
      SELECT 1 FROM marketplace_datasetversion WHERE id = OLD.version_id AND status <> 'draft') THEN
    RAISE EXCEPTION 'version_frozen: % rows of a published version cannot be changed', TG_TABLE_NAME
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF EXISTS (SELECT 1 FROM marketplace_datasetversion WHERE id = NEW.version_id AND status <> 'draft') THEN
    RAISE EXCEPTION 'version_frozen: cannot add or move % rows into a published version', TG_TABLE_NAME
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION marketplace_refuse_frozen_version() RETURNS trigger AS $$
BEGIN
  IF OLD.status <> 'draft' AND (
      NEW.status = 'draft' OR NEW.number IS DISTINCT FROM OLD.number
      OR NEW.dataset_id IS DISTINCT FROM OLD.dataset_id OR NEW.content_hash IS DISTINCT FROM OLD.content_hash
      OR NEW.release_notes IS DISTINCT FROM OLD.release_notes
      OR NEW.published_at IS DISTINCT FROM OLD.published_at) THEN
    RAISE EXCEPTION 'version_frozen: a published version cannot be edited'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER marketplace_datasetversion_frozen BEFORE UPDATE ON marketplace_datasetversion
  FOR EACH ROW EXECUTE FUNCTION marketplace_refuse_frozen_version();
"""

PG_CONTENT = """
CREATE TRIGGER {table}_frozen BEFORE INSERT OR UPDATE ON {table}
  FOR EACH ROW EXECUTE FUNCTION marketplace_refuse_frozen_content();
"""


def _statements(sql: str) -> list[str]:
    # SQLite trigger bodies contain ';' inside BEGIN ... END: split on the END that closes them.
    parts, current = [], []
    for line in sql.strip().splitlines():
        current.append(line)
        if line.rstrip().endswith("END;"):
            parts.append("\n".join(current))
            current = []
    return parts


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        statements = []
        for table in CONTENT_TABLES:
            statements += _statements(SQLITE_CONTENT.format(table=table))
        statements += _statements(SQLITE_VERSION)
    elif vendor == "postgresql":
        statements = [PG_FUNCTIONS] + [PG_CONTENT.format(table=t) for t in CONTENT_TABLES]
    else:
        raise RuntimeError(f"No frozen-version triggers written for {vendor}")
    # A plain cursor: no parameters, so PL/pgSQL's '%' placeholders are not taken for ours.
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        for table in CONTENT_TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_frozen_update")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_frozen_insert")
        schema_editor.execute("DROP TRIGGER IF EXISTS marketplace_datasetversion_frozen")
    elif vendor == "postgresql":
        for table in CONTENT_TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_frozen ON {table}")
        schema_editor.execute(
            "DROP TRIGGER IF EXISTS marketplace_datasetversion_frozen ON marketplace_datasetversion"
        )
        schema_editor.execute("DROP FUNCTION IF EXISTS marketplace_refuse_frozen_content()")
        schema_editor.execute("DROP FUNCTION IF EXISTS marketplace_refuse_frozen_version()")


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0001_initial")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
