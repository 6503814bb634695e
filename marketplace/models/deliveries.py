"""A supplier's uploaded archive and its validation report."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .catalogue import Dataset, DatasetVersion

__all__ = [
    "Delivery",
]


class Delivery(models.Model):
    """An uploaded archive from a supplier, and what validation made of it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        VALIDATING = "validating", "Validating"
        FAILED = "failed", "Failed"
        INGESTED = "ingested", "Ingested"

    class Format(models.TextChoices):
        AUTO = "auto", "Detect"
        COCO = "coco", "COCO"
        VOC = "voc", "Pascal VOC"
        YOLO = "yolo", "YOLO"
        CVAT = "cvat", "CVAT for images 1.1"
        LABEL_STUDIO = "labelstudio", "Label Studio JSON"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="deliveries")
    version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    archive = models.FileField(upload_to="deliveries/%Y/%m/", max_length=300)
    original_name = models.CharField(max_length=300, blank=True)
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.AUTO)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    defaults = models.JSONField(default=dict, blank=True, help_text="Delivery-level provenance defaults")
    matching = models.JSONField(
        default=dict,
        blank=True,
        help_text='Lineage options: {"enabled": false} for a new generation (no label matched), '
        '"thresholds" per geometry kind (marketplace.deliveries.lineage.Thresholds)',
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Last sign of life of the run working on it (claim, progress): the stuck-delivery sweeper's clock.
    touched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"Delivery {self.pk} of {self.dataset.slug} ({self.status})"
