"""The supplier's edits: datasets, datasheets, guidelines, licenses and offers, and the rules they share."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from governance.models import Guideline, GuidelineVersion

from ..errors import DomainError, ErrorCode
from ..models import (
    CATEGORY_COLOR_RE,
    DATASHEET_SECTIONS,
    AnnotationSchema,
    Dataset,
    DatasetVersion,
    Datasheet,
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
COLOR_RE = CATEGORY_COLOR_RE
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


# Slugs are the datasets' URLs, one namespace for every supplier, so a slug held by another
# organisation's hidden draft cannot be given twice. The refusal is the same sentence and code
# whoever holds the slug (a dataset you can see or one you cannot), and refusals are counted per
# user in the shared cache: past SLUG_REFUSALS_PER_HOUR, creating datasets answers 429 for the
# rest of the hour, so probing which names hidden drafts use costs an hour per handful of guesses.
def _slug_refusals_key(user) -> str:
    return f"slug-refusals:{user.pk}"


def _check_slug_probing(user) -> None:
    limit = getattr(settings, "SLUG_REFUSALS_PER_HOUR", 20)
    if cache.get(_slug_refusals_key(user), 0) >= limit:
        raise DomainError(
            "Too many refused slugs lately; try again in an hour.", code=ErrorCode.THROTTLED, status_code=429
        )


def _slug_taken(user, slug: str) -> InvalidInput:
    key = _slug_refusals_key(user)
    if not cache.add(key, 1, timeout=3600):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=3600)
    return InvalidInput({"slug": [f"“{slug}” is not available; choose another."]}, code="slug_taken")


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
    _check_slug_probing(user)
    if Dataset.objects.filter(slug=slug).exists():
        raise _slug_taken(user, slug)
    try:
        with transaction.atomic():  # a savepoint: the slug may be taken a moment after the check above
            dataset = Dataset.objects.create(supplier=organization, slug=slug, **clean)
    except IntegrityError:
        raise _slug_taken(user, slug) from None
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


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


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
