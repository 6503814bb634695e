"""Two indexes of the ledger that no query uses, paid on every event appended, go.

- ``dataset_id`` had an index of its own, and the unique (dataset, seq) begins with it: every query by
  dataset (the chain's tail, verification, proofs, the per-label history) keeps an index.
- ``hash`` was ``unique=True``, which on PostgreSQL makes two indexes: the unique one and a
  ``varchar_pattern_ops`` one (``_like``) for ``LIKE 'prefix%'``. No query filters hashes by prefix
  (the admin's search is ``icontains``, which neither index serves), so uniqueness moves to a
  ``UniqueConstraint`` (``ledger_unique_hash``), which has only the unique index: on PostgreSQL the
  existing unique constraint is renamed to it. SQLite had no ``_like`` index and keeps its unique
  column as it is (a rename there would rebuild the table).

Plain SQL in SeparateDatabaseAndState, not AlterField: on SQLite AlterField rebuilds the table, which
drops its append-only triggers (0004, 0007).
"""

import importlib

import django.db.models.deletion
from django.db import migrations, models

DROP_PLAIN_INDEX = importlib.import_module(
    "marketplace.migrations.0009_statement_insert_triggers_and_fewer_indexes"
).drop_plain_index
TABLE = "governance_labelevent"
OLD_UNIQUE = "governance_labelevent_hash_key"  # PostgreSQL's name for CREATE TABLE's inline UNIQUE


def _rename_hash_unique(schema_editor, *, to: str) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, TABLE)
    for name, info in found.items():
        if info["unique"] and info["columns"] == ["hash"] and name != to:
            schema_editor.execute(
                f"ALTER TABLE {TABLE} RENAME CONSTRAINT {schema_editor.quote_name(name)} TO {to}"
            )


def hash_unique_as_constraint(apps, schema_editor):
    _rename_hash_unique(schema_editor, to="ledger_unique_hash")


def hash_unique_as_field(apps, schema_editor):
    _rename_hash_unique(schema_editor, to=OLD_UNIQUE)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {TABLE}_hash_like ON {TABLE} (hash varchar_pattern_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0010_ledger_dataset_withdrawn_action"),
        ("marketplace", "0009_statement_insert_triggers_and_fewer_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="labelevent",
                    name="dataset",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="ledger",
                        to="marketplace.dataset",
                    ),
                ),
                migrations.AlterField(
                    model_name="labelevent",
                    name="hash",
                    field=models.CharField(max_length=64),
                ),
                migrations.AddConstraint(
                    model_name="labelevent",
                    constraint=models.UniqueConstraint(fields=("hash",), name="ledger_unique_hash"),
                ),
            ],
            database_operations=[
                DROP_PLAIN_INDEX(TABLE, "dataset_id", model="governance.LabelEvent", field="dataset"),
                # On PostgreSQL the one plain index on hash is unique=True's varchar_pattern_ops one.
                migrations.RunPython(
                    DROP_PLAIN_INDEX(TABLE, "hash", model="governance.LabelEvent", field="hash").code,
                    migrations.RunPython.noop,
                ),
                migrations.RunPython(hash_unique_as_constraint, hash_unique_as_field),
            ],
        ),
    ]
