"""The documents every export carries: datasheet, license, Croissant JSON-LD."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.models import Count
from django.urls import reverse

from governance.models import Annotator

from .. import hooks
from ..formats import croissant as cr
from ..formats import model as fmt
from ..formats.coco_writer import coco_category_ids
from ..models import (
    AttributeSpec,
    Category,
    DatasetVersion,
    Datasheet,
    Export,
    Item,
    Label,
)
from .records import PROVENANCE_COLUMNS, SPLITS, category_defs

log = logging.getLogger(__name__)


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
    rai = cr.rai_properties(
        datasheet=answers,
        guideline_versions=guidelines,
        annotations_per_item=per_item,
        annotation_analysis=analysis,
        machine_annotation_tools=tools,
        annotator_demographics=demographics,
        person_attributes=list(person),
    )
    # The measured figures (agreement, balance gaps, source shares) from governance's quality reports.
    rai.update(hooks.croissant_rai(version))
    return rai


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
