"""Building an export archive: the format's writer, the documents, the manifest."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import BinaryIO

from django.db import connection

from governance.ledger import content as ledger_content

from ..catalogue.content_files import stored_content_parts
from ..catalogue.stats import canonical_json
from ..formats import model as fmt
from ..formats.coco_writer import write_coco
from ..formats.voc_writer import write_voc
from ..formats.writing import DeflatingSpool, Notes, ZipSink
from ..formats.yolo_writer import choose_task, write_yolo
from ..models import (
    DatasetVersion,
    Export,
)
from .content_lines import label_lines
from .deflated_lines import DeflatedLabelLines
from .documents import (
    _archive_croissant,
    croissant_document,
    datasheet_markdown,
    license_text,
    license_url,
    site_url,
)
from .notes import notes_markdown
from .records import (
    PROVENANCE_COLUMNS,
    Progress,
    ProvenanceRows,
    Selection,
    category_defs,
    iter_items,
    iter_records,
    open_image,
)

log = logging.getLogger(__name__)


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
    # The content files stored at publication, copied as they are (catalogue.content_files). Else (a
    # draft, a version published before them) the labels' content rows, built by PostgreSQL on a
    # connection of its own and deflated by that helper thread while this thread writes the format's
    # files (content_lines, deflated_lines); read in turn at the end where that cannot be.
    # provenance.csv is deflated as it is written, likewise.
    stored = stored_content_parts(version)
    with DeflatedLabelLines(version) as content_labels:
        spooled = stored is None and content_labels.start()
        image_source = open_image if options.get("include_images", True) else None
        sink = ZipSink(fileobj)
        with DeflatingSpool() as prov_file:
            writer = ProvenanceRows(prov_file)
            writer.writerow(PROVENANCE_COLUMNS)
            # COCO takes plain polygon labels as rows (coco_writer.POLYGON_ROW), spliced from their stored
            # text; only on PostgreSQL, whose ``json`` column gives that text back as ingest wrote it.
            records = iter_records(
                selection,
                progress=progress,
                provenance=writer,
                polygon_rows=format == Export.Format.COCO and connection.vendor == "postgresql",
            )
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
                    items_first=_items_first(selection),
                )
                summary = {
                    "images": result.images,
                    "annotations": result.annotations,
                    "category_ids": result.category_ids,
                }
            elif format == Export.Format.VOC:
                result = write_voc(
                    sink,
                    records,
                    categories=defs,
                    notes=notes,
                    image_source=image_source,
                    database=dataset.title,
                )
                summary = {
                    "images": result.images,
                    "objects": result.objects,
                    "class_index": result.class_index,
                }
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
            sink.copy_deflated("provenance.csv", prov_file.finish())
        sink.write("datasheet.md", datasheet_markdown(version).encode())
        # What the format dropped or converted, in words, for whoever has only the zip.
        label = dict(Export.Format.choices).get(format, format)
        sink.write(
            "NOTES.md",
            notes_markdown(
                version=version, format_label=label, notes=notes.as_list(), summary=summary
            ).encode(),
        )
        sink.write("LICENSE.txt", license_text(version).encode())
        # The canonical content and the signed evidence, so a buyer can prove offline that this is the
        # published version (governance.ledger.content; verify_offline.py --archive).
        selected = {
            "format": format,
            "splits": list(options.get("splits") or []),
            "categories": list(options.get("categories") or []),
            "candidates": bool(options.get("candidates")),
        }
        if stored is not None:
            part_lines = dict(stored)
        else:
            part_lines = {"labels": content_labels.result() if spooled else label_lines(version)}
        ledger_content.write_archive_content(sink, version, selected, part_lines=part_lines)
    doc = _archive_croissant(version, format, sink.files, with_images=image_source is not None)
    sink.write("croissant.json", canonical_json(doc).encode())
    sink.write_manifest("MANIFEST.sha256")
    sink.close()
    summary["format"] = format
    return BuildResult(notes=notes.as_list(), summary=summary)


def _items_first(selection: Selection):
    """The items alone for the COCO writer to begin its files with, unless a label is a classification.

    Then the COCO files are deflated while the labels stream (``coco_writer._Writer.begin``) rather
    than at the end; a classification goes into its image's entry, which must wait for the labels.
    """
    if selection.labels().filter(geometry_type=fmt.CLASSIFICATION).exists():
        return None
    return iter_items(selection)


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
