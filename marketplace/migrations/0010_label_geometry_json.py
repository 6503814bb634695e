"""A label's geometry is stored as PostgreSQL ``json`` (checked text), not ``jsonb`` (parsed, binary).

``jsonb`` parses every geometry into its binary form as the row goes in: at issue 13's 500,000
labels that was about a third of the database's cost of writing the label rows (bench at 50,000
labels: 29.6 -> 18.6 us of server CPU per row). Nothing asks the database to look inside a geometry
(no query compares it or uses jsonb's operators); every reader takes it whole, as text parsed in
Python. See ``marketplace.models.fields.TextJSONField``.

PostgreSQL only (ALTER ... TYPE rewrites the table once); SQLite keeps its text column: an AlterField
there would rebuild the table and drop its triggers (see 0009).
"""

from django.db import migrations

import marketplace.models.fields

TABLE = "marketplace_label"


def to_json(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN geometry TYPE json USING geometry::json")


def to_jsonb(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN geometry TYPE jsonb USING geometry::jsonb")


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0009_statement_insert_triggers_and_fewer_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="label",
                    name="geometry",
                    field=marketplace.models.fields.TextJSONField(
                        blank=True, default=dict, help_text="Parts, as marketplace.formats.model describes"
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(to_json, to_jsonb)],
        ),
    ]
