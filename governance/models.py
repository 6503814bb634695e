"""The evidence: labelling guidelines, the annotator registry, the label ledger and its tree heads."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
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


class GuidelineImmutableError(ValidationError):
    """A guideline version is immutable once created, and undeletable once labels or versions use it."""

    def __init__(self, message: str):
        super().__init__(message, code="guideline_immutable")


class GuidelineVersionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise GuidelineImmutableError(
            "Guideline versions cannot be changed; upload a new version with a new tag."
        )

    def bulk_update(self, objs, fields, batch_size=None):
        raise GuidelineImmutableError(
            "Guideline versions cannot be changed; upload a new version with a new tag."
        )

    def superseded(self, at=None):
        """Versions for which a later version of the same guideline has taken effect (by ``at``, default today)."""
        today = at or timezone.now().date()
        later = GuidelineVersion.objects.filter(
            guideline=OuterRef("guideline"),
            effective_date__gt=OuterRef("effective_date"),
            effective_date__lte=today,
        )
        return self.filter(Exists(later))


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

    objects = GuidelineVersionQuerySet.as_manager()

    class Meta:
        ordering = ["guideline", "effective_date", "tag"]
        constraints = [
            models.UniqueConstraint(fields=["guideline", "tag"], name="guideline_version_unique_tag")
        ]

    def __str__(self) -> str:
        return f"{self.guideline.title} {self.tag}"

    def superseded_by(self, at=None) -> GuidelineVersion | None:
        """The newest version of the same guideline in effect (by ``at``) if it is later than this one."""
        today = at or timezone.now().date()
        return (
            GuidelineVersion.objects.filter(
                guideline_id=self.guideline_id,
                effective_date__gt=self.effective_date,
                effective_date__lte=today,
            )
            .order_by("-effective_date", "-tag")
            .first()
        )

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
        if not self._state.adding:
            # The sha256 pins what annotators read: new text is a new tag (a trigger holds this too).
            raise GuidelineImmutableError(f"{self} cannot be changed; upload a new version with a new tag.")
        super().save(*args, **kwargs)

    def is_referenced(self) -> bool:
        return bool(self.pk) and (self.labels.exists() or self.dataset_versions.exists())

    def delete(self, *args, **kwargs):
        if self.is_referenced():
            raise GuidelineImmutableError(
                f"{self} is referred to by labels or versions and cannot be deleted."
            )
        return super().delete(*args, **kwargs)


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


class LedgerAppendOnlyError(Exception):
    """Raised on any attempt to change or remove a ledger event or tree head through the ORM."""


class AppendOnlyQuerySet(models.QuerySet):
    """Bulk writes that would change or remove rows are refused before they reach the database triggers."""

    def update(self, **kwargs):
        raise LedgerAppendOnlyError(f"{self.model.__name__} rows are append-only and cannot be updated.")

    def delete(self):
        raise LedgerAppendOnlyError(f"{self.model.__name__} rows are append-only and cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise LedgerAppendOnlyError(f"{self.model.__name__} rows are append-only and cannot be updated.")

    def update_or_create(self, defaults=None, create_defaults=None, **kwargs):
        raise LedgerAppendOnlyError(f"{self.model.__name__} rows are append-only and cannot be updated.")


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
        PAYMENT_CONFIRMED = "payment_confirmed", "Payment confirmed"
        DATASET_WITHDRAWN = "dataset_withdrawn", "Dataset withdrawn"

    # No index of its own: the unique (dataset, seq) begins with it.
    dataset = models.ForeignKey(
        "marketplace.Dataset", on_delete=models.PROTECT, related_name="ledger", db_index=False
    )
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
    hash = models.CharField(max_length=64)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["dataset", "seq"]
        # hash is unique through a constraint, not unique=True: on PostgreSQL unique=True adds a second
        # (varchar_pattern_ops) index for LIKE 'prefix%' that no query uses, paid on every event.
        constraints = [
            models.UniqueConstraint(fields=["dataset", "seq"], name="ledger_unique_seq"),
            models.UniqueConstraint(fields=["hash"], name="ledger_unique_hash"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.label_uid or ''}".strip()

    def save(self, *args, **kwargs):
        # Events are written only by governance.ledger.append_events, which chains them under a lock;
        # a save() here would either edit history or append a link nobody computed.
        if not self._state.adding:
            raise LedgerAppendOnlyError(f"Ledger event {self} is append-only and cannot be changed.")
        raise LedgerAppendOnlyError(
            "Append ledger events with governance.ledger.append_events(), which chains and hashes them."
        )

    def delete(self, *args, **kwargs):
        raise LedgerAppendOnlyError(f"Ledger event {self} is append-only and cannot be deleted.")


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

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["dataset", "-tree_size"]
        get_latest_by = "tree_size"
        constraints = [
            models.CheckConstraint(condition=Q(tree_size__gte=0), name="tree_head_size_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id}@{self.tree_size} {self.root_hash[:12]}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise LedgerAppendOnlyError(f"Tree head {self} is signed and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerAppendOnlyError(f"Tree head {self} is signed and cannot be deleted.")


class LedgerChunk(models.Model):
    """A cached Merkle root over one full, aligned block of 2**level events of a dataset's ledger.

    Derived data, never trusted: proofs built from it are checked against the signed root before they
    are served, and signing and verification recompute every chunk from the events. It turns an
    inclusion proof in a million-event ledger from a million hashes into a few thousand.
    """

    dataset = models.ForeignKey("marketplace.Dataset", on_delete=models.CASCADE, related_name="+")
    level = models.PositiveSmallIntegerField(help_text="The block holds 2**level events")
    index = models.PositiveBigIntegerField(help_text="Block number: events index*2**level onwards")
    root_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["dataset", "level", "index"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "level", "index"], name="ledger_chunk_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id} chunk {self.level}/{self.index}"


# --------------------------------------------------------------------------- quality (agreement, balance, review)


class QualityReport(models.Model):
    """One stored quality result of a version: stats, agreement, balance or the compliance pack.

    Derived data: ``governance.quality.reports`` recomputes it at will, so it is a cache keyed by version and
    kind, not evidence in itself (the ledger is).
    """

    class Kind(models.TextChoices):
        STATS = "stats", "Statistics"
        AGREEMENT = "agreement", "Inter-annotator agreement"
        BALANCE = "balance", "Class and demographic balance"
        COMPLIANCE = "compliance", "AI Act evidence pack"

    version = models.ForeignKey(
        "marketplace.DatasetVersion", on_delete=models.CASCADE, related_name="quality_reports"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    result = models.JSONField(default=dict)
    parameters = models.JSONField(
        default=dict, blank=True, help_text="Thresholds the result was computed with"
    )
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["version", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["version", "kind"], name="quality_report_unique_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of version {self.version_id}"


class ReviewTaskQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status=ReviewTask.Status.OPEN)


class ReviewTask(models.Model):
    """An image whose annotators disagreed, waiting for a reviewer to accept, fix or reject its labels."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACCEPTED = "accepted", "Accepted"
        FIXED = "fixed", "Fixed"
        REJECTED = "rejected", "Rejected"

    version = models.ForeignKey(
        "marketplace.DatasetVersion", on_delete=models.CASCADE, related_name="review_tasks"
    )
    item = models.ForeignKey("marketplace.Item", on_delete=models.CASCADE, related_name="review_tasks")
    score = models.FloatField(help_text="The image's agreement score (0..1) when it was queued")
    components = models.JSONField(
        default=dict, blank=True, help_text="Geometry F1, class and attribute agreement"
    )
    threshold = models.FloatField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    reviewer = models.ForeignKey(
        Annotator, null=True, blank=True, on_delete=models.PROTECT, related_name="review_tasks"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = ReviewTaskQuerySet.as_manager()

    class Meta:
        ordering = ["version", "score", "id"]
        constraints = [
            models.UniqueConstraint(fields=["version", "item"], name="review_task_unique_item"),
            models.CheckConstraint(
                condition=Q(status__in=["open", "accepted", "fixed", "rejected"]),
                name="review_task_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(status="open") | Q(decided_at__isnull=False), name="review_task_decided_has_date"
            ),
        ]

    def __str__(self) -> str:
        return f"Review of {self.item_id} ({self.status})"


class ContentDigestBlock(models.Model):
    """Row digests of one part of a published version, BLOCK_ROWS rows a block (``governance.ledger.content``).

    A reference for pointing at a changed row, not evidence in itself: ``governance.ledger.content_verification``
    recomputes the signed part digest from these rows before it believes them.
    """

    version = models.ForeignKey(
        "marketplace.DatasetVersion", on_delete=models.CASCADE, related_name="content_blocks"
    )
    part = models.CharField(max_length=16)
    index = models.PositiveIntegerField()
    rows = models.TextField(help_text="One line a row: JSON key, tab, row SHA-256, tab, field digests")

    class Meta:
        ordering = ["version", "part", "index"]
        constraints = [
            models.UniqueConstraint(fields=["version", "part", "index"], name="content_block_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.version_id} {self.part} block {self.index}"


class HeldGeometry(models.Model):
    """A geometry that a deleted draft's label rows held, kept for the label histories that bind it.

    Label events bind a geometry by its hash (``ledger.events``): a history shows the geometry by finding
    a label row, or an inline state, that hashes to it. Deleting a draft removes its label rows, so
    before they go ``ledger.events.hold_geometries`` keeps here each geometry that no other version's
    row of the same label still holds. A row is evidence only through its hash: readers hash
    ``geometry`` again (``events.history_geometries``), so a row changed behind the ORM's back shows
    nothing. Append-only like the ledger (triggers, governance 0012).
    """

    dataset = models.ForeignKey(
        "marketplace.Dataset", on_delete=models.PROTECT, related_name="held_geometries", db_index=False
    )
    sha256 = models.CharField(max_length=64, help_text="The geometry's hash by the ledger's rule")
    label_uid = models.UUIDField(help_text="The label whose deleted row held it (the first one)")
    geometry = models.JSONField()
    held_at = models.DateTimeField(default=timezone.now)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["dataset", "sha256"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "sha256"], name="held_geometry_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.sha256[:12]} of {self.label_uid}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise LedgerAppendOnlyError("Held geometries are evidence and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerAppendOnlyError("Held geometries are evidence and cannot be deleted.")


# The verification job lives in its own module (governance.ledger.verify_chain's); imported for Django to see it.
from .verification_models import LedgerVerification  # noqa: E402, F401
