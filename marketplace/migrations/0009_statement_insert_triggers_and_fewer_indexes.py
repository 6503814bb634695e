"""An ingest pays the freezing triggers once per statement, not once per label; two redundant indexes go.

On PostgreSQL a released version's items, labels, categories, attribute specs, schema, datasheet and
guideline links refused INSERT in two plpgsql BEFORE ... FOR EACH ROW triggers per row (0002's
``{table}_frozen`` on items and labels, 0006's ``{table}_released``): about 32 us per label row, a
third of the database's cost of an ingest (``to_jsonb(NEW)`` of the whole row, geometry included,
and one lookup each). From here on INSERT is refused by one AFTER INSERT ... REFERENCING NEW TABLE
... FOR EACH STATEMENT trigger per table (``{table}_released_insert``, written in 0006's module,
which now makes that shape), with the same message prefix ``version_frozen`` and the same ERRCODE;
the row triggers stay for UPDATE and DELETE, which are rare and need OLD. SQLite has no statement
triggers: its row triggers stay as they are.

The single-column ``version_id`` indexes of items and labels go: the unique (version, key) of items
and the (version, uid), (version, category) and (version, is_final) of labels begin with it, so every
query by version keeps an index, and each label row costs one index insertion less.

The indexes are dropped with DROP INDEX, not by AlterField: on SQLite AlterField rebuilds the table,
which drops its triggers (0002, 0005, 0006) and fails on the triggers of other tables that name it.
"""

import importlib

import django.db.models.deletion
from django.db import migrations, models

RELEASED = importlib.import_module("marketplace.migrations.0006_released_content_triggers")

FROZEN_TABLES = ["marketplace_item", "marketplace_label"]
# 0002's row trigger, for UPDATE only from here on (its function refuses a move into or out of a
# released version); before, it also fired for each inserted row.
PG_FROZEN = (
    "CREATE TRIGGER {table}_frozen BEFORE {events} ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION marketplace_refuse_frozen_content()"
)
# 0006's row trigger as it was, for going back.
PG_RELEASED_BEFORE = (
    "CREATE TRIGGER {table}_released BEFORE INSERT OR UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION marketplace_refuse_released_content('{column}', '{kind}')"
)


def drop_plain_index(table: str, column: str, *, model: str, field: str):
    """A RunPython pair dropping the plain (non-unique) single-column indexes of ``table.column`` and
    creating Django's own again on the way back. Plain SQL rather than AlterField: on SQLite
    AlterField rebuilds the whole table, which drops its triggers and trips over the triggers of
    other tables that name it; DROP INDEX does neither."""

    def forwards(apps, schema_editor):
        connection = schema_editor.connection
        with connection.cursor() as cursor:
            found = connection.introspection.get_constraints(cursor, table)
        for name, info in found.items():
            plain = info["index"] and not info["unique"] and not info["primary_key"]
            if plain and info["columns"] == [column]:
                schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")

    def backwards(apps, schema_editor):
        model_class = apps.get_model(*model.split("."))
        target = model_class._meta.get_field(field)
        schema_editor.execute(schema_editor._create_index_sql(model_class, fields=[target]))

    return migrations.RunPython(forwards, backwards)


def statement_insert_triggers(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    RELEASED.recreate_triggers_on(connection, RELEASED.CONTENT)
    with connection.cursor() as cursor:
        for table in FROZEN_TABLES:
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_frozen ON {table}")
            cursor.execute(PG_FROZEN.format(table=table, events="UPDATE"))


def row_insert_triggers(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for table, (column, by_schema, _ops) in RELEASED.CONTENT.items():
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_released_insert ON {table}")
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_released ON {table}")
            kind = "schema" if by_schema else "version"
            cursor.execute(PG_RELEASED_BEFORE.format(table=table, column=column, kind=kind))
        for table in FROZEN_TABLES:
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_frozen ON {table}")
            cursor.execute(PG_FROZEN.format(table=table, events="INSERT OR UPDATE"))


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0008_delivery_touched_at")]

    operations = [
        migrations.RunPython(statement_insert_triggers, row_insert_triggers),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="item",
                    name="version",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="items",
                        to="marketplace.datasetversion",
                    ),
                ),
                migrations.AlterField(
                    model_name="label",
                    name="version",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="labels",
                        to="marketplace.datasetversion",
                    ),
                ),
            ],
            database_operations=[
                drop_plain_index("marketplace_item", "version_id", model="marketplace.Item", field="version"),
                drop_plain_index(
                    "marketplace_label", "version_id", model="marketplace.Label", field="version"
                ),
            ],
        ),
    ]
