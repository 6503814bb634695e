"""The catalogue: datasets, versions, datasheets, schemas, items and labels.

Imports nothing from governance; governance models are named by string only
(``"governance.Annotator"``), so the dependency runs one way at the Python level.
"""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from ..formats import model as fmt
from ..lookups import HasElement  # noqa: F401  (registers the `has_element` JSON lookup)
from .fields import TextJSONField
from .organisations import Organization

# How a class colour is stored (the column holds 7 characters): the workspace and deliveries both hold to it.
CATEGORY_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")

__all__ = [
    "CATEGORY_COLOR_RE",
    "AnnotationSchema",
    "AttributeSpec",
    "Category",
    "DATASHEET_SECTIONS",
    "Dataset",
    "DatasetQuerySet",
    "DatasetVersion",
    "DatasetVersionQuerySet",
    "Datasheet",
    "FrozenVersionError",
    "Item",
    "Label",
    "LabelQuerySet",
    "ReleasedDatasetError",
    "SchemaContentQuerySet",
    "VersionContent",
    "VersionContentQuerySet",
]


class FrozenVersionError(ValidationError):
    """Raised on any attempt to change a published version or what it contains."""

    def __init__(self, version_label: str = "this version"):
        super().__init__(
            f"{version_label} is published and cannot be changed; make a new version instead.",
            code="version_frozen",
        )


# --------------------------------------------------------------------------- datasets


class DatasetQuerySet(models.QuerySet):
    def listed(self):
        """Datasets in the public catalogue: listed by moderation and with a published version."""
        return self.filter(status=Dataset.Status.LISTED).filter(
            Exists(
                DatasetVersion.objects.filter(dataset=OuterRef("pk"), status=DatasetVersion.Status.PUBLISHED)
            )
        )

    def delete(self):
        if DatasetVersion.objects.released().filter(dataset__in=self).exists():
            raise ReleasedDatasetError("A dataset in this selection")
        return super().delete()


class ReleasedDatasetError(ValidationError):
    """Raised on deleting a dataset that has released versions: staff withdraw it instead."""

    def __init__(self, label: str = "This dataset"):
        super().__init__(
            f"{label} has released versions and cannot be deleted; withdraw it with a reason instead.",
            code="dataset_released",
        )


class Dataset(models.Model):
    """A dataset as the catalogue lists it; its content lives in versions."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        LISTED = "listed", "Listed"
        DELISTED = "delisted", "Delisted"

    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    summary = models.CharField(max_length=400)
    description = models.TextField(blank=True)
    supplier = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="datasets")
    task_types = models.JSONField(default=list, blank=True, help_text='e.g. ["detection", "segmentation"]')
    domain = models.CharField(max_length=64, help_text="e.g. autonomous-driving, retail, infrastructure")
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["draft", "listed", "delisted"]), name="dataset_status_valid"
            )
        ]
        indexes = [models.Index(fields=["status", "domain"])]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("dataset-detail", kwargs={"slug": self.slug})

    def delete(self, *args, **kwargs):
        if self.pk and DatasetVersion.objects.released().filter(dataset_id=self.pk).exists():
            raise ReleasedDatasetError(f"{self.title}")
        return super().delete(*args, **kwargs)

    def latest_published(self) -> DatasetVersion | None:
        return self.versions.filter(status=DatasetVersion.Status.PUBLISHED).order_by("-number").first()


class DatasetVersionQuerySet(models.QuerySet):
    def released(self):
        """Published or deprecated: what buyers and auditors can read."""
        return self.filter(status__in=[DatasetVersion.Status.PUBLISHED, DatasetVersion.Status.DEPRECATED])

    def update(self, **kwargs):
        # Status moves (deprecation) go through save(), which checks field by field.
        if self.released().exists():
            raise FrozenVersionError("A version in this selection")
        return super().update(**kwargs)

    def delete(self):
        if self.released().exists():
            raise FrozenVersionError("A version in this selection")
        return super().delete()


class DatasetVersion(models.Model):
    """A numbered, immutable-once-published snapshot of a dataset's items and labels."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"
        DEPRECATED = "deprecated", "Deprecated"

    # Fields that may still change once published: the lifecycle and cached statistics.
    MUTABLE_WHEN_RELEASED = frozenset({"status", "deprecated_at", "deprecation_reason", "stats"})

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    release_notes = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 over items and labels")
    guideline_versions = models.ManyToManyField(
        "governance.GuidelineVersion", blank=True, related_name="dataset_versions"
    )
    stats = models.JSONField(default=dict, blank=True, help_text="Counts cached at ingest and publication")
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    deprecated_at = models.DateTimeField(null=True, blank=True)
    deprecation_reason = models.TextField(blank=True)

    objects = DatasetVersionQuerySet.as_manager()

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="version_unique_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="version_number_positive"),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(published_at__isnull=False), name="version_released_has_date"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.slug} v{self.number}"

    @property
    def is_frozen(self) -> bool:
        return self.status != self.Status.DRAFT

    def save(self, *args, **kwargs):
        # Compare with the stored row, not this instance: a stale instance must not bypass the rule.
        if self.pk:
            stored = DatasetVersion.objects.filter(pk=self.pk).values().first()
            if stored and stored["status"] != self.Status.DRAFT:
                changed = {
                    f.attname
                    for f in self._meta.concrete_fields
                    if stored[f.attname] != getattr(self, f.attname)
                }
                if changed - self.MUTABLE_WHEN_RELEASED or self.status == self.Status.DRAFT:
                    raise FrozenVersionError(str(self))
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.is_frozen:
            raise FrozenVersionError(str(self))
        return super().delete(*args, **kwargs)


class VersionContentQuerySet(models.QuerySet):
    """Bulk writes that would bypass save() are refused on released versions too."""

    _version_path = "version"

    def _released(self):
        return self.filter(**{f"{self._version_path}__status__in": ["published", "deprecated"]})

    def update(self, **kwargs):
        if self._released().exists():
            raise FrozenVersionError("A version in this selection")
        return super().update(**kwargs)

    def delete(self):
        if self._released().exists():
            raise FrozenVersionError("A version in this selection")
        return super().delete()


class SchemaContentQuerySet(VersionContentQuerySet):
    _version_path = "schema__version"


class VersionContent(models.Model):
    """Base for rows that belong to one version and freeze with it."""

    def owning_version(self) -> DatasetVersion:
        return self.version

    def _check_not_frozen(self):
        version = self.owning_version()
        # Re-read the status: the in-memory version may predate its publication.
        status = DatasetVersion.objects.filter(pk=version.pk).values_list("status", flat=True).first()
        if status and status != DatasetVersion.Status.DRAFT:
            raise FrozenVersionError(str(version))

    def save(self, *args, **kwargs):
        self._check_not_frozen()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        self._check_not_frozen()
        return super().delete(*args, **kwargs)

    class Meta:
        abstract = True


DATASHEET_SECTIONS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "motivation": (
        "Motivation",
        [
            ("purpose", "For what purpose was the dataset created? Was there a specific task in mind?"),
            ("creators", "Who created the dataset and on behalf of which entity?"),
            ("funding", "Who funded the creation of the dataset?"),
        ],
    ),
    "composition": (
        "Composition",
        [
            ("instances", "What do the instances represent? How many are there of each type?"),
            ("sampling", "Is it a sample from a larger set? How was it sampled, and is it representative?"),
            ("subpopulations", "Does the dataset identify any subpopulations (e.g., by age, gender)?"),
            ("sensitive_data", "Does it contain data that might be considered sensitive or personal?"),
            ("missing_information", "Is any information missing from individual instances?"),
            ("recommended_splits", "Are there recommended data splits, and why?"),
        ],
    ),
    "collection": (
        "Collection process",
        [
            ("acquisition", "How was the data associated with each instance acquired?"),
            ("timeframe", "Over what timeframe was the data collected?"),
            ("setting", "Where, and in which geographical, contextual or functional setting?"),
            ("collectors", "Who was involved in the collection and how were they compensated?"),
            ("consent", "Were the people concerned notified, and did they consent?"),
        ],
    ),
    "preprocessing": (
        "Preprocessing, cleaning and labelling",
        [
            ("preprocessing", "Was any preprocessing or cleaning done (resizing, blurring, deduplication)?"),
            ("labelling", "How were the labels made: guideline, tools, annotator pool, review and QA?"),
            ("annotation_platform", "Which annotation platform or tools were used?"),
            ("raw_data", "Was the raw data kept, and where?"),
        ],
    ),
    "uses": (
        "Uses",
        [
            ("intended_uses", "What tasks is the dataset intended for?"),
            ("unsuitable_uses", "Are there tasks for which it should not be used?"),
            ("biases", "What is known about biases in the data and the labels?"),
            ("limitations", "What are its known limitations and gaps?"),
            ("social_impact", "What could its use mean for people and society?"),
        ],
    ),
    "distribution": (
        "Distribution",
        [
            ("distribution", "How is it distributed, and under which license or terms of use?"),
            ("restrictions", "Do export controls or other regulatory restrictions apply?"),
        ],
    ),
    "maintenance": (
        "Maintenance",
        [
            ("maintainer", "Who maintains the dataset and how can they be contacted?"),
            ("update_policy", "Will it be updated (e.g., to correct labelling errors)? How often, by whom?"),
            ("retention", "Are there limits on how long the data may be kept?"),
        ],
    ),
}


class Datasheet(VersionContent):
    """The *Datasheets for Datasets* answers for one version, section by section."""

    version = models.OneToOneField(DatasetVersion, on_delete=models.CASCADE, related_name="datasheet")
    # Motivation
    purpose = models.TextField(blank=True)
    creators = models.TextField(blank=True)
    funding = models.TextField(blank=True)
    # Composition
    instances = models.TextField(blank=True)
    sampling = models.TextField(blank=True)
    subpopulations = models.TextField(blank=True)
    sensitive_data = models.TextField(blank=True)
    missing_information = models.TextField(blank=True)
    recommended_splits = models.TextField(blank=True)
    # Collection
    acquisition = models.TextField(blank=True)
    timeframe = models.TextField(blank=True)
    setting = models.TextField(blank=True)
    collectors = models.TextField(blank=True)
    consent = models.TextField(blank=True)
    # Preprocessing / labelling
    preprocessing = models.TextField(blank=True)
    labelling = models.TextField(blank=True)
    annotation_platform = models.TextField(blank=True)
    raw_data = models.TextField(blank=True)
    # Uses
    intended_uses = models.TextField(blank=True)
    unsuitable_uses = models.TextField(blank=True)
    biases = models.TextField(blank=True)
    limitations = models.TextField(blank=True)
    social_impact = models.TextField(blank=True)
    # Distribution
    distribution = models.TextField(blank=True)
    restrictions = models.TextField(blank=True)
    # Maintenance
    maintainer = models.TextField(blank=True)
    update_policy = models.TextField(blank=True)
    retention = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = VersionContentQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Datasheet of {self.version}"

    def sections(self) -> list[dict]:
        """The sections with their questions and answers, for pages and the API."""
        return [
            {
                "key": key,
                "title": title,
                "answers": [{"field": f, "question": q, "answer": getattr(self, f)} for f, q in questions],
            }
            for key, (title, questions) in DATASHEET_SECTIONS.items()
        ]

    def completeness(self) -> float:
        """Share of questions answered, 0..1."""
        fields = [f for _, qs in DATASHEET_SECTIONS.values() for f, _ in qs]
        return sum(1 for f in fields if getattr(self, f).strip()) / len(fields)


class AnnotationSchema(VersionContent):
    """The label vocabulary of a version: categories and attribute specs."""

    version = models.OneToOneField(DatasetVersion, on_delete=models.CASCADE, related_name="schema")
    description = models.TextField(blank=True)

    objects = VersionContentQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Schema of {self.version}"


class Category(VersionContent):
    """One class of the schema, with the geometry kinds it may be drawn as."""

    schema = models.ForeignKey(AnnotationSchema, on_delete=models.CASCADE, related_name="categories")
    name = models.CharField(max_length=120)
    source_id = models.IntegerField(
        null=True, blank=True, help_text="Id in the source format, kept on export"
    )
    supercategory = models.CharField(max_length=120, blank=True)
    description = models.TextField(blank=True)
    geometry_types = models.JSONField(default=list)
    keypoint_names = models.JSONField(default=list, blank=True)
    skeleton = models.JSONField(
        default=list, blank=True, help_text="Pairs of 1-based keypoint indices, as in COCO"
    )
    keypoint_sigmas = models.JSONField(
        default=list, blank=True, help_text="Per-keypoint OKS sigmas, optional"
    )
    flip_idx = models.JSONField(
        default=list, blank=True, help_text="Keypoint index swapped by a horizontal flip"
    )
    color = models.CharField(max_length=7, blank=True)

    objects = SchemaContentQuerySet.as_manager()

    class Meta:
        ordering = ["schema", "source_id", "name"]
        verbose_name_plural = "categories"
        constraints = [
            models.UniqueConstraint(fields=["schema", "name"], name="category_unique_name"),
            models.UniqueConstraint(fields=["schema", "source_id"], name="category_unique_source_id"),
        ]

    def __str__(self) -> str:
        return self.name

    def owning_version(self) -> DatasetVersion:
        return self.schema.version

    def clean(self):
        unknown = set(self.geometry_types) - set(fmt.GEOMETRY_TYPES)
        if unknown:
            raise ValidationError({"geometry_types": f"unknown geometry types: {sorted(unknown)}"})
        n = len(self.keypoint_names)
        if any(not (1 <= a <= n and 1 <= b <= n) for a, b in self.skeleton):
            raise ValidationError({"skeleton": "skeleton pairs must be 1-based indices into keypoint_names"})


class AttributeSpec(VersionContent):
    """An attribute labels or items may carry, and whether it describes a person."""

    class Type(models.TextChoices):
        CHOICE = "choice", "One of a list"
        TEXT = "text", "Free text"
        NUMBER = "number", "Number"
        BOOLEAN = "boolean", "Yes / no"

    class Scope(models.TextChoices):
        LABEL = "label", "Label"
        ITEM = "item", "Item (image)"

    schema = models.ForeignKey(AnnotationSchema, on_delete=models.CASCADE, related_name="attributes")
    name = models.CharField(max_length=120)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.CHOICE)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.LABEL)
    allowed_values = models.JSONField(default=list, blank=True)
    categories = models.JSONField(
        default=list, blank=True, help_text="Category names it applies to; empty: all"
    )
    describes_person = models.BooleanField(
        default=False,
        help_text="A demographic attribute: feeds the demographic balance, shown aggregated only",
    )
    target_distribution = models.JSONField(
        default=dict, blank=True, help_text="Declared target share per value, for the balance report"
    )
    description = models.TextField(blank=True)

    objects = SchemaContentQuerySet.as_manager()

    class Meta:
        ordering = ["schema", "scope", "name"]
        constraints = [
            models.UniqueConstraint(fields=["schema", "scope", "name"], name="attribute_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def owning_version(self) -> DatasetVersion:
        return self.schema.version


class Item(VersionContent):
    """One image of a version. The file is content-addressed, so versions share unchanged files."""

    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        VAL = "val", "Validation"
        TEST = "test", "Test"
        UNASSIGNED = "", "Unassigned"

    # No index of its own: (version, key) and (version, split) begin with it.
    version = models.ForeignKey(
        DatasetVersion, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    key = models.CharField(max_length=500, help_text="Path inside the dataset, e.g. images/train/0001.jpg")
    storage_key = models.CharField(max_length=300, help_text="Where the file lives in storage")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField(default=0)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    split = models.CharField(max_length=8, choices=Split.choices, blank=True, default="")
    synthetic = models.BooleanField(default=False)
    attributes = models.JSONField(default=dict, blank=True)
    pinned = models.BooleanField(default=False, help_text="Shown first among the preview samples")

    objects = VersionContentQuerySet.as_manager()

    class Meta:
        ordering = ["version", "key"]
        constraints = [
            models.UniqueConstraint(fields=["version", "key"], name="item_unique_key"),
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="item_positive_size"),
            models.CheckConstraint(
                condition=Q(split__in=["train", "val", "test", ""]), name="item_split_valid"
            ),
        ]
        indexes = [models.Index(fields=["version", "split"]), models.Index(fields=["sha256"])]
        # On PostgreSQL also unique (id, version_id), item_unique_id_version, which labels' composite
        # foreign key refers to (migration 0012, in SQL: on SQLite adding it would rebuild the table).

    def __str__(self) -> str:
        return self.key


class LabelQuerySet(VersionContentQuerySet):
    def final(self):
        return self.filter(is_final=True)


class Label(VersionContent):
    """One annotation on one item, with who made it, when, under which guideline, and how."""

    class Source(models.TextChoices):
        HUMAN = fmt.HUMAN, "Human"
        MODEL = fmt.MODEL, "Model"
        CONSENSUS = fmt.CONSENSUS, "Consensus"

    GeometryType = models.TextChoices(
        "GeometryType", [(g, g.replace("_", " ").capitalize()) for g in fmt.GEOMETRY_TYPES]
    )

    uid = models.UUIDField(default=uuid.uuid4, help_text="Stable across versions: the ledger follows it")
    # No index of its own: (version, uid), (version, category) and (version, is_final) begin with it,
    # and every index costs each ingested label row.
    version = models.ForeignKey(
        DatasetVersion, on_delete=models.CASCADE, related_name="labels", db_index=False
    )
    # On PostgreSQL one foreign key checks item and version together, (item_id, version_id) ->
    # item (id, version_id): a label's version is its item's (migration 0012, in SQL).
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="labels")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="labels")
    geometry_type = models.CharField(max_length=16, choices=GeometryType.choices)
    # json, not jsonb, on PostgreSQL: written by the hundred thousand, read whole (see TextJSONField).
    geometry = TextJSONField(
        default=dict, blank=True, help_text="Parts, as marketplace.formats.model describes"
    )
    attributes = models.JSONField(default=dict, blank=True)
    iscrowd = models.BooleanField(default=False)
    is_final = models.BooleanField(
        default=True, help_text="False: one annotator's candidate, kept for agreement"
    )
    # Indexed only where set (Meta.indexes): most deliveries name no annotator or guideline, and a
    # full index costs each ingested label row for nothing but the deletes PROTECT checks.
    annotator = models.ForeignKey(
        "governance.Annotator",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="labels",
        db_index=False,
    )
    guideline_version = models.ForeignKey(
        "governance.GuidelineVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="labels",
        db_index=False,
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.HUMAN)
    model_name = models.CharField(max_length=200, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    made_at = models.DateTimeField(null=True, blank=True)
    source_ref = models.CharField(max_length=300, blank=True, help_text="Where it came from in the delivery")
    source_id = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="The source tool's own id of the annotation (COCO annotation id, CVAT shape id, "
        "Label Studio result id): the next delivery's labels are matched on it",
    )
    delivery = models.ForeignKey(
        "Delivery", null=True, blank=True, on_delete=models.SET_NULL, related_name="labels"
    )

    objects = LabelQuerySet.as_manager()

    class Meta:
        ordering = ["item", "id"]
        constraints = [
            models.UniqueConstraint(fields=["version", "uid"], name="label_unique_uid_per_version"),
            models.CheckConstraint(
                condition=Q(geometry_type__in=list(fmt.GEOMETRY_TYPES)), name="label_geometry_valid"
            ),
            models.CheckConstraint(condition=Q(source__in=list(fmt.SOURCES)), name="label_source_valid"),
            models.CheckConstraint(
                condition=~Q(source=fmt.MODEL) | ~Q(model_name=""), name="label_model_source_names_model"
            ),
        ]
        # Each index costs every ingested label row (issue 13), so only what queries need:
        # - by version: the unique (version, uid); a version's candidates (is_final false, the few):
        #   label_candidates; a class of a version: the category's own index (a class is one version's);
        #   a version's classification labels (the few): label_classifications.
        # - annotator and guideline version: only the rows that have one (PROTECT's checks on delete,
        #   the guideline's delete trigger).
        indexes = [
            models.Index(fields=["uid"]),
            models.Index(fields=["version"], condition=Q(is_final=False), name="label_candidates"),
            # Whether a version has a classification label (the COCO export asks before it begins its
            # files: exports._items_first): the few that are, not a scan of the version's labels.
            models.Index(
                fields=["version"],
                condition=Q(geometry_type=fmt.CLASSIFICATION),
                name="label_classifications",
            ),
            models.Index(
                fields=["annotator"], condition=Q(annotator__isnull=False), name="label_annotator_set"
            ),
            models.Index(
                fields=["guideline_version"],
                condition=Q(guideline_version__isnull=False),
                name="label_guideline_set",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.category} ({self.geometry_type}) on {self.item}"
