"""Database triggers that freeze everything a released version holds, not only its items and labels.

0002 refused UPDATE of a released version's items and labels and INSERT into it. This adds, on
SQLite and PostgreSQL:

- UPDATE, DELETE and INSERT refused for the datasheet, the schema, its categories and attribute
  specs, and the version's guideline-version links, of a version that is not a draft; DELETE refused
  for its items and labels (PostgreSQL also refuses TRUNCATE of those tables);
- DELETE refused for a released version itself, so a dataset with released versions cannot be
  deleted (staff withdraw it instead: ``marketplace.catalogue.withdrawal``);
- a guideline version is immutable once created (new text is a new tag) and cannot be deleted while
  a label or a version refers to it;
- a license's terms (name, url, text, flags, duration, seats) cannot change once anyone accepted it
  or holds an entitlement under it; offers stay editable.

The one way past them is the test-database flush (``governance/management/commands/flush.py``): the
flag of ``governance_ledger_maintenance`` (governance 0004) AND a test database -- on PostgreSQL a
database named ``test_...``, on SQLite an in-memory one. A production process cannot get through with
the flag alone; migration governance 0007 gives the ledger's own triggers the same condition.

A trigger stops accidents and insiders using SQL, not the table owner, who can drop it: what the
owner changes is named by ``manage.py ledger verify`` (governance.ledger.content_verification) against the
content hash the signed ledger holds. On SQLite a later migration that rebuilds one of these tables
(an AddField with a default, an AlterField...) drops its triggers: end that migration with
``migrations.RunPython(recreate_for("marketplace_label"), migrations.RunPython.noop)`` where
``recreate_for = importlib.import_module("marketplace.migrations.0006_released_content_triggers").recreate_for``
(tests/governance/test_published_evidence.py checks that every trigger exists after all migrations).

On PostgreSQL, INSERT is refused by one AFTER INSERT ... FOR EACH STATEMENT trigger per table that
looks at the statement's new rows all at once (``{table}_released_insert``), not by the row trigger:
a delivery inserts its labels in a few COPY statements, and a plpgsql row trigger cost ~32 us per
label row (``to_jsonb(NEW)`` of the whole row, geometry included, and one lookup). UPDATE and DELETE
keep the row trigger: they are rare and need OLD. Migration 0009 changed the definitions here to
that shape and applies them to databases migrated before it; ``recreate_triggers_on`` makes the
current shape. SQLite has no statement triggers and keeps its row triggers.
"""

from django.db import migrations

FLAG = "governance_ledger_maintenance"
SQLITE_TEST_FLUSH = (
    f"((SELECT file FROM pragma_database_list WHERE name = 'main') = '' "
    f"AND COALESCE((SELECT flush_in_progress FROM {FLAG} WHERE id = 1), 0) = 1)"
)
_RELEASED = "(SELECT status FROM marketplace_datasetversion WHERE id = {ref}) != 'draft'"
_RELEASED_BY_SCHEMA = (
    "(SELECT v.status FROM marketplace_datasetversion v JOIN marketplace_annotationschema s "
    "ON s.version_id = v.id WHERE s.id = {ref}) != 'draft'"
)

# table -> (column naming the version or schema, whether it is a schema id, operations to refuse)
CONTENT = {
    "marketplace_item": ("version_id", False, ["delete"]),
    "marketplace_label": ("version_id", False, ["delete"]),
    "marketplace_datasheet": ("version_id", False, ["insert", "update", "delete"]),
    "marketplace_annotationschema": ("version_id", False, ["insert", "update", "delete"]),
    "marketplace_category": ("schema_id", True, ["insert", "update", "delete"]),
    "marketplace_attributespec": ("schema_id", True, ["insert", "update", "delete"]),
    "marketplace_datasetversion_guideline_versions": (
        "datasetversion_id",
        False,
        ["insert", "update", "delete"],
    ),
}
LICENSE_TERMS = [
    "spdx_id",
    "name",
    "url",
    "text",
    "commercial_use",
    "ai_training",
    "derivatives",
    "redistribution",
    "attribution_required",
    "duration_days",
    "seats",
]
LICENSE_ACCEPTED = (
    "(EXISTS (SELECT 1 FROM marketplace_licenseacceptance WHERE license_id = OLD.id) "
    "OR EXISTS (SELECT 1 FROM marketplace_entitlement WHERE license_id = OLD.id))"
)
GUIDELINE_REFERENCED = (
    "(EXISTS (SELECT 1 FROM marketplace_label WHERE guideline_version_id = OLD.id) "
    "OR EXISTS (SELECT 1 FROM marketplace_datasetversion_guideline_versions "
    "WHERE guidelineversion_id = OLD.id))"
)


def _sqlite_statements() -> list[tuple[str, str]]:
    """(trigger name, CREATE statement) for SQLite."""
    out = []
    for table, (column, by_schema, operations) in CONTENT.items():
        check = _RELEASED_BY_SCHEMA if by_schema else _RELEASED
        for op in operations:
            ref = "NEW" if op == "insert" else "OLD"
            when = check.format(ref=f"{ref}.{column}")
            if op == "update":
                when = f"{when} OR {check.format(ref=f'NEW.{column}')}"
            if op == "delete":
                when = f"({when}) AND NOT {SQLITE_TEST_FLUSH}"
            name = f"{table}_released_{op}"
            out.append(
                (
                    name,
                    f"CREATE TRIGGER {name} BEFORE {op.upper()} ON {table} WHEN {when} "
                    f"BEGIN SELECT RAISE(ABORT, 'version_frozen: {table} rows of a released version "
                    f"cannot be changed'); END",
                )
            )
    out.append(
        (
            "marketplace_datasetversion_released_delete",
            "CREATE TRIGGER marketplace_datasetversion_released_delete BEFORE DELETE ON "
            f"marketplace_datasetversion WHEN OLD.status != 'draft' AND NOT {SQLITE_TEST_FLUSH} "
            "BEGIN SELECT RAISE(ABORT, 'version_frozen: a released version cannot be deleted; "
            "withdraw the dataset instead'); END",
        )
    )
    out.append(
        (
            "governance_guidelineversion_immutable",
            "CREATE TRIGGER governance_guidelineversion_immutable BEFORE UPDATE ON "
            "governance_guidelineversion BEGIN SELECT RAISE(ABORT, 'guideline_immutable: a guideline "
            "version cannot be changed; upload a new version with a new tag'); END",
        )
    )
    out.append(
        (
            "governance_guidelineversion_referenced_delete",
            "CREATE TRIGGER governance_guidelineversion_referenced_delete BEFORE DELETE ON "
            f"governance_guidelineversion WHEN {GUIDELINE_REFERENCED} AND NOT {SQLITE_TEST_FLUSH} "
            "BEGIN SELECT RAISE(ABORT, 'guideline_immutable: a guideline version that labels or "
            "versions refer to cannot be deleted'); END",
        )
    )
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in LICENSE_TERMS)
    out.append(
        (
            "marketplace_license_accepted_update",
            "CREATE TRIGGER marketplace_license_accepted_update BEFORE UPDATE ON marketplace_license "
            f"WHEN ({changed}) AND {LICENSE_ACCEPTED} BEGIN SELECT RAISE(ABORT, 'license_accepted: "
            "the terms of a license someone accepted cannot change; write a new license'); END",
        )
    )
    return out


PG_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION registry_test_flush() RETURNS boolean AS $$
  SELECT current_database() LIKE 'test\\_%'
     AND COALESCE((SELECT flush_in_progress FROM {FLAG} WHERE id = 1), false)
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION marketplace_refuse_released_content() RETURNS trigger AS $$
DECLARE
  column_name text := TG_ARGV[0];
  by_schema boolean := TG_ARGV[1] = 'schema';
  ids bigint[] := ARRAY[]::bigint[];
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    IF registry_test_flush() THEN RETURN NULL; END IF;
    RAISE EXCEPTION 'version_frozen: TRUNCATE of % is refused', TG_TABLE_NAME
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF TG_OP = 'DELETE' AND registry_test_flush() THEN RETURN OLD; END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    ids := ids || (to_jsonb(OLD) ->> column_name)::bigint;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    ids := ids || (to_jsonb(NEW) ->> column_name)::bigint;
  END IF;
  IF by_schema THEN
    ids := ARRAY(SELECT version_id FROM marketplace_annotationschema WHERE id = ANY(ids));
  END IF;
  IF EXISTS (SELECT 1 FROM marketplace_datasetversion WHERE id = ANY(ids) AND status <> 'draft') THEN
    RAISE EXCEPTION 'version_frozen: % rows of a released version cannot be changed (%)', TG_TABLE_NAME, TG_OP
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION marketplace_refuse_released_insert() RETURNS trigger AS $$
DECLARE
  column_name text := TG_ARGV[0];
  by_schema boolean := TG_ARGV[1] = 'schema';
  frozen boolean;
BEGIN
  -- One query over the statement's new rows (the transition table "inserted"), whatever their number.
  IF by_schema THEN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM marketplace_datasetversion v '
      'JOIN marketplace_annotationschema s ON s.version_id = v.id '
      'WHERE v.status <> ''draft'' AND s.id IN (SELECT DISTINCT %I FROM inserted))', column_name) INTO frozen;
  ELSE
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM marketplace_datasetversion '
      'WHERE status <> ''draft'' AND id IN (SELECT DISTINCT %I FROM inserted))', column_name) INTO frozen;
  END IF;
  IF frozen THEN
    RAISE EXCEPTION 'version_frozen: % rows of a released version cannot be changed (INSERT)', TG_TABLE_NAME
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION marketplace_refuse_released_version_delete() RETURNS trigger AS $$
BEGIN
  IF OLD.status <> 'draft' AND NOT registry_test_flush() THEN
    RAISE EXCEPTION 'version_frozen: a released version cannot be deleted; withdraw the dataset instead'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN OLD;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION governance_refuse_guideline_change() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    RAISE EXCEPTION 'guideline_immutable: a guideline version cannot be changed; upload a new version with a new tag'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NOT registry_test_flush() AND (
      EXISTS (SELECT 1 FROM marketplace_label WHERE guideline_version_id = OLD.id)
      OR EXISTS (SELECT 1 FROM marketplace_datasetversion_guideline_versions WHERE guidelineversion_id = OLD.id)) THEN
    RAISE EXCEPTION 'guideline_immutable: a guideline version that labels or versions refer to cannot be deleted'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN OLD;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION marketplace_refuse_accepted_license_change() RETURNS trigger AS $$
BEGIN
  IF ({" OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in LICENSE_TERMS)}) AND {LICENSE_ACCEPTED} THEN
    RAISE EXCEPTION 'license_accepted: the terms of a license someone accepted cannot change; write a new license'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
"""


def _pg_triggers() -> list[tuple[str, str, str]]:
    """(table, trigger name, CREATE statement) for PostgreSQL."""
    out = []
    for table, (column, by_schema, _ops) in CONTENT.items():
        args = f"'{column}', '{'schema' if by_schema else 'version'}'"
        out.append(
            (
                table,
                f"{table}_released",
                f"CREATE TRIGGER {table}_released BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION marketplace_refuse_released_content({args})",
            )
        )
        out.append(
            (
                table,
                f"{table}_released_insert",
                f"CREATE TRIGGER {table}_released_insert AFTER INSERT ON {table} "
                "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT "
                f"EXECUTE FUNCTION marketplace_refuse_released_insert({args})",
            )
        )
        out.append(
            (
                table,
                f"{table}_released_truncate",
                f"CREATE TRIGGER {table}_released_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION marketplace_refuse_released_content({args})",
            )
        )
    out.append(
        (
            "marketplace_datasetversion",
            "marketplace_datasetversion_released_delete",
            "CREATE TRIGGER marketplace_datasetversion_released_delete BEFORE DELETE ON "
            "marketplace_datasetversion FOR EACH ROW EXECUTE FUNCTION marketplace_refuse_released_version_delete()",
        )
    )
    out.append(
        (
            "governance_guidelineversion",
            "governance_guidelineversion_immutable",
            "CREATE TRIGGER governance_guidelineversion_immutable BEFORE UPDATE OR DELETE ON "
            "governance_guidelineversion FOR EACH ROW EXECUTE FUNCTION governance_refuse_guideline_change()",
        )
    )
    out.append(
        (
            "marketplace_license",
            "marketplace_license_accepted_update",
            "CREATE TRIGGER marketplace_license_accepted_update BEFORE UPDATE ON marketplace_license "
            "FOR EACH ROW EXECUTE FUNCTION marketplace_refuse_accepted_license_change()",
        )
    )
    return out


def trigger_names(vendor: str) -> dict[str, str]:
    """Trigger name -> table, for tests and for migrations that must re-create them."""
    if vendor == "sqlite":
        names = {}
        for name, statement in _sqlite_statements():
            names[name] = statement.split(" ON ", 1)[1].split()[0]
        return names
    return {name: table for table, name, _ in _pg_triggers()}


def create_triggers_on(connection) -> None:
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            for _, statement in _sqlite_statements():
                cursor.execute(statement)
        elif vendor == "postgresql":
            cursor.execute(PG_FUNCTIONS)
            for _, _, statement in _pg_triggers():
                cursor.execute(statement)
        else:
            raise RuntimeError(f"No released-content triggers written for {vendor}")


def drop_triggers_on(connection) -> None:
    vendor = connection.vendor
    with connection.cursor() as cursor:
        for name, table in trigger_names(vendor).items():
            if vendor == "sqlite":
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            else:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")


def recreate_triggers_on(connection, tables=None) -> None:
    """Drop (if there) and create again the triggers of ``tables`` (default: all): idempotent, for a
    later migration that rebuilt a table on SQLite (which drops that table's triggers)."""
    wanted = None if tables is None else set(tables)
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            for name, statement in _sqlite_statements():
                if wanted is None or statement.split(" ON ", 1)[1].split()[0] in wanted:
                    cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
                    cursor.execute(statement)
        elif vendor == "postgresql":
            cursor.execute(PG_FUNCTIONS)
            for table, name, statement in _pg_triggers():
                if wanted is None or table in wanted:
                    cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                    cursor.execute(statement)
        else:
            raise RuntimeError(f"No released-content triggers written for {vendor}")


def recreate_for(*tables):
    """A RunPython callable re-creating the triggers of ``tables``, for later migrations."""

    def run(apps, schema_editor):
        recreate_triggers_on(schema_editor.connection, tables or None)

    return run


def create_triggers(apps, schema_editor):
    create_triggers_on(schema_editor.connection)


def drop_triggers(apps, schema_editor):
    drop_triggers_on(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0005_label_lineage"),
        ("governance", "0006_content_digest_blocks"),
    ]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
