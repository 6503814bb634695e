"""Label lineage: the source tool's own annotation id on each label, and per-delivery matching options.

On SQLite, adding a column with a default makes Django rebuild the label table, which drops the
table's triggers (0002): they are created again here, exactly as 0002 wrote them.
"""

from django.db import migrations, models

SQLITE_LABEL_TRIGGERS = [
    "DROP TRIGGER IF EXISTS marketplace_label_frozen_update",
    "DROP TRIGGER IF EXISTS marketplace_label_frozen_insert",
    """CREATE TRIGGER marketplace_label_frozen_update BEFORE UPDATE ON marketplace_label
WHEN (SELECT status FROM marketplace_datasetversion WHERE id = OLD.version_id) != 'draft'
  OR (SELECT status FROM marketplace_datasetversion WHERE id = NEW.version_id) != 'draft'
BEGIN SELECT RAISE(ABORT, 'version_frozen: marketplace_label rows of a published version cannot be changed'); END;""",
    """CREATE TRIGGER marketplace_label_frozen_insert BEFORE INSERT ON marketplace_label
WHEN (SELECT status FROM marketplace_datasetversion WHERE id = NEW.version_id) != 'draft'
BEGIN SELECT RAISE(ABORT, 'version_frozen: cannot add marketplace_label rows to a published version'); END;""",
]


def restore_sqlite_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return  # PostgreSQL keeps its triggers across ALTER TABLE ... ADD COLUMN
    with schema_editor.connection.cursor() as cursor:
        for statement in SQLITE_LABEL_TRIGGERS:
            cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0004_notifications"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="matching",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text='Lineage options: {"enabled": false} for a new generation (no label matched), '
                '"thresholds" per geometry kind (marketplace.deliveries.lineage.Thresholds)',
            ),
        ),
        migrations.AddField(
            model_name="label",
            name="source_id",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The source tool's own id of the annotation (COCO annotation id, CVAT shape id, "
                "Label Studio result id): the next delivery's labels are matched on it",
                max_length=200,
            ),
        ),
        migrations.RunPython(restore_sqlite_triggers, migrations.RunPython.noop),
    ]
