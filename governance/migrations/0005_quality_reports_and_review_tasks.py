# Quality reports and the review queue (governance.reports, governance.consensus).

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0004_append_only_triggers"),
        ("marketplace", "0002_frozen_version_triggers"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="QualityReport",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("stats", "Statistics"),
                            ("agreement", "Inter-annotator agreement"),
                            ("balance", "Class and demographic balance"),
                            ("compliance", "AI Act evidence pack"),
                        ],
                        max_length=16,
                    ),
                ),
                ("result", models.JSONField(default=dict)),
                (
                    "parameters",
                    models.JSONField(
                        blank=True, default=dict, help_text="Thresholds the result was computed with"
                    ),
                ),
                ("computed_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="quality_reports",
                        to="marketplace.datasetversion",
                    ),
                ),
            ],
            options={
                "ordering": ["version", "kind"],
                "constraints": [
                    models.UniqueConstraint(fields=("version", "kind"), name="quality_report_unique_kind")
                ],
            },
        ),
        migrations.CreateModel(
            name="ReviewTask",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "score",
                    models.FloatField(help_text="The image's agreement score (0..1) when it was queued"),
                ),
                (
                    "components",
                    models.JSONField(
                        blank=True, default=dict, help_text="Geometry F1, class and attribute agreement"
                    ),
                ),
                ("threshold", models.FloatField()),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("open", "Open"),
                            ("accepted", "Accepted"),
                            ("fixed", "Fixed"),
                            ("rejected", "Rejected"),
                        ],
                        default="open",
                        max_length=16,
                    ),
                ),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("note", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "item",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="review_tasks",
                        to="marketplace.item",
                    ),
                ),
                (
                    "reviewer",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="review_tasks",
                        to="governance.annotator",
                    ),
                ),
                (
                    "version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="review_tasks",
                        to="marketplace.datasetversion",
                    ),
                ),
            ],
            options={
                "ordering": ["version", "score", "id"],
                "constraints": [
                    models.UniqueConstraint(fields=("version", "item"), name="review_task_unique_item"),
                    models.CheckConstraint(
                        condition=models.Q(("status__in", ["open", "accepted", "fixed", "rejected"])),
                        name="review_task_status_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("status", "open"), ("decided_at__isnull", False), _connector="OR"
                        ),
                        name="review_task_decided_has_date",
                    ),
                ],
            },
        ),
    ]
