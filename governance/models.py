"""The evidence: labelling guidelines, the annotator registry, the label ledger and its tree heads."""

from __future__ import annotations

import hashlib

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Guideline(models.Model):
    """A labelling guideline of a dataset; its text evolves through versions."""

    dataset = models.ForeignKey("marketplace.Dataset", on_delete=models.CASCADE, related_name="guidelines")
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["dataset", "title"]
        constraints = [models.UniqueConstraint(fields=["dataset", "title"], name="guideline_unique_title")]

    def __str__(self) -> str:
        return self.title

    def current(self) -> GuidelineVersion | None:
        return (
            self.versions.filter(effective_date__lte=timezone.now().date())
            .order_by("-effective_date")
            .first()
        )


class GuidelineVersion(models.Model):
    """One version of a guideline; the hash pins the exact text labels were made under."""

    guideline = models.ForeignKey(Guideline, on_delete=models.CASCADE, related_name="versions")
    tag = models.CharField(max_length=32, help_text="e.g. v1.2")
    text = models.TextField(blank=True)
    document = models.FileField(upload_to="guidelines/%Y/", blank=True, max_length=300)
    sha256 = models.CharField(max_length=64, editable=False)
    effective_date = models.DateField()
    change_notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["guideline", "effective_date", "tag"]
        constraints = [
            models.UniqueConstraint(fields=["guideline", "tag"], name="guideline_version_unique_tag")
        ]

    def __str__(self) -> str:
        return f"{self.guideline.title} {self.tag}"

    def save(self, *args, **kwargs):
        # The hash is of what annotators read: the uploaded document when there is one, else the text.
        if not self.sha256:
            if self.document:
                digest = hashlib.sha256()
                for chunk in self.document.chunks():
                    digest.update(chunk)
                self.sha256 = digest.hexdigest()
            else:
                self.sha256 = hashlib.sha256(self.text.encode()).hexdigest()
        super().save(*args, **kwargs)


class Annotator(models.Model):
    """A pseudonymous annotator of a supplier; no personal data beyond what the supplier declares."""

    class Role(models.TextChoices):
        ANNOTATOR = "annotator", "Annotator"
        REVIEWER = "reviewer", "Reviewer"
        EXPERT = "expert", "Domain expert"
        MODEL = "model", "Model (pre-labelling)"

    organization = models.ForeignKey(
        "marketplace.Organization", on_delete=models.CASCADE, related_name="annotators"
    )
    pseudonym = models.CharField(max_length=64, help_text="e.g. A-17; unique within the supplier")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    qualifications = models.JSONField(
        default=list, blank=True, help_text='e.g. ["radiology board certified"]'
    )
    training_records = models.JSONField(
        default=list,
        blank=True,
        help_text='[{"what": "guideline v1.2 course", "when": "2026-02-01", "passed": true}]',
    )
    expertise = models.JSONField(default=list, blank=True, help_text="Domains of expertise")
    demographics = models.JSONField(
        default=dict, blank=True, help_text="Optional, self-declared; only ever shown aggregated"
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organization", "pseudonym"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "pseudonym"], name="annotator_unique_pseudonym")
        ]

    def __str__(self) -> str:
        return self.pseudonym


class LabelEvent(models.Model):
    """One entry of the append-only, hash-chained ledger of a dataset.

    Label events carry the label uid; dataset-level events (version published, entitlement
    granted, export downloaded) leave it empty. `hash` chains each event to the previous one
    of the same dataset; tree heads sign Merkle roots over the chain.
    """

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        MODIFIED = "modified", "Modified"
        DELETED = "deleted", "Deleted"
        REVIEWED = "reviewed", "Reviewed"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"
        CONSENSUS = "consensus", "Consensus"
        VERSION_PUBLISHED = "version_published", "Version published"
        VERSION_DEPRECATED = "version_deprecated", "Version deprecated"
        ENTITLEMENT_GRANTED = "entitlement_granted", "Entitlement granted"
        EXPORT_DOWNLOADED = "export_downloaded", "Export downloaded"

    dataset = models.ForeignKey("marketplace.Dataset", on_delete=models.PROTECT, related_name="ledger")
    seq = models.PositiveBigIntegerField(help_text="Position in the dataset's chain, from 0")
    label_uid = models.UUIDField(null=True, blank=True, db_index=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    actor = models.CharField(max_length=200, blank=True, help_text="Annotator pseudonym, model, or user")
    occurred_at = models.DateTimeField(help_text="When it happened, as the source says")
    recorded_at = models.DateTimeField(default=timezone.now)
    guideline_version = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=16, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    payload = models.JSONField(default=dict, blank=True, help_text="Geometry and attributes before and after")
    delivery_id = models.BigIntegerField(null=True, blank=True)
    version_number = models.PositiveIntegerField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["dataset", "seq"]
        constraints = [models.UniqueConstraint(fields=["dataset", "seq"], name="ledger_unique_seq")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.label_uid or ''}".strip()


class TreeHead(models.Model):
    """A signed Merkle root over a dataset's ledger at some size (RFC 6962 style)."""

    dataset = models.ForeignKey("marketplace.Dataset", on_delete=models.PROTECT, related_name="tree_heads")
    version = models.ForeignKey(
        "marketplace.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="tree_heads",
    )
    tree_size = models.PositiveBigIntegerField()
    root_hash = models.CharField(max_length=64)
    timestamp = models.DateTimeField(default=timezone.now)
    key_id = models.CharField(max_length=64, help_text="SHA-256 of the raw public key")
    signature = models.TextField(help_text="Base64 Ed25519 signature over the canonical head")

    class Meta:
        ordering = ["dataset", "-tree_size"]
        get_latest_by = "tree_size"
        constraints = [
            models.CheckConstraint(condition=Q(tree_size__gte=0), name="tree_head_size_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id}@{self.tree_size} {self.root_hash[:12]}"
