"""Exports of a version in a format, and who downloaded them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .catalogue import DatasetVersion
from .organisations import Organization

__all__ = [
    "ContentPartFile",
    "Download",
    "Export",
]


class Export(models.Model):
    """One rendering of a version in a format, with options; reused when asked again."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        FAILED = "failed", "Failed"
        READY = "ready", "Ready"

    class Format(models.TextChoices):
        COCO = "coco", "COCO"
        VOC = "voc", "Pascal VOC"
        YOLO = "yolo", "YOLO (Ultralytics)"
        CROISSANT = "croissant", "Croissant metadata"

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=16, choices=Format.choices)
    options = models.JSONField(default=dict, blank=True)
    options_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)
    file = models.FileField(upload_to="exports/%Y/%m/", max_length=300, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    notes = models.JSONField(default=list, blank=True, help_text="What the format could not hold, and why")
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "format", "options_hash"], name="export_unique_options"
            ),
            models.CheckConstraint(condition=Q(progress__lte=100), name="export_progress_percent"),
        ]

    def __str__(self) -> str:
        return f"{self.version} as {self.format}"


class Download(models.Model):
    """A record of one download: who took what, when."""

    export = models.ForeignKey(Export, on_delete=models.PROTECT, related_name="downloads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.user} downloaded {self.export} at {self.at:%Y-%m-%d %H:%M}"


class ContentPartFile(models.Model):
    """A published version's ``content/<part>.jsonl``, stored deflated at publication (catalogue.content_files).

    The blob holds the bytes exactly as a zip entry holds them (raw deflate at the exports' level), so
    an export copies it into the archive as is; ``size``, ``crc`` and ``sha256`` are those of the
    inflated file (the zip entry's and the manifest's), ``deflated_sha256`` that of the blob itself,
    which the export checks as it copies.
    """

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="content_files")
    part = models.CharField(max_length=16)
    storage_key = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    crc = models.PositiveBigIntegerField(help_text="CRC-32 of the inflated bytes")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the inflated bytes")
    compressed_size = models.PositiveBigIntegerField()
    deflated_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the stored (deflated) blob")

    class Meta:
        ordering = ["version", "part"]
        constraints = [
            models.UniqueConstraint(fields=["version", "part"], name="content_part_file_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.version_id} content/{self.part}.jsonl"
