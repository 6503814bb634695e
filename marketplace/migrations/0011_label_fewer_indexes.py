"""Four indexes of the label table go or shrink: each costs every ingested label row (issue 13).

- (version, category) goes: a class belongs to one version's schema, so the category's own index
  answers "this class of this version"; a version's labels by class are read through (version, uid).
- (version, is_final) becomes (version) WHERE NOT is_final, ``label_candidates``: the queries it
  serves count or list a version's candidates (the few); final labels are nearly all of a version.
- annotator and guideline version: the plain indexes of the two ForeignKeys become partial ones over
  the rows that have one (``label_annotator_set``, ``label_guideline_set``). They serve PROTECT's
  checks when an annotator or guideline version is deleted, and the guideline's delete trigger
  (``guideline_version_id = OLD.id``, which implies IS NOT NULL); a COCO delivery names neither.

Bench (50,000 labels, server CPU of COPY into the table, rolled back): 29.6 -> 23.8 us a row.

The ForeignKeys' indexes are dropped with DROP INDEX (0009's ``drop_plain_index``), not AlterField:
on SQLite AlterField rebuilds the table, which drops its triggers.
"""

import importlib

import django.db.models.deletion
from django.db import migrations, models

DROP_PLAIN_INDEX = importlib.import_module(
    "marketplace.migrations.0009_statement_insert_triggers_and_fewer_indexes"
).drop_plain_index


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0011_ledger_fewer_indexes"),
        ("marketplace", "0010_label_geometry_json"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="label", name="marketplace_version_6bb477_idx"),
        migrations.RemoveIndex(model_name="label", name="marketplace_version_861f43_idx"),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="label",
                    name="annotator",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="labels",
                        to="governance.annotator",
                    ),
                ),
                migrations.AlterField(
                    model_name="label",
                    name="guideline_version",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="labels",
                        to="governance.guidelineversion",
                    ),
                ),
            ],
            database_operations=[
                DROP_PLAIN_INDEX(
                    "marketplace_label", "annotator_id", model="marketplace.Label", field="annotator"
                ),
                DROP_PLAIN_INDEX(
                    "marketplace_label",
                    "guideline_version_id",
                    model="marketplace.Label",
                    field="guideline_version",
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="label",
            index=models.Index(
                condition=models.Q(("is_final", False)), fields=["version"], name="label_candidates"
            ),
        ),
        migrations.AddIndex(
            model_name="label",
            index=models.Index(
                condition=models.Q(("annotator__isnull", False)),
                fields=["annotator"],
                name="label_annotator_set",
            ),
        ),
        migrations.AddIndex(
            model_name="label",
            index=models.Index(
                condition=models.Q(("guideline_version__isnull", False)),
                fields=["guideline_version"],
                name="label_guideline_set",
            ),
        ),
    ]
