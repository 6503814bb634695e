"""Geometries of a deleted draft's labels, held for the label histories that bind them by hash.

The table is append-only like the ledger: the same triggers as 0004/0007 (UPDATE refused; DELETE and
TRUNCATE only during the flush of a test database).
"""

import importlib

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

APPEND_ONLY = importlib.import_module("governance.migrations.0004_append_only_triggers")
TEST_FLUSH = importlib.import_module("governance.migrations.0007_ledger_flush_only_on_test_databases")
TABLE = "governance_heldgeometry"


def trigger_statements(vendor: str) -> list[str]:
    if vendor == "sqlite":
        update = APPEND_ONLY._sqlite_statements(
            APPEND_ONLY.SQLITE_TRIGGERS.format(table=TABLE, flag=APPEND_ONLY.FLAG_TABLE)
        )[0]
        delete = TEST_FLUSH.SQLITE_NO_DELETE.format(
            table=TABLE, test_flush=TEST_FLUSH.RELEASED.SQLITE_TEST_FLUSH
        ).strip()
        return [update, delete]
    if vendor == "postgresql":
        return [APPEND_ONLY.PG_TRIGGERS.format(table=TABLE)]
    raise RuntimeError(f"No append-only triggers written for {vendor}")


def create_triggers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for statement in trigger_statements(schema_editor.connection.vendor):
            cursor.execute(statement)


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    suffixes = ["no_update", "no_delete"] if vendor == "sqlite" else ["append_only", "no_truncate"]
    with schema_editor.connection.cursor() as cursor:
        for suffix in suffixes:
            on = "" if vendor == "sqlite" else f" ON {TABLE}"
            cursor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_{suffix}{on}")


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0011_ledger_fewer_indexes"),
        ("marketplace", "0009_statement_insert_triggers_and_fewer_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="HeldGeometry",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "sha256",
                    models.CharField(help_text="The geometry's hash by the ledger's rule", max_length=64),
                ),
                (
                    "label_uid",
                    models.UUIDField(help_text="The label whose deleted row held it (the first one)"),
                ),
                ("geometry", models.JSONField()),
                ("held_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "dataset",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="held_geometries",
                        to="marketplace.dataset",
                    ),
                ),
            ],
            options={
                "ordering": ["dataset", "sha256"],
                "constraints": [
                    models.UniqueConstraint(fields=("dataset", "sha256"), name="held_geometry_unique")
                ],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
