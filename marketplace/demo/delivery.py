"""The demo's draft is finished by a real delivery: a COCO zip written next to the demo database.

`manage.py demo` leaves *Urban Street Scenes* v3 as an empty draft (datasheet and schema, no
items) and writes the delivery that fills it to ``VAR_DIR/demo/``; the README tells the demo
supplier to upload it from the workspace. The zip is written with the same COCO codec as
exports, so the ingest that reads it is the one every supplier's delivery goes through.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from django.conf import settings

from ..formats import model as fmt
from ..formats.coco_writer import write_coco
from ..formats.writing import Notes, ZipSink

# The defaults the README tells the supplier to enter with the upload: every label of the demo
# delivery names its own guideline version, so none are needed; the form's field stays empty.
DELIVERY_FORMAT = "coco"


def delivery_path(slug: str, number: int) -> Path:
    """Where the demo writes the delivery that fills draft ``number`` of ``slug``."""
    return Path(settings.VAR_DIR) / "demo" / f"{slug}-v{number}-delivery.zip"


def _records(items, jpeg_of):
    for it in items:
        record = fmt.ItemRecord(
            key=it.key, width=it.image.width, height=it.image.height, split=it.split, attributes=it.attributes
        )
        labels = [
            fmt.LabelRecord(
                item_key=it.key,
                category=lab.category,
                geometry_type=lab.geometry_type,
                geometry=lab.geometry,
                attributes=lab.attributes,
                uid=str(lab.uid),
                is_final=lab.is_final,
                provenance=fmt.Provenance(
                    annotator=lab.annotator,
                    made_at=lab.made_at,
                    guideline_version=lab.guideline,
                    source=lab.source,
                    model_name=lab.model_name,
                    model_version=lab.model_version,
                ),
            )
            for lab in it.labels
        ]
        yield record, labels


def write_delivery(*, path: Path, items, categories: list[dict], jpeg_of) -> Path:
    """Write ``items`` (the demo's drawn images and labels) as a COCO delivery zip at ``path``."""
    defs = [
        fmt.CategoryDef(
            name=c["name"],
            source_id=c.get("source_id"),
            supercategory=c.get("supercategory", ""),
            keypoints=list(c.get("keypoint_names", [])),
            skeleton=[list(pair) for pair in c.get("skeleton", [])],
            geometry_types=list(c.get("geometry_types", [])),
        )
        for c in categories
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    # A private temporary name, then an atomic rename: never a half-written zip under the name
    # the README gives, even with two demo loads at once.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".partial")
    partial = Path(tmp)
    with os.fdopen(fd, "wb") as out:
        sink = ZipSink(out)
        write_coco(
            sink,
            _records(items, jpeg_of),
            categories=defs,
            notes=Notes(),
            info={"description": "Demo delivery", "version": path.stem},
            image_source=lambda item: io.BytesIO(jpeg_of(item.key)),
        )
        sink.close()
    partial.replace(path)
    return path
