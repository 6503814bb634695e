"""The supplier's workspace: datasets, datasheets, schemas, guidelines, offers and the version lifecycle.

Every write a supplier makes outside a delivery goes through a function here; the API
(``marketplace.api.workspace``) and the pages (``marketplace.workspace_views``) only parse,
check access with :func:`access_dataset` and call them.

How versions move: a dataset starts with an empty draft v1 that holds its datasheet and
schema; an ingested delivery fills the newest version when it is such an empty draft, and
otherwise makes the next version (copying the datasheet and schema of the version before it); :func:`publish_draft` freezes the newest draft once
:func:`check_publishable` has nothing to say, and :func:`deprecate_version` retires a release
with a reason buyers see. A published version never changes: a fix is a new version
(:func:`start_draft`).
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from decimal import Decimal, InvalidOperation

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.text import slugify

from governance import ledger
from governance.models import Guideline, GuidelineVersion

from . import catalogue, lineage, notifications
from .api.errors import DomainError
from .formats import model as fmt
from .models import (
    DATASHEET_SECTIONS,
    AnnotationSchema,
    AttributeSpec,
    Category,
    Dataset,
    DatasetVersion,
    Datasheet,
    Delivery,
    Export,
    Item,
    Label,
    License,
    Offer,
    Organization,
    Role,
    org_ids,
)

# The one question per section of *Datasheets for Datasets* that a release cannot go without:
# what it is for, what is in it, how it was collected and labelled, what it may be used for,
# under which terms, and whom to ask. The other questions raise the completeness score.
REQUIRED_DATASHEET_FIELDS: dict[str, str] = {
    "motivation": "purpose",
    "composition": "instances",
    "collection": "acquisition",
    "preprocessing": "labelling",
    "uses": "intended_uses",
    "distribution": "distribution",
    "maintenance": "maintainer",
}
DATASHEET_FIELDS: dict[str, str] = {
    name: question for _, questions in DATASHEET_SECTIONS.values() for name, question in questions
}

# An uploaded guideline is a PDF annotators read; bigger than this is almost surely the wrong file.
GUIDELINE_MAX_BYTES = 25 * 1024 * 1024
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"]
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
DATASET_EDITABLE = ("title", "summary", "description", "domain", "task_types", "tags")


class NotPublishable(DomainError):
    """A draft lacks what a release needs; ``missing`` says what, one sentence per gap."""

    def __init__(self, missing: list[str]):
        super().__init__(
            f"This version cannot be published yet: {len(missing)} thing{'s' if len(missing) != 1 else ''} "
            "missing.",
            code="not_publishable",
            extra={"missing": missing},
        )
        self.missing = missing


class InvalidInput(DomainError):
    """Field-level problems, as ``{"fields": {"path": ["message", ...]}}`` like DRF's validation errors."""

    def __init__(self, errors: dict[str, list[str]], *, code: str = "invalid"):
        if len(errors) == 1:
            ((field, messages),) = errors.items()
            detail = f"{field}: {messages[0]}"
        else:
            detail = f"{len(errors)} fields are not valid."
        super().__init__(detail, code=code, extra={"fields": errors})
        self.errors = errors


def frozen_error(version: DatasetVersion) -> DomainError:
    return DomainError(
        f"Version {version.number} is {version.status} and cannot change; start a new draft instead.",
        code="version_frozen",
        status_code=409,
    )


# --------------------------------------------------------------------------- access


def supplier_orgs(user) -> list[Organization]:
    """Organisations in which the user holds the supplier role."""
    return list(Organization.objects.filter(pk__in=org_ids(user, Role.SUPPLIER)))


def access_dataset(user, slug: str) -> Dataset:
    """The user's own organisation's dataset, else 404: a foreign dataset is not there, not forbidden."""
    try:
        return Dataset.objects.supplied_by(user).select_related("supplier").get(slug=slug)
    except Dataset.DoesNotExist:
        raise Http404("No such dataset in your workspace") from None


def access_version(user, slug: str, number: int) -> DatasetVersion:
    dataset = access_dataset(user, slug)
    try:
        return dataset.versions.select_related("dataset__supplier").get(number=number)
    except DatasetVersion.DoesNotExist:
        raise Http404("No such version") from None


def latest_version(dataset: Dataset) -> DatasetVersion | None:
    return dataset.versions.order_by("-number").first()


def current_draft(dataset: Dataset) -> DatasetVersion | None:
    """The newest version if it is a draft: the one the editor writes to."""
    latest = latest_version(dataset)
    return latest if latest is not None and latest.status == DatasetVersion.Status.DRAFT else None


# --------------------------------------------------------------------------- datasets


def _clean_str_list(value, field: str, errors: dict) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = re.split(r"[,\n]", value)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        errors.setdefault(field, []).append("Give a list of short words.")
        return []
    out = []
    for v in (v.strip() for v in value):
        if v and v not in out:
            out.append(v[:64])
    return out


def _dataset_fields(data: dict, *, partial: bool) -> dict:
    errors: dict[str, list[str]] = {}
    clean: dict = {}
    limits = {"title": 200, "summary": 400, "domain": 64}
    for name in ("title", "summary", "domain"):
        if name in data or not partial:
            value = str(data.get(name) or "").strip()
            if not value:
                errors.setdefault(name, []).append("This field is required.")
            elif len(value) > limits[name]:
                errors.setdefault(name, []).append(f"At most {limits[name]} characters.")
            clean[name] = value
    if "description" in data:
        clean["description"] = str(data.get("description") or "").strip()
    for name in ("task_types", "tags"):
        if name in data:
            clean[name] = _clean_str_list(data.get(name), name, errors)
    unknown = set(data) - set(DATASET_EDITABLE) - {"slug", "supplier"}
    for name in sorted(unknown):
        errors.setdefault(name, []).append("Not a field you can set here.")
    if errors:
        raise InvalidInput(errors)
    return clean


@transaction.atomic
def create_dataset(*, user, organization: Organization | None = None, slug: str = "", **fields) -> Dataset:
    """A new draft dataset of the user's supplier organisation, with an empty draft v1 for its datasheet."""
    orgs = supplier_orgs(user)
    if not orgs:
        raise DomainError(
            "Only members of a supplier organisation create datasets.", code="not_a_supplier", status_code=403
        )
    if organization is None:
        if len(orgs) > 1:
            raise InvalidInput({"supplier": ["Say which of your organisations supplies it."]})
        organization = orgs[0]
    elif organization.pk not in {o.pk for o in orgs}:
        raise InvalidInput({"supplier": ["You are not a supplier of that organisation."]})
    clean = _dataset_fields(fields, partial=False)
    slug = (slug or slugify(clean["title"]))[:100].strip("-")
    if not SLUG_RE.match(slug):
        raise InvalidInput({"slug": ["Use lower-case letters, digits and single hyphens."]})
    if Dataset.objects.filter(slug=slug).exists():
        raise InvalidInput({"slug": [f"“{slug}” is taken; choose another."]}, code="slug_taken")
    try:
        with transaction.atomic():  # a savepoint: the slug may be taken a moment after the check above
            dataset = Dataset.objects.create(supplier=organization, slug=slug, **clean)
    except IntegrityError:
        raise InvalidInput({"slug": [f"“{slug}” is taken; choose another."]}, code="slug_taken") from None
    version = DatasetVersion.objects.create(dataset=dataset, number=1)
    Datasheet.objects.create(version=version)
    AnnotationSchema.objects.create(version=version)
    return dataset


@transaction.atomic
def update_dataset(*, dataset: Dataset, **fields) -> Dataset:
    """Edit what the catalogue shows. The slug stays: it is part of every ledger hash of the dataset."""
    if "slug" in fields and fields["slug"] != dataset.slug:
        raise InvalidInput(
            {"slug": ["The address of a dataset cannot change: its ledger is hashed with it."]},
            code="slug_immutable",
        )
    fields.pop("slug", None)
    clean = _dataset_fields(fields, partial=True)
    for name, value in clean.items():
        setattr(dataset, name, value)
    dataset.save(update_fields=[*clean, "updated_at"])
    return dataset


# --------------------------------------------------------------------------- datasheet


def _editable(version: DatasetVersion) -> DatasetVersion:
    """Re-read the status under a lock: a version published a moment ago must not take the write."""
    locked = DatasetVersion.objects.select_for_update().get(pk=version.pk)
    if locked.status != DatasetVersion.Status.DRAFT:
        raise frozen_error(locked)
    return locked


@transaction.atomic
def update_datasheet(*, version: DatasetVersion, answers: dict) -> Datasheet:
    """Set some answers of a draft's datasheet; the others keep their value."""
    version = _editable(version)
    errors = {name: ["Not a question of the datasheet."] for name in answers if name not in DATASHEET_FIELDS}
    errors.update(
        {
            name: ["Write the answer as text."]
            for name, value in answers.items()
            if name in DATASHEET_FIELDS and value is not None and not isinstance(value, str)
        }
    )
    if errors:
        raise InvalidInput(errors)
    sheet, _ = Datasheet.objects.get_or_create(version=version)
    for name, value in answers.items():
        setattr(sheet, name, (value or "").strip())
    sheet.save()
    return sheet


def datasheet_gaps(version: DatasetVersion) -> list[str]:
    """The required questions a version's datasheet leaves unanswered, as sentences."""
    sheet = Datasheet.objects.filter(version=version).first()
    gaps = []
    for section, field in REQUIRED_DATASHEET_FIELDS.items():
        if sheet is None or not getattr(sheet, field).strip():
            gaps.append(f"Datasheet, {DATASHEET_SECTIONS[section][0]}: answer “{DATASHEET_FIELDS[field]}”")
    return gaps


# --------------------------------------------------------------------------- schema


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _clean_category(raw: dict, where: str, errors: dict) -> dict:
    def err(field: str, message: str):
        errors.setdefault(f"{where}.{field}", []).append(message)

    if not isinstance(raw, dict):
        errors.setdefault(where, []).append("Each category is an object with a name.")
        return {}
    unknown = set(raw) - {
        "name",
        "source_id",
        "supercategory",
        "description",
        "geometry_types",
        "keypoint_names",
        "skeleton",
        "keypoint_sigmas",
        "flip_idx",
        "color",
        "id",
    }
    for name in sorted(unknown):
        err(name, "Not a category field.")
    name = str(raw.get("name") or "").strip()
    if not name:
        err("name", "A category needs a name.")
    elif len(name) > 120:
        err("name", "At most 120 characters.")
    kinds = raw.get("geometry_types") or []
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    if not isinstance(kinds, list) or not kinds:
        err("geometry_types", f"Choose at least one geometry kind: {', '.join(fmt.GEOMETRY_TYPES)}.")
        kinds = []
    unknown_kinds = [k for k in kinds if k not in fmt.GEOMETRY_TYPES]
    if unknown_kinds:
        err(
            "geometry_types",
            f"Unknown geometry kind {', '.join(map(str, unknown_kinds))}; use {', '.join(fmt.GEOMETRY_TYPES)}.",
        )
    kinds = list(dict.fromkeys(k for k in kinds if k in fmt.GEOMETRY_TYPES))

    points = raw.get("keypoint_names") or []
    if isinstance(points, str):
        points = [p.strip() for p in re.split(r"[,\n]", points) if p.strip()]
    if not isinstance(points, list) or not all(isinstance(p, str) and p.strip() for p in points):
        err("keypoint_names", "Keypoint names are a list of non-empty names.")
        points = []
    points = [p.strip() for p in points]
    if len(set(points)) != len(points):
        err("keypoint_names", "Keypoint names must be unique.")
    if fmt.KEYPOINTS in kinds and not points:
        err("keypoint_names", "A keypoints category needs its keypoint names.")
    if points and fmt.KEYPOINTS not in kinds:
        err("keypoint_names", "Keypoint names need the “keypoints” geometry kind.")

    skeleton = raw.get("skeleton") or []
    pairs: list[list[int]] = []
    if not isinstance(skeleton, list):
        err("skeleton", "The skeleton is a list of [from, to] pairs.")
        skeleton = []
    for i, pair in enumerate(skeleton):
        ends = [_as_int(v) for v in pair] if isinstance(pair, list | tuple) else []
        if len(ends) != 2 or None in ends:
            err("skeleton", f"Bone {i + 1}: a bone is a pair of two keypoint numbers.")
            continue
        a, b = ends
        if not (1 <= a <= len(points) and 1 <= b <= len(points)):
            err(
                "skeleton",
                f"Bone {i + 1} ({a}-{b}): keypoints are numbered from 1 to {len(points)}, as in COCO.",
            )
        elif a == b:
            err("skeleton", f"Bone {i + 1} ({a}-{b}) joins a keypoint to itself.")
        elif sorted((a, b)) in (sorted(p) for p in pairs):
            err("skeleton", f"Bone {i + 1} ({a}-{b}) is listed twice.")
        else:
            pairs.append([a, b])

    flip = raw.get("flip_idx") or []
    if flip and (
        not isinstance(flip, list)
        or sorted(_as_int(v) if _as_int(v) is not None else -1 for v in flip) != list(range(len(points)))
    ):
        err("flip_idx", f"flip_idx is a 0-based permutation of the {len(points)} keypoints.")
        flip = []
    sigmas = raw.get("keypoint_sigmas") or []
    if sigmas and (
        not isinstance(sigmas, list)
        or len(sigmas) != len(points)
        or not all(isinstance(s, int | float) and not isinstance(s, bool) and s > 0 for s in sigmas)
    ):
        err("keypoint_sigmas", f"Give one positive sigma per keypoint ({len(points)}).")
        sigmas = []

    source_id = raw.get("source_id")
    if source_id in ("", None):
        source_id = None
    else:
        source_id = _as_int(source_id)
        if source_id is None or source_id < 0:
            err("source_id", "The id is a whole number, 0 or more.")
            source_id = None
    color = str(raw.get("color") or "").strip()
    if color and not COLOR_RE.match(color):
        err("color", "A colour is written #rrggbb.")
    return {
        "name": name,
        "source_id": source_id,
        "supercategory": str(raw.get("supercategory") or "").strip()[:120],
        "description": str(raw.get("description") or "").strip(),
        "geometry_types": kinds,
        "keypoint_names": points,
        "skeleton": pairs,
        "keypoint_sigmas": [float(s) for s in sigmas],
        "flip_idx": [int(v) for v in flip],
        "color": color.lower(),
    }


def _clean_attribute(raw: dict, where: str, category_names: set[str], errors: dict) -> dict:
    def err(field: str, message: str):
        errors.setdefault(f"{where}.{field}", []).append(message)

    if not isinstance(raw, dict):
        errors.setdefault(where, []).append("Each attribute is an object with a name.")
        return {}
    unknown = set(raw) - {
        "name",
        "type",
        "scope",
        "allowed_values",
        "categories",
        "describes_person",
        "target_distribution",
        "description",
        "id",
    }
    for name in sorted(unknown):
        err(name, "Not an attribute field.")
    name = str(raw.get("name") or "").strip()
    if not name:
        err("name", "An attribute needs a name.")
    kind = raw.get("type") or AttributeSpec.Type.CHOICE
    if kind not in AttributeSpec.Type.values:
        err("type", f"Type is one of {', '.join(AttributeSpec.Type.values)}.")
    scope = raw.get("scope") or AttributeSpec.Scope.LABEL
    if scope not in AttributeSpec.Scope.values:
        err("scope", f"Scope is one of {', '.join(AttributeSpec.Scope.values)}.")
    values = raw.get("allowed_values") or []
    if isinstance(values, str):
        values = [v.strip() for v in re.split(r"[,\n]", values) if v.strip()]
    if not isinstance(values, list) or not all(isinstance(v, str | int | float) for v in values):
        err("allowed_values", "Allowed values are a list.")
        values = []
    values = [str(v).strip() for v in values]
    if len(set(values)) != len(values):
        err("allowed_values", "Allowed values must be unique.")
    if kind == AttributeSpec.Type.CHOICE and not values:
        err("allowed_values", "A choice attribute needs its allowed values.")
    if kind == AttributeSpec.Type.BOOLEAN and values:
        err("allowed_values", "A yes/no attribute has no list of values.")
    cats = raw.get("categories") or []
    if isinstance(cats, str):
        cats = [c.strip() for c in cats.split(",") if c.strip()]
    if not isinstance(cats, list):
        err("categories", "Categories are a list of category names.")
        cats = []
    missing = [c for c in cats if c not in category_names]
    if missing:
        err("categories", f"No category named {', '.join(map(str, missing))} in this schema.")
    if cats and scope == AttributeSpec.Scope.ITEM:
        err("categories", "An image-level attribute applies to no category.")
    target = raw.get("target_distribution") or {}
    if not isinstance(target, dict):
        err("target_distribution", "The target distribution maps each value to a share between 0 and 1.")
        target = {}
    elif target:
        shares = list(target.values())
        if not all(isinstance(s, int | float) and not isinstance(s, bool) and 0 <= s <= 1 for s in shares):
            err("target_distribution", "Each target share is a number between 0 and 1.")
        elif sum(shares) > 1.0001:
            err("target_distribution", f"The target shares add up to {sum(shares):g}, more than 1.")
        if values and set(target) - set(values):
            err(
                "target_distribution",
                f"{', '.join(sorted(set(target) - set(values)))} is not an allowed value.",
            )
    person = raw.get("describes_person", False)
    if not isinstance(person, bool):
        person = str(person).lower() in ("1", "true", "yes", "on")
    return {
        "name": name[:120],
        "type": kind,
        "scope": scope,
        "allowed_values": values,
        "categories": cats,
        "describes_person": person,
        "target_distribution": target,
        "description": str(raw.get("description") or "").strip(),
    }


@transaction.atomic
def set_schema(
    *, version: DatasetVersion, categories: list[dict], attributes: list[dict]
) -> AnnotationSchema:
    """Replace a draft's categories and attributes, matched by name so its labels keep their category.

    A category that labels of this version use cannot be removed, lose a geometry kind its labels
    are drawn as, or change its number of keypoints; the error says which and how many.
    """
    version = _editable(version)
    errors: dict[str, list[str]] = {}
    if not isinstance(categories, list) or not isinstance(attributes, list):
        raise InvalidInput(
            {"schema": ["Send “categories” and “attributes” as lists."]}, code="invalid_schema"
        )
    cats = [_clean_category(raw, f"categories[{i}]", errors) for i, raw in enumerate(categories)]
    names = [c.get("name") for c in cats if c.get("name")]
    for name in {n for n in names if names.count(n) > 1}:
        errors.setdefault("categories", []).append(f"Two categories are named “{name}”.")
    ids = [c["source_id"] for c in cats if c.get("source_id") is not None]
    for sid in {i for i in ids if ids.count(i) > 1}:
        errors.setdefault("categories", []).append(f"Two categories have id {sid}.")
    attrs = [
        _clean_attribute(raw, f"attributes[{i}]", set(names), errors) for i, raw in enumerate(attributes)
    ]
    keys = [(a.get("scope"), a.get("name")) for a in attrs if a.get("name")]
    for scope, name in {k for k in keys if keys.count(k) > 1}:
        errors.setdefault("attributes", []).append(f"Two {scope} attributes are named “{name}”.")

    schema, _ = AnnotationSchema.objects.get_or_create(version=version)
    existing = {c.name: c for c in schema.categories.all()}
    used = {
        row["category__name"]: row
        for row in Label.objects.filter(version=version)
        .values("category__name")
        .annotate(n=Count("id"))
        .order_by()
    }
    kinds_used: dict[str, set[str]] = {}
    for cat_name, kind in (
        Label.objects.filter(version=version).values_list("category__name", "geometry_type").distinct()
    ):
        kinds_used.setdefault(cat_name, set()).add(kind)
    wanted = {c["name"]: c for c in cats if c.get("name")}
    for name, row in sorted(used.items()):
        if name not in wanted:
            errors.setdefault("categories", []).append(
                f"“{name}” has {row['n']} label{'s' if row['n'] != 1 else ''} in this version and cannot be removed."
            )
            continue
        lost = kinds_used.get(name, set()) - set(wanted[name]["geometry_types"])
        if lost:
            errors.setdefault("categories", []).append(
                f"“{name}” has labels drawn as {', '.join(sorted(lost))}; keep that geometry kind."
            )
        old = existing.get(name)
        if old and old.keypoint_names and len(old.keypoint_names) != len(wanted[name]["keypoint_names"]):
            errors.setdefault("categories", []).append(
                f"“{name}” has keypoint labels with {len(old.keypoint_names)} points; the number of "
                "keypoints cannot change in this version."
            )
    if errors:
        raise InvalidInput(errors, code="invalid_schema")

    # Give every category an id: exports name classes by number, and later versions keep them.
    taken = {c["source_id"] for c in cats if c["source_id"] is not None}
    next_id = max(taken, default=0) + 1
    for i, c in enumerate(cats):
        if c["source_id"] is None:
            old = existing.get(c["name"])
            if old is not None and old.source_id is not None and old.source_id not in taken:
                c["source_id"] = old.source_id
            else:
                c["source_id"] = next_id
                next_id += 1
            taken.add(c["source_id"])
        c["color"] = (
            c["color"]
            or (existing[c["name"]].color if c["name"] in existing else "")
            or PALETTE[i % len(PALETTE)]
        )
    # Free the ids first: (schema, source_id) is unique and two kept categories may swap ids.
    Category.objects.filter(schema=schema).exclude(name__in=wanted).delete()
    Category.objects.filter(schema=schema).update(source_id=None)
    for c in cats:
        obj = existing.get(c["name"]) or Category(schema=schema)
        for field, value in c.items():
            setattr(obj, field, value)
        obj.save()
    AttributeSpec.objects.filter(schema=schema).delete()
    AttributeSpec.objects.bulk_create([AttributeSpec(schema=schema, **a) for a in attrs])
    return schema


def schema_as_dict(version: DatasetVersion) -> dict:
    """The schema in the shape :func:`set_schema` takes, so a client can read, edit and send it back."""
    schema = AnnotationSchema.objects.filter(version=version).first()
    if schema is None:
        return {"categories": [], "attributes": []}
    cat_fields = [
        "name",
        "source_id",
        "supercategory",
        "description",
        "geometry_types",
        "keypoint_names",
        "skeleton",
        "keypoint_sigmas",
        "flip_idx",
        "color",
    ]
    attr_fields = [
        "name",
        "type",
        "scope",
        "allowed_values",
        "categories",
        "describes_person",
        "target_distribution",
        "description",
    ]
    return {
        "categories": list(schema.categories.order_by("source_id", "name").values(*cat_fields)),
        "attributes": list(schema.attributes.order_by("scope", "name").values(*attr_fields)),
    }


# --------------------------------------------------------------------------- guidelines


def _read_pdf(document) -> tuple[str, list[str]]:
    """SHA-256 of an uploaded PDF, and what is wrong with it (name, size, magic bytes)."""
    problems = []
    name = getattr(document, "name", "") or ""
    if not name.lower().endswith(".pdf"):
        problems.append("Upload the guideline as a PDF file (.pdf).")
    size = getattr(document, "size", None)
    if size is not None and size > GUIDELINE_MAX_BYTES:
        problems.append(
            f"The file is {size // (1024 * 1024)} MB; at most {GUIDELINE_MAX_BYTES // (1024 * 1024)} MB."
        )
        return "", problems
    digest = hashlib.sha256()
    head = b""
    document.seek(0)
    for chunk in (
        document.chunks() if hasattr(document, "chunks") else iter(lambda: document.read(65536), b"")
    ):
        if len(head) < 5:
            head += chunk[:5]
        digest.update(chunk)
    document.seek(0)
    if not head.startswith(b"%PDF-"):
        problems.append("This file is not a PDF (it does not start with %PDF-).")
    return digest.hexdigest(), problems


def add_guideline_version(
    *,
    dataset: Dataset,
    title: str,
    tag: str,
    effective_date: date | None = None,
    text: str = "",
    document=None,
    change_notes: str = "",
    attach_to_draft: bool = True,
) -> GuidelineVersion:
    """A new version of one of the dataset's guidelines, from text or a PDF, pinned by its SHA-256."""
    errors: dict[str, list[str]] = {}
    title, tag, text = (title or "").strip(), (tag or "").strip(), (text or "").strip()
    if not title:
        errors["title"] = ["Name the guideline."]
    if not tag:
        errors["tag"] = ["Give the version a tag, e.g. v1.2."]
    elif len(tag) > 32:
        errors["tag"] = ["At most 32 characters."]
    if not text and not document:
        errors["text"] = ["Paste the guideline's text or upload its PDF."]
    sha = ""
    if document:
        sha, problems = _read_pdf(document)
        if problems:
            errors["document"] = problems
    if errors:
        raise InvalidInput(errors)
    # The file is written to storage inside the transaction on purpose: the row without its file
    # would pin a hash nobody can read. A rollback leaves an orphan file, never a dangling row.
    with transaction.atomic():
        Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
        guideline, _ = Guideline.objects.get_or_create(dataset=dataset, title=title[:200])
        if guideline.versions.filter(tag=tag).exists():
            raise InvalidInput({"tag": [f"{title} already has a version {tag}."]}, code="tag_taken")
        gv = GuidelineVersion(
            guideline=guideline,
            tag=tag,
            text=text,
            effective_date=effective_date or timezone.now().date(),
            change_notes=(change_notes or "").strip(),
            sha256=sha,
        )
        if document:
            gv.document.save(document.name.rsplit("/", 1)[-1], document, save=False)
        gv.save()
        draft = current_draft(dataset)
        if attach_to_draft and draft is not None:
            draft.guideline_versions.add(gv)
    return gv


# --------------------------------------------------------------------------- offers and licenses


def licenses_for(organization: Organization):
    """Licenses a supplier may offer: the standard ones and its own custom terms."""
    return License.objects.filter(Q(owner__isnull=True) | Q(owner=organization))


@transaction.atomic
def create_license(
    *, organization: Organization, name: str, text: str = "", url: str = "", **flags
) -> License:
    """Custom license terms of a supplier (standard SPDX licenses are the registry's)."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["Name the license."]
    elif License.objects.filter(owner=organization, name=name).exists():
        errors["name"] = [f"You already have a license named “{name}”."]
    if not (text or "").strip() and not (url or "").strip():
        errors["text"] = ["Give the terms as text or a link."]
    allowed = {
        "commercial_use",
        "ai_training",
        "derivatives",
        "redistribution",
        "attribution_required",
        "duration_days",
        "seats",
    }
    for key in sorted(set(flags) - allowed):
        errors[key] = ["Not a license term."]
    for key in ("duration_days", "seats"):
        value = flags.get(key)
        if value not in (None, "") and (_as_int(value) is None or _as_int(value) < 1):
            errors[key] = ["A whole number, 1 or more, or blank for no limit."]
    if errors:
        raise InvalidInput(errors)
    clean = {k: bool(flags[k]) for k in allowed - {"duration_days", "seats"} if k in flags}
    for key in ("duration_days", "seats"):
        if key in flags:
            clean[key] = _as_int(flags[key]) if flags[key] not in (None, "") else None
    return License.objects.create(
        owner=organization, name=name[:200], text=text or "", url=url or "", **clean
    )


@transaction.atomic
def set_offer(
    *,
    dataset: Dataset,
    license: License,
    access_mode: str,
    price=Decimal("0"),
    currency: str = "EUR",
    description: str = "",
    active: bool = True,
    offer: Offer | None = None,
) -> Offer:
    """Create or change a way to get the dataset. Offers are never deleted: buyers' orders point at them."""
    errors: dict[str, list[str]] = {}
    if not licenses_for(dataset.supplier).filter(pk=license.pk).exists():
        errors["license"] = ["Choose a standard license or one of your own."]
    if access_mode not in Offer.AccessMode.values:
        errors["access_mode"] = [f"Access is one of {', '.join(Offer.AccessMode.values)}."]
    try:
        price = Decimal(str(price if price not in (None, "") else "0"))
    except InvalidOperation:
        errors["price"] = ["A price is a number, e.g. 4900.00."]
        price = Decimal("0")
    if price < 0 or price.as_tuple().exponent < -2 or price >= Decimal("1e10"):
        errors["price"] = ["A price is 0 or more, with at most two decimals."]
    if access_mode == Offer.AccessMode.OPEN and price != 0:
        errors["price"] = ["An open offer is free; choose “purchase” to charge for it."]
    if access_mode == Offer.AccessMode.PURCHASE and price == 0:
        errors["price"] = ["A purchase has a price; choose “open” for a free download."]
    currency = (currency or "EUR").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        errors["currency"] = ["A currency is a three-letter ISO code, e.g. EUR."]
    clash = Offer.objects.filter(dataset=dataset, license=license, access_mode=access_mode)
    if offer is not None:
        clash = clash.exclude(pk=offer.pk)
    if clash.exists():
        errors["license"] = ["There is already an offer with this license and access; edit that one."]
    if errors:
        raise InvalidInput(errors)
    offer = offer or Offer(dataset=dataset)
    offer.license = license
    offer.access_mode = access_mode
    offer.price = price
    offer.currency = currency
    offer.description = (description or "").strip()[:300]
    offer.active = bool(active)
    offer.save()
    return offer


# --------------------------------------------------------------------------- versions


@transaction.atomic
def start_draft(*, dataset: Dataset) -> DatasetVersion:
    """The next version as an empty draft with the latest version's datasheet and schema.

    Idempotent: when the newest version is already a draft, that draft is returned.
    """
    # Lock the dataset like ingest does: two writers must not both take number N + 1.
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    previous = latest_version(dataset)
    if previous is not None and previous.status == DatasetVersion.Status.DRAFT:
        return previous
    version = DatasetVersion.objects.create(dataset=dataset, number=(previous.number + 1) if previous else 1)
    old_sheet = Datasheet.objects.filter(version=previous).first() if previous else None
    Datasheet.objects.create(
        version=version, **{f: getattr(old_sheet, f) for f in DATASHEET_FIELDS} if old_sheet else {}
    )
    old_schema = AnnotationSchema.objects.filter(version=previous).first() if previous else None
    schema = AnnotationSchema.objects.create(
        version=version, description=old_schema.description if old_schema else ""
    )
    if old_schema is not None:
        data = schema_as_dict(previous)
        Category.objects.bulk_create([Category(schema=schema, **c) for c in data["categories"]])
        AttributeSpec.objects.bulk_create([AttributeSpec(schema=schema, **a) for a in data["attributes"]])
    return version


def check_publishable(version: DatasetVersion) -> list[str]:
    """What a draft still needs before it can be released, one sentence each; empty when ready."""
    version = DatasetVersion.objects.select_related("dataset").get(pk=version.pk)
    if version.status != DatasetVersion.Status.DRAFT:
        return [f"Version {version.number} is already {version.get_status_display().lower()}."]
    missing = []
    newer = version.dataset.versions.filter(number__gt=version.number).order_by("-number").first()
    if newer is not None:
        missing.append(f"Version {newer.number} is newer: publish that one, or start a new draft.")
    missing.extend(datasheet_gaps(version))
    if not Offer.objects.filter(dataset_id=version.dataset_id, active=True).exists():
        missing.append("Offers: add at least one active license offer, so buyers can get the data.")
    if not Delivery.objects.filter(version=version, status=Delivery.Status.INGESTED).exists():
        missing.append("Deliveries: upload a delivery that ingests into this version.")
    elif not Item.objects.filter(version=version).exists():
        missing.append("Content: the version holds no images.")
    return missing


def ensure_publishable(version: DatasetVersion) -> None:
    """Raise :class:`NotPublishable` with the list of gaps, if there are any."""
    missing = check_publishable(version)
    if missing:
        raise NotPublishable(missing)


def _empty_drafts_before(version: DatasetVersion):
    """Older drafts that never held content: vessels whose datasheet and schema a delivery copied on."""
    return DatasetVersion.objects.filter(
        dataset_id=version.dataset_id, number__lt=version.number, status=DatasetVersion.Status.DRAFT
    ).filter(
        ~Exists(Item.objects.filter(version=OuterRef("pk"))),
        ~Exists(Delivery.objects.filter(version=OuterRef("pk"))),
        ~Exists(Export.objects.filter(version=OuterRef("pk"))),
    )


def publish_draft(*, version: DatasetVersion, release_notes: str, user=None) -> DatasetVersion:
    """Release a draft after :func:`check_publishable`, then tell entitled buyers and requesters."""
    release_notes = (release_notes or "").strip()
    if version.status != DatasetVersion.Status.DRAFT:
        raise DomainError(
            f"Version {version.number} is already {version.status}.", code="not_draft", status_code=409
        )
    with transaction.atomic():
        if not release_notes:
            missing = check_publishable(version)
            raise NotPublishable([*missing, "Release notes: say what changed in this version."])
        try:
            version = catalogue.publish_version(
                version=version, release_notes=release_notes, require_publishable=True
            )
        except ValueError as exc:  # published by a concurrent request a moment ago
            raise DomainError(str(exc), code="not_draft", status_code=409) from exc
        for empty in _empty_drafts_before(version):
            empty.delete()
        notifications.notify_new_version(version=version)
    return version


def deprecate_version(*, version: DatasetVersion, reason: str, user=None) -> DatasetVersion:
    """Retire a published version with a reason buyers see; it stays downloadable by those entitled.

    ``user`` is who asked (the caller checked they supply the dataset); the ledger names the
    organisation, not the person.
    """

    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput({"reason": ["Tell buyers why this version is retired."]}, code="reason_required")
    with transaction.atomic():
        version = (
            DatasetVersion.objects.select_for_update().select_related("dataset__supplier").get(pk=version.pk)
        )
        if version.status != DatasetVersion.Status.PUBLISHED:
            raise DomainError(
                f"Only a published version can be deprecated; version {version.number} is {version.status}.",
                code="not_published",
                status_code=409,
            )
        version.status = DatasetVersion.Status.DEPRECATED
        version.deprecated_at = timezone.now()
        version.deprecation_reason = reason
        version.save(update_fields=["status", "deprecated_at", "deprecation_reason"])
        _record_deprecation(version)
        notifications.notify_deprecation(version=version)
    return version


def _record_deprecation(version: DatasetVersion) -> None:
    ledger.record_dataset_event(
        dataset=version.dataset,
        action="version_deprecated",
        # The organisation, like the publication event: usernames may be personal data, and this log
        # can never be edited or erased.
        actor=f"org:{version.dataset.supplier.slug}",
        payload={"reason": version.deprecation_reason},
        version_number=version.number,
        occurred_at=version.deprecated_at,
    )


def version_counts(version: DatasetVersion) -> dict:
    """Counts for the review page: cached statistics when they are there, else computed now."""
    if version.stats and "items" in version.stats:
        return version.stats
    return catalogue.compute_version_stats(version=version)


# --------------------------------------------------------------------------- diff


def _counts(qs, **aggregates) -> dict:
    return {k: v or 0 for k, v in qs.aggregate(**aggregates).items()}


def diff_versions(*, old: DatasetVersion, new: DatasetVersion, examples: int = 10) -> dict:
    """What changed from ``old`` to ``new``: items by key, final labels by uid, classes, guidelines.

    Every count is an aggregate query; nothing loops over labels in Python, so the cost is a few
    indexed scans whatever the size of the versions. A label is *changed* when its uid is in both
    versions and its item, class, geometry kind, geometry, attributes or crowd flag differ;
    *relabelled* counts the kept labels whose guideline version changed.
    """
    old_items = Item.objects.filter(version=old)
    new_items = Item.objects.filter(version=new)
    same_key = Item.objects.filter(version=old, key=OuterRef("key"))
    same_item = same_key.filter(
        sha256=OuterRef("sha256"),
        split=OuterRef("split"),
        width=OuterRef("width"),
        height=OuterRef("height"),
        synthetic=OuterRef("synthetic"),
        attributes=OuterRef("attributes"),
    )
    item_new = _counts(
        new_items,
        after=Count("id"),
        kept=Count("id", filter=Q(Exists(same_key))),
        unchanged=Count("id", filter=Q(Exists(same_item))),
    )
    item_before = old_items.count()

    old_labels = Label.objects.filter(version=old, is_final=True)
    new_labels = Label.objects.filter(version=new, is_final=True)
    same_uid = old_labels.filter(uid=OuterRef("uid"))
    same_label = same_uid.filter(
        item__key=OuterRef("item__key"),
        category__name=OuterRef("category__name"),
        geometry_type=OuterRef("geometry_type"),
        geometry=OuterRef("geometry"),
        attributes=OuterRef("attributes"),
        iscrowd=OuterRef("iscrowd"),
    )
    # Coalesce: two labels without a guideline version kept it (NULL = NULL is not true in SQL).
    same_guideline = same_uid.annotate(gv=Coalesce("guideline_version_id", 0)).filter(
        gv=Coalesce(OuterRef("guideline_version_id"), 0)
    )
    in_new = new_labels.filter(uid=OuterRef("uid"))
    kept, identical, relabelled = Q(Exists(same_uid)), Q(Exists(same_label)), Q(Exists(same_guideline))

    per_new = {
        row["category__name"]: row
        for row in new_labels.values("category__name")
        .annotate(
            after=Count("id"),
            added=Count("id", filter=~kept),
            changed=Count("id", filter=kept & ~identical),
            relabelled=Count("id", filter=kept & ~relabelled),
        )
        .order_by()
    }
    per_old = {
        row["category__name"]: row
        for row in old_labels.values("category__name")
        .annotate(before=Count("id"), removed=Count("id", filter=~Q(Exists(in_new))))
        .order_by()
    }
    classes = []
    for name in sorted(set(per_new) | set(per_old)):
        n, o = per_new.get(name, {}), per_old.get(name, {})
        classes.append(
            {
                "name": name,
                "before": o.get("before", 0),
                "after": n.get("after", 0),
                "delta": n.get("after", 0) - o.get("before", 0),
                "added": n.get("added", 0),
                "removed": o.get("removed", 0),
                "changed": n.get("changed", 0),
            }
        )
    label_totals = {
        "before": sum(c["before"] for c in classes),
        "after": sum(c["after"] for c in classes),
        "added": sum(c["added"] for c in classes),
        "removed": sum(c["removed"] for c in classes),
        "changed": sum(c["changed"] for c in classes),
        "relabelled": sum(row["relabelled"] for row in per_new.values()),
    }
    label_totals["unchanged"] = label_totals["after"] - label_totals["added"] - label_totals["changed"]

    old_cats = set(Category.objects.filter(schema__version=old).values_list("name", flat=True))
    new_cats = set(Category.objects.filter(schema__version=new).values_list("name", flat=True))

    def guideline_rows(version):
        return {
            gv.pk: {"guideline": gv.guideline.title, "tag": gv.tag, "sha256": gv.sha256}
            for gv in version.guideline_versions.select_related("guideline").order_by(
                "guideline__title", "tag"
            )
        }

    old_gv, new_gv = guideline_rows(old), guideline_rows(new)

    def label_examples(qs):
        return [
            {"uid": str(uid), "item": key, "category": cat}
            for uid, key, cat in qs.order_by("item__key", "uid").values_list(
                "uid", "item__key", "category__name"
            )[:examples]
        ]

    return {
        "dataset": new.dataset.slug,
        "from": old.number,
        "to": new.number,
        "items": {
            "before": item_before,
            "after": item_new["after"],
            "added": item_new["after"] - item_new["kept"],
            "removed": item_before - item_new["kept"],
            "changed": item_new["kept"] - item_new["unchanged"],
            "unchanged": item_new["unchanged"],
        },
        "labels": label_totals,
        "candidate_labels": {
            "before": Label.objects.filter(version=old, is_final=False).count(),
            "after": Label.objects.filter(version=new, is_final=False).count(),
        },
        "classes": classes,
        "categories": {"added": sorted(new_cats - old_cats), "removed": sorted(old_cats - new_cats)},
        "guideline_versions": {
            "added": [new_gv[k] for k in new_gv if k not in old_gv],
            "removed": [old_gv[k] for k in old_gv if k not in new_gv],
            "kept": [new_gv[k] for k in new_gv if k in old_gv],
        },
        "examples": {
            "added": label_examples(new_labels.filter(~kept)),
            "removed": label_examples(old_labels.filter(~Q(Exists(in_new)))),
            "changed": label_examples(new_labels.filter(kept & ~identical)),
        },
        # How the delivery that made ``new`` matched its labels to ``old``'s, when it did.
        "lineage": lineage.section_between(old=old, new=new),
    }


def cached_diff(*, old: DatasetVersion, new: DatasetVersion) -> dict:
    """:func:`diff_versions`, cached when both versions are released: their content can no longer change."""
    if old.status == DatasetVersion.Status.DRAFT or new.status == DatasetVersion.Status.DRAFT:
        return diff_versions(old=old, new=new)
    # The content hashes make the key safe even where a test database hands out the same ids again.
    key = f"workspace:diff:v2:{old.pk}:{old.content_hash}:{new.pk}:{new.content_hash}"
    result = cache.get(key)
    if result is None:
        result = diff_versions(old=old, new=new)
        cache.set(key, result, timeout=None)
    return result


def changelog(versions: list[DatasetVersion]) -> list[dict]:
    """One entry per released version, newest first, with its diff against the release before it."""
    released = sorted(
        (v for v in versions if v.status != DatasetVersion.Status.DRAFT), key=lambda v: v.number
    )
    entries = []
    for previous, version in zip([None, *released], released, strict=False):
        entries.append(
            {
                "version": version,
                "previous": previous,
                "diff": cached_diff(old=previous, new=version) if previous is not None else None,
            }
        )
    return entries[::-1]
