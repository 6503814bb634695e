"""Exports: a version rendered in a format, as one archive in storage, and its downloads.

The flow, and why it is cut where it is:

1. :func:`request_export` (web request, short transaction) checks the user may export the
   version, normalises the options and finds or creates the one Export row for (version,
   format, options): a finished export of a released version is reused as it is, with no new
   work. The task is enqueued with ``transaction.on_commit``, never before the row exists.
2. :func:`run_export` (Celery task) streams items and labels from the database in chunks of
   items, through the format's writer (``marketplace.formats.*_writer``), into a zip in a
   temporary file; progress is written to the row as it goes. Only then is the file copied to
   storage -- outside any transaction, because an upload to S3 can take minutes -- and the row
   marked ready with its size, sha256 and notes. Re-running it is safe: a ready export returns
   at once, anything else is built again (the archive is byte-identical: fixed zip timestamps
   and a stable order).
3. :func:`download_url_for` gives a link to our download view, signed with the user's id and
   the export's id and valid for ``DOWNLOAD_URL_TTL`` seconds. The view checks the link, the
   user and the right to export again (an entitlement may have ended), records the download
   (:func:`record_download`, with a ledger event) and then streams the file, or redirects to a
   presigned S3 URL when storage is S3. So every download is recorded, whatever the storage.

An export archive holds the labels in the format's layout, the images when asked
(``include_images``, streamed from storage), ``datasheet.md``, ``LICENSE.txt``,
``provenance.csv`` (one row per label: uid, annotator, made_at, guideline version, source,
model), ``croissant.json`` and ``MANIFEST.sha256`` (sha256sum format, every other file).
What the format cannot hold is in the export's ``notes``, with counts, never silently dropped.
The ``croissant`` format is the version's Croissant JSON-LD alone.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import posixpath
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Count
from django.db.utils import InterfaceError, OperationalError
from django.urls import reverse
from django.utils import timezone
from rest_framework import status

from governance import content as governance_content
from governance.models import Annotator, GuidelineVersion

from . import access
from .api.errors import DomainError
from .catalogue import canonical_json
from .formats import croissant as cr
from .formats import model as fmt
from .formats.coco_writer import coco_category_ids, write_coco
from .formats.voc_writer import write_voc
from .formats.writing import Notes, ZipSink
from .formats.yolo_writer import TASKS as YOLO_TASKS
from .formats.yolo_writer import choose_task, write_yolo
from .models import (
    AttributeSpec,
    Category,
    DatasetVersion,
    Datasheet,
    Download,
    Export,
    Item,
    Label,
)

log = logging.getLogger(__name__)

FORMATS = tuple(Export.Format.values)
SPLITS = ("train", "val", "test", "unassigned")  # "unassigned": items without a split
ITEM_CHUNK = 1000
PROGRESS_INTERVAL = 0.5  # seconds between progress writes
DOWNLOAD_SALT = "marketplace.exports.download"
PROVENANCE_COLUMNS = (
    "label_uid",
    "item",
    "category",
    "geometry_type",
    "is_final",
    "annotator",
    "made_at",
    "guideline_version",
    "source",
    "model_name",
    "model_version",
)


# --------------------------------------------------------------------------- options


def _invalid(detail: str) -> DomainError:
    return DomainError(detail, code="invalid_options", status_code=status.HTTP_400_BAD_REQUEST)


def normalise_options(*, version: DatasetVersion, format: str, options: dict | None) -> dict:
    """Check the options and fill the defaults, so equal requests hash equally.

    ``splits`` (list of train, val, test, unassigned; empty: all), ``categories`` (class
    names; empty: all), ``include_images`` (default true), ``candidates`` (every annotator's
    candidate labels too; default false: final labels only), and for YOLO ``yolo_task``
    (auto, detect, segment or pose; auto picks pose with keypoints, segment with polygons or
    masks, else detect).
    """
    if format not in FORMATS:
        raise DomainError(
            f"format must be one of {', '.join(FORMATS)}", code="invalid_format", status_code=400
        )
    options = dict(options or {})
    known = {"splits", "categories", "include_images", "candidates", "yolo_task"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise _invalid(f"unknown options: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    splits = options.get("splits") or []
    if not (isinstance(splits, list) and all(isinstance(s, str) for s in splits)):
        raise _invalid("splits must be a list of split names")
    bad = sorted(set(splits) - set(SPLITS))
    if bad:
        raise _invalid(f"unknown splits {bad}: use {', '.join(SPLITS)}")
    categories = options.get("categories") or []
    if not (isinstance(categories, list) and all(isinstance(c, str) for c in categories)):
        raise _invalid("categories must be a list of category names")
    if categories:
        names = set(Category.objects.filter(schema__version=version).values_list("name", flat=True))
        missing = sorted(set(categories) - names)
        if missing:
            raise _invalid(f"no categories {missing} in this version")
    flags = {}
    for flag, default in (("include_images", True), ("candidates", False)):
        value = options.get(flag, default)
        if not isinstance(value, bool):
            raise _invalid(f"{flag} must be true or false")
        flags[flag] = value
    normalised = {"splits": sorted(set(splits)), "categories": sorted(set(categories)), **flags}
    if format == Export.Format.YOLO:
        task = options.get("yolo_task", "auto")
        if task not in ("auto", *YOLO_TASKS):
            raise _invalid(f"yolo_task must be auto, {', '.join(YOLO_TASKS)}")
        normalised["yolo_task"] = task
    elif "yolo_task" in options:
        raise _invalid("yolo_task applies to the yolo format only")
    if format == Export.Format.CROISSANT:
        # Metadata only: no option changes what is written.
        normalised = {}
    return normalised


def options_hash(options: dict) -> str:
    return hashlib.sha256(canonical_json(options).encode()).hexdigest()


# --------------------------------------------------------------------------- requesting


def _enqueue(export_id: int) -> None:
    from . import tasks  # tasks imports this module

    transaction.on_commit(lambda: tasks.run_export.delay(export_id))


def request_export(*, version: DatasetVersion, user, format: str, options: dict | None = None) -> Export:
    """The export of this version in this format with these options: reused if done, else queued."""
    access.require_export(user, version)
    normalised = normalise_options(version=version, format=format, options=options)
    digest = options_hash(normalised)
    # A finished file that went missing from storage is rebuilt. Checked before the transaction:
    # on S3 it is a network round trip, and the row lock below should not wait for one.
    existing = Export.objects.filter(version=version, format=format, options_hash=digest).first()
    lost = None
    if existing is not None and existing.status == Export.Status.READY and not _stored(existing):
        lost = existing.file.name
    with transaction.atomic():
        export, created = Export.objects.get_or_create(
            version=version,
            format=format,
            options_hash=digest,
            defaults={"options": normalised, "requested_by": user},
        )
        if created:
            _enqueue(export.pk)
            return export
        export = Export.objects.select_for_update().get(pk=export.pk)
        stale = version.status == DatasetVersion.Status.DRAFT  # a draft may have changed since
        missing = export.status == Export.Status.READY and lost is not None and export.file.name == lost
        if export.status == Export.Status.FAILED or (
            export.status == Export.Status.READY and (stale or missing)
        ):
            export.status = Export.Status.PENDING
            export.progress = 0
            export.error = ""
            export.requested_by = user
            export.save(update_fields=["status", "progress", "error", "requested_by"])
            _enqueue(export.pk)
    return export


def _stored(export: Export) -> bool:
    return bool(export.file.name) and export.file.storage.exists(export.file.name)


# --------------------------------------------------------------------------- records


@dataclass
class ExportItem(fmt.ItemRecord):
    """An item as the writers see it, plus where its image is stored."""

    storage_key: str = ""


class Progress:
    """Writes an export's progress in its own short statements, at most every PROGRESS_INTERVAL."""

    def __init__(self, export_id: int | None, total: int):
        self.export_id = export_id
        self.total = max(total, 1)
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.export_id is None or now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        Export.objects.filter(pk=self.export_id).update(progress=min(95, int(95 * done / self.total)))


@dataclass
class Selection:
    """What an export takes from a version."""

    version: DatasetVersion
    options: dict

    def items(self):
        qs = Item.objects.filter(version=self.version)
        splits = self.options.get("splits") or []
        if splits:
            qs = qs.filter(split__in=["" if s == "unassigned" else s for s in splits])
        return qs

    def categories(self) -> list[Category]:
        qs = Category.objects.filter(schema__version=self.version).order_by("source_id", "name")
        wanted = self.options.get("categories") or []
        if wanted:
            qs = qs.filter(name__in=wanted)
        return list(qs)

    def labels(self):
        qs = Label.objects.filter(version=self.version)
        if not self.options.get("candidates"):
            qs = qs.filter(is_final=True)
        wanted = self.options.get("categories") or []
        if wanted:
            qs = qs.filter(category__name__in=wanted)
        return qs


def category_defs(categories: list[Category]) -> list[fmt.CategoryDef]:
    return [
        fmt.CategoryDef(
            name=c.name,
            source_id=c.source_id,
            supercategory=c.supercategory,
            keypoints=list(c.keypoint_names),
            skeleton=[list(p) for p in c.skeleton],
            geometry_types=list(c.geometry_types),
            color=c.color,
        )
        for c in categories
    ]


def _raw_rows(query) -> Iterator[tuple]:
    """The rows of a values_list() query without Django's per-value converters.

    Converting a hundred thousand JSON values through JSONField.from_db_value costs more than the
    rest of an export; the few conversions needed are done by hand (_json, _uuid_text, _aware).
    One chunk of items' labels at a time, so fetching them whole is bounded.
    """
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(5000):
            yield from rows


# raw_decode skips json.loads' two whitespace regex scans: the database's JSON text has none around it.
_decode = json.JSONDecoder().raw_decode


def _json(value):
    if value is None or value == "{}":
        return {}
    if isinstance(value, (dict, list)):  # a driver that decodes JSON itself
        return value
    return _decode(value)[0]


def _uuid_text(value) -> str:
    text = str(value)
    return text if len(text) == 36 else str(uuid.UUID(text))  # SQLite stores 32 hex digits


def _aware(value):
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value)  # SQLite: "2026-03-02 09:00:00", UTC
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_LABEL_FIELDS = (
    "item_id",
    "uid",
    "category_id",
    "geometry_type",
    "geometry",
    "attributes",
    "iscrowd",
    "is_final",
    "annotator_id",
    "guideline_version_id",
    "source",
    "model_name",
    "model_version",
    "made_at",
)


def iter_records(
    selection: Selection, *, progress: Progress | None = None, provenance: csv.writer | None = None
) -> Iterator[tuple[ExportItem, list[fmt.LabelRecord]]]:
    """Items in key order with their labels, read ITEM_CHUNK items at a time (keyset pagination).

    Memory holds one chunk; small lookups (category, annotator and guideline names) are read once.
    """
    version = selection.version
    category_names = dict(Category.objects.filter(schema__version=version).values_list("pk", "name"))
    annotator_ids = selection.labels().exclude(annotator=None).values("annotator_id").distinct()
    pseudonyms = dict(Annotator.objects.filter(pk__in=annotator_ids).values_list("pk", "pseudonym"))
    tags = dict(
        GuidelineVersion.objects.filter(guideline__dataset=version.dataset_id).values_list("pk", "tag")
    )
    items = selection.items()
    labels = selection.labels()
    done = 0
    last_key = None
    while True:
        chunk_qs = items.order_by("key")
        if last_key is not None:
            chunk_qs = chunk_qs.filter(key__gt=last_key)
        chunk = list(
            chunk_qs.values_list(
                "pk", "key", "width", "height", "split", "attributes", "storage_key", "sha256"
            )[:ITEM_CHUNK]
        )
        if not chunk:
            break
        last_key = chunk[-1][1]
        by_item: dict[int, list[fmt.LabelRecord]] = {row[0]: [] for row in chunk}
        keys = {row[0]: row[1] for row in chunk}
        query = labels.filter(item_id__in=list(by_item)).order_by("item_id", "id").values_list(*_LABEL_FIELDS)
        for (
            item_id,
            uid,
            category_id,
            kind,
            geometry,
            attributes,
            iscrowd,
            is_final,
            annotator_id,
            guideline_id,
            source,
            model_name,
            model_version,
            made_at,
        ) in _raw_rows(query):
            made_at = _aware(made_at)
            record = fmt.LabelRecord(
                item_key=keys[item_id],
                category=category_names[category_id],
                geometry_type=kind,
                geometry=_json(geometry),
                attributes=_json(attributes),
                uid=_uuid_text(uid),
                is_final=bool(is_final),
                iscrowd=bool(iscrowd),
                provenance=fmt.Provenance(
                    annotator=pseudonyms.get(annotator_id),
                    made_at=made_at,
                    guideline_version=tags.get(guideline_id),
                    source=source,
                    model_name=model_name,
                    model_version=model_version,
                ),
            )
            by_item[item_id].append(record)
            if provenance is not None:
                p = record.provenance
                provenance.writerow(
                    [
                        record.uid,
                        record.item_key,
                        record.category,
                        kind,
                        "true" if is_final else "false",
                        p.annotator or "",
                        made_at.isoformat() if made_at else "",
                        p.guideline_version or "",
                        source,
                        model_name,
                        model_version,
                    ]
                )
        for pk, key, width, height, split, attributes, storage_key, sha in chunk:
            yield (
                ExportItem(
                    key=key,
                    width=width,
                    height=height,
                    split=split,
                    attributes=attributes or {},
                    source_id=pk,
                    source_ref=sha,
                    storage_key=storage_key,
                ),
                by_item[pk],
            )
            done += 1
        if progress is not None:
            progress.update(done)


def open_image(item: ExportItem) -> BinaryIO:
    return default_storage.open(item.storage_key, "rb")


# --------------------------------------------------------------------------- documents


def datasheet_markdown(version: DatasetVersion) -> str:
    """The datasheet as Markdown, every question with its answer (or "Not answered.")."""
    dataset = version.dataset
    lines = [f"# Datasheet: {dataset.title}, version {version.number}", ""]
    lines += [f"Supplier: {dataset.supplier.name}  ", f"Status: {version.status}  "]
    if version.published_at:
        lines.append(f"Published: {version.published_at:%Y-%m-%d}  ")
    if version.content_hash:
        lines.append(f"Content hash (sha256 over items and labels): `{version.content_hash}`")
    lines.append("")
    sheet = Datasheet.objects.filter(version=version).first()
    if sheet is None:
        lines.append("No datasheet was written for this version.")
        return "\n".join(lines) + "\n"
    for section in sheet.sections():
        lines += [f"## {section['title']}", ""]
        for answer in section["answers"]:
            lines += [
                f"**{answer['question']}**",
                "",
                (answer["answer"] or "").strip() or "_Not answered._",
                "",
            ]
    return "\n".join(lines)


def license_text(version: DatasetVersion, export: Export | None = None) -> str:
    """The license(s) the data is offered under, with their yes/no terms and full text."""
    dataset = version.dataset
    offers = dataset.offers.filter(active=True).select_related("license").order_by("pk")
    lines = [f"{dataset.title}, version {version.number}", f"Supplied by {dataset.supplier.name}.", ""]
    seen = set()
    for offer in offers:
        lic = offer.license
        if lic.pk in seen:
            continue
        seen.add(lic.pk)
        lines += [f"License: {lic.name}" + (f" ({lic.spdx_id})" if lic.spdx_id else "")]
        if lic.url:
            lines.append(f"URL: {lic.url}")
        lines.append(f"Offered as: {offer.get_access_mode_display()}")
        for term, allowed in lic.terms():
            lines.append(f"  {term}: {'yes' if allowed else 'no'}")
        if lic.duration_days:
            lines.append(f"  Duration: {lic.duration_days} days")
        if lic.seats:
            lines.append(f"  Seats: {lic.seats}")
        lines += ["", lic.text.strip() or "(no license text)", "", "-" * 72, ""]
    if not seen:
        lines.append(
            "No license is offered for this dataset: use is limited to what the supplier agreed in writing."
        )
    lines.append("Your own entitlement (dates, versions) is listed in the registry under your organisation.")
    return "\n".join(lines) + "\n"


def license_url(version: DatasetVersion) -> str:
    offer = (
        version.dataset.offers.filter(active=True).select_related("license").order_by("price", "pk").first()
    )
    if offer is not None:
        lic = offer.license
        if lic.url:
            return lic.url
        if lic.spdx_id:
            return f"https://spdx.org/licenses/{lic.spdx_id}.html"
    return site_url(version.dataset.get_absolute_url())


def site_url(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def rai_facts(version: DatasetVersion) -> dict:
    """The RAI properties of a version: its datasheet plus what its labels say about labelling."""
    sheet = Datasheet.objects.filter(version=version).first()
    answers = {}
    if sheet is not None:
        answers = {a["field"]: a["answer"] for s in sheet.sections() for a in s["answers"]}
    labels = Label.objects.filter(version=version)
    items = Item.objects.filter(version=version).count()
    finals = labels.filter(is_final=True).count()
    candidates = labels.filter(is_final=False).count()
    per_item = f"{finals / items:.1f} final labels per image" if items else "no images"
    analysis = ""
    if candidates:
        annotators_per_item = (
            labels.filter(is_final=False)
            .values("item")
            .annotate(n=Count("annotator", distinct=True))
            .order_by()
            .values_list("n", flat=True)
        )
        counts = sorted(set(annotators_per_item))
        span = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
        per_item += f"; {span} independent annotators per image ({candidates} candidate labels kept)"
        analysis = (
            "Each image was labelled independently by several annotators; the final labels are their "
            "consensus. The individual candidate labels are kept (export option candidates=true) so "
            "that agreement and systematic disagreement can be analysed."
        )
    tools = [
        f"{name} {ver}".strip()
        for name, ver in labels.filter(source=fmt.MODEL).values_list("model_name", "model_version").distinct()
    ]
    annotators = Annotator.objects.filter(labels__version=version).distinct()
    declared = [a.demographics for a in annotators if a.demographics]
    demographics = cr.aggregate_demographics(declared, annotators=annotators.count()) if declared else []
    person = AttributeSpec.objects.filter(schema__version=version, describes_person=True).values_list(
        "name", flat=True
    )
    guidelines = [
        {"guideline": g.guideline.title, "tag": g.tag, "sha256": g.sha256}
        for g in version.guideline_versions.select_related("guideline").order_by("effective_date")
    ]
    return cr.rai_properties(
        datasheet=answers,
        guideline_versions=guidelines,
        annotations_per_item=per_item,
        annotation_analysis=analysis,
        machine_annotation_tools=tools,
        annotator_demographics=demographics,
        person_attributes=list(person),
    )


def croissant_document(
    version: DatasetVersion, *, distribution: list[dict] | None = None, record_sets: list[dict] | None = None
) -> dict:
    """The Croissant JSON-LD of a version (served by the API, written into every export)."""
    dataset = version.dataset
    categories = Category.objects.filter(schema__version=version).order_by("source_id", "name")
    defs = category_defs(list(categories))
    ids = coco_category_ids(defs)
    splits = sorted(
        {
            s or "unassigned"
            for s in Item.objects.filter(version=version).values_list("split", flat=True).distinct()
        },
        key=lambda s: (SPLITS.index(s) if s in SPLITS else 9, s),
    )
    sets = [
        cr.categories_record_set(
            [{"id": ids[c.name], "name": c.name, "supercategory": c.supercategory} for c in defs]
        ),
        cr.splits_record_set(splits),
    ]
    if distribution is None:
        # Served by the API, before any export: describe the layout every export uses.
        distribution = [
            cr.file_set(
                "coco-annotations",
                "annotations/instances_*.json",
                "application/json",
                "COCO instances files, one per split, in a COCO export of this version "
                f"(POST {reverse('api-export-list', kwargs={'dataset_slug': dataset.slug, 'number': version.number})}).",
            ),
            cr.file_set("image-files", "images/*/*", "image/jpeg", "The images, under images/<split>/."),
        ]
        record_sets = [
            *cr.coco_record_sets("coco-annotations"),
            cr.images_record_set("image-files", r"^images/([^/]+)/.*$"),
        ]
    return cr.dataset_document(
        name=dataset.title,
        description=dataset.summary + (f"\n\n{dataset.description}" if dataset.description else ""),
        url=site_url(dataset.get_absolute_url()) + f"?version={version.number}",
        version=f"{version.number}.0.0",
        date_published=version.published_at.date().isoformat() if version.published_at else None,
        license=license_url(version),
        creator={"name": dataset.supplier.name, "url": dataset.supplier.website or site_url("/")},
        keywords=[*dataset.tags, *dataset.task_types, dataset.domain],
        rai=rai_facts(version),
        distribution=distribution,
        record_sets=[*sets, *(record_sets or [])],
    )


def _archive_croissant(version: DatasetVersion, format: str, files, *, with_images: bool) -> dict:
    """Croissant for an archive: its files (with their sha256) and how to read them."""
    distribution = [cr.file_object(f.name, f.sha256, f.size) for f in files]
    record_sets: list[dict] = []
    if format == Export.Format.COCO:
        distribution.append(
            cr.file_set("coco-annotations", "annotations/instances_*.json", "application/json")
        )
        record_sets += cr.coco_record_sets("coco-annotations")
    elif format == Export.Format.VOC:
        distribution.append(cr.file_set("voc-annotations", "Annotations/*.xml", "application/xml"))
    elif format == Export.Format.YOLO:
        distribution.append(cr.file_set("yolo-labels", "labels/*/*.txt", "text/plain"))
    if with_images:
        pattern = "JPEGImages/*" if format == Export.Format.VOC else "images/*/*"
        distribution.append(cr.file_set("image-files", pattern, "image/jpeg"))
        if format != Export.Format.VOC:
            record_sets.append(cr.images_record_set("image-files", r"^images/([^/]+)/.*$"))
    record_sets.append(cr.provenance_record_set("provenance.csv", PROVENANCE_COLUMNS))
    return croissant_document(version, distribution=distribution, record_sets=record_sets)


# --------------------------------------------------------------------------- building


@dataclass
class BuildResult:
    notes: list[dict]
    summary: dict


def build_archive(
    *, version: DatasetVersion, format: str, options: dict, fileobj: BinaryIO, export_id: int | None = None
) -> BuildResult:
    """Write the export of a version into a file object (a zip; the JSON-LD for croissant)."""
    version = DatasetVersion.objects.select_related("dataset", "dataset__supplier").get(pk=version.pk)
    if format == Export.Format.CROISSANT:
        fileobj.write(canonical_json(croissant_document(version)).encode())
        return BuildResult(notes=[], summary={"format": format})
    selection = Selection(version=version, options=options)
    categories = selection.categories()
    defs = category_defs(categories)
    notes = Notes()
    progress = Progress(export_id, selection.items().count())
    image_source = open_image if options.get("include_images", True) else None
    sink = ZipSink(fileobj)
    with tempfile.TemporaryFile(mode="w+", newline="", encoding="utf-8") as prov_file:
        writer = csv.writer(prov_file)
        writer.writerow(PROVENANCE_COLUMNS)
        records = iter_records(selection, progress=progress, provenance=writer)
        dataset = version.dataset
        if format == Export.Format.COCO:
            result = write_coco(
                sink,
                records,
                categories=defs,
                notes=notes,
                info=coco_info(version),
                licenses=[{"id": 1, "name": _license_name(version), "url": license_url(version)}],
                image_source=image_source,
            )
            summary = {
                "images": result.images,
                "annotations": result.annotations,
                "category_ids": result.category_ids,
            }
        elif format == Export.Format.VOC:
            result = write_voc(
                sink, records, categories=defs, notes=notes, image_source=image_source, database=dataset.title
            )
            summary = {"images": result.images, "objects": result.objects, "class_index": result.class_index}
        else:
            task = options.get("yolo_task", "auto")
            if task == "auto":
                kinds = selection.labels().values_list("geometry_type", flat=True).distinct()
                task = choose_task(defs, kinds)
            pose = next((c for c in categories if c.keypoint_names), None)
            result = write_yolo(
                sink,
                records,
                categories=defs,
                notes=notes,
                task=task,
                flip_idx=list(pose.flip_idx) if pose is not None and pose.flip_idx else None,
                image_source=image_source,
                dataset_name=f"{dataset.title}, version {version.number}",
            )
            summary = {
                "task": result.task,
                "images": result.images,
                "rows": result.rows,
                "class_index": result.class_index,
            }
        prov_file.seek(0)
        with sink.open("provenance.csv") as out:
            for chunk in iter(lambda: prov_file.read(1024 * 1024), ""):
                out.write(chunk.encode("utf-8"))
    sink.write("datasheet.md", datasheet_markdown(version).encode())
    sink.write("LICENSE.txt", license_text(version).encode())
    # The canonical content and the signed evidence, so a buyer can prove offline that this is the
    # published version (governance.content; verify_offline.py --archive).
    governance_content.write_archive_content(sink, version)
    doc = _archive_croissant(version, format, sink.files, with_images=image_source is not None)
    sink.write("croissant.json", canonical_json(doc).encode())
    sink.write_manifest("MANIFEST.sha256")
    sink.close()
    summary["format"] = format
    return BuildResult(notes=notes.as_list(), summary=summary)


def coco_info(version: DatasetVersion) -> dict:
    dataset = version.dataset
    when = version.published_at or version.created_at
    return {
        "description": dataset.title,
        "url": site_url(dataset.get_absolute_url()),
        "version": str(version.number),
        "year": when.year,
        "contributor": dataset.supplier.name,
        "date_created": when.isoformat(),
    }


def _license_name(version: DatasetVersion) -> str:
    offer = (
        version.dataset.offers.filter(active=True).select_related("license").order_by("price", "pk").first()
    )
    return str(offer.license) if offer else "See LICENSE.txt"


def _sha256_of(fileobj: BinaryIO) -> tuple[str, int]:
    fileobj.seek(0)
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: fileobj.read(1024 * 1024), b""):
        digest.update(chunk)
        size += len(chunk)
    fileobj.seek(0)
    return digest.hexdigest(), size


def export_file_name(export: Export) -> str:
    version = export.version
    suffix = ".json" if export.format == Export.Format.CROISSANT else ".zip"
    slug = version.dataset.slug
    return f"exports/{slug}/v{version.number}/{slug}-v{version.number}-{export.format}-{export.options_hash[:12]}{suffix}"


def run_export(*, export_id: int) -> Export:
    """Build an export's archive and store it; a ready export is returned as it is."""
    export = Export.objects.select_related("version__dataset__supplier").get(pk=export_id)
    if export.status == Export.Status.READY:
        return export
    Export.objects.filter(pk=export_id).exclude(status=Export.Status.READY).update(
        status=Export.Status.RUNNING, progress=0, error=""
    )
    stored_name = None
    try:
        with tempfile.TemporaryFile() as tmp:
            result = build_archive(
                version=export.version,
                format=export.format,
                options=export.options,
                fileobj=tmp,
                export_id=export_id,
            )
            sha, size = _sha256_of(tmp)
            # Outside any transaction on purpose: the upload can take minutes on S3.
            stored_name = default_storage.save(export_file_name(export), File(tmp, name="export"))
        finished = (
            Export.objects.filter(pk=export_id)
            .exclude(status=Export.Status.READY)
            .update(
                status=Export.Status.READY,
                file=stored_name,
                size_bytes=size,
                sha256=sha,
                notes=result.notes,
                progress=100,
                error="",
                finished_at=timezone.now(),
            )
        )
        if not finished:  # a concurrent run got there first: keep its file, drop ours
            default_storage.delete(stored_name)
        elif export.file.name and export.file.name != stored_name:
            default_storage.delete(export.file.name)  # the file of a draft's earlier, now stale, run
    except (OperationalError, InterfaceError):
        # The database went away: leave the export pending so the task's retry starts over.
        Export.objects.filter(pk=export_id).exclude(status=Export.Status.READY).update(
            status=Export.Status.PENDING, progress=0
        )
        raise
    except Exception as exc:
        log.exception("export %s failed", export_id)
        if stored_name:
            default_storage.delete(stored_name)
        Export.objects.filter(pk=export_id).exclude(status=Export.Status.READY).update(
            status=Export.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
    return Export.objects.get(pk=export_id)


# --------------------------------------------------------------------------- downloads


def download_filename(export: Export) -> str:
    return posixpath.basename(export.file.name) if export.file.name else f"export-{export.pk}.zip"


def download_token(*, export: Export, user) -> str:
    """A signed, timestamped token naming this export and this user."""
    return signing.TimestampSigner(salt=DOWNLOAD_SALT).sign_object({"e": export.pk, "u": user.pk})


def check_download_token(token: str, *, export: Export, user) -> None:
    """Raise unless the token is ours, unexpired, and names this export and this user."""
    try:
        value = signing.TimestampSigner(salt=DOWNLOAD_SALT).unsign_object(
            token, max_age=settings.DOWNLOAD_URL_TTL
        )
    except signing.SignatureExpired:
        raise DomainError(
            "This download link has expired: ask for a new one.", code="link_expired", status_code=403
        ) from None
    except signing.BadSignature:
        raise DomainError("This download link is not valid.", code="invalid_link", status_code=403) from None
    if value.get("e") != export.pk or value.get("u") != user.pk:
        raise DomainError(
            "This download link was made for another user or export.", code="invalid_link", status_code=403
        )


def download_url_for(*, export: Export, user, request=None) -> str:
    """A link to download the export, bound to this user and valid for DOWNLOAD_URL_TTL seconds."""
    path = (
        reverse("api-export-download", kwargs={"pk": export.pk})
        + "?"
        + urlencode({"token": download_token(export=export, user=user)})
    )
    return request.build_absolute_uri(path) if request is not None else site_url(path)


def storage_download_url(export: Export) -> str | None:
    """A presigned URL straight to object storage (S3), or None when storage serves no URL of its own."""
    storage = export.file.storage
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # django-storages is a dependency, but local setups may lack boto3
        return None
    if not isinstance(storage, S3Storage):
        return None
    disposition = f'attachment; filename="{download_filename(export)}"'
    return storage.url(
        export.file.name,
        parameters={"ResponseContentDisposition": disposition},
        expire=settings.DOWNLOAD_URL_TTL,
    )


def record_download(*, export: Export, user, ip_address: str | None = None) -> Download:
    """Record who downloaded what, when: a Download row and an event in the dataset's ledger."""
    version = export.version
    organization = access.access_organization(user, version)
    with transaction.atomic():
        download = Download.objects.create(
            export=export, user=user, organization=organization, ip_address=ip_address or None
        )
        _ledger_event(export, user, organization, download)
    return download


def _ledger_event(export: Export, user, organization, download: Download) -> None:
    try:
        from governance import ledger
    except ImportError:  # the ledger ships separately; downloads are still recorded as rows
        return
    ledger.record_dataset_event(
        dataset=export.version.dataset,
        action="export_downloaded",
        # Pseudonymous on purpose: the ledger is append-only, so no name or e-mail goes in it.
        actor=f"user:{user.pk}",
        payload={
            "download": download.pk,
            "export": export.pk,
            "format": export.format,
            "options": export.options,
            "sha256": export.sha256,
            "organization": organization.slug if organization else None,
        },
        version_number=export.version.number,
    )
