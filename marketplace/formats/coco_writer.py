"""Write the neutral model as COCO: one ``annotations/instances_<split>.json`` per split.

Streaming: one pass over ``(item, labels)`` records, in any order. Each split's ``images``
and ``annotations`` arrays go to two temporary files as the records arrive (image files go
straight into the sink); at the end each split's JSON is assembled by copying them, so
memory stays flat however many labels there are, and the JSON is never one giant dict. Given the
items first (``items_first``, when no label is a classification), each split's file is instead begun
with its images array and deflated as the annotations arrive (``_Writer.begin``): the same bytes.

What is written, and the conventions kept (the checks pycocotools and datumaro make):

- ``bbox`` ``[x, y, w, h]``, 0-based floats, from the label's ``bbox`` part, else from its
  mask (``pycocotools.mask.toBbox``), else the tight box of its points. A box derived from a
  line or points is at least 1 pixel wide and high (it covers the pixels the line crosses).
- ``segmentation``: polygons as they are; masks as compressed RLE with ``counts`` a str; any
  other annotation (a box, keypoints, a line or cuboid written as its box) the box's rectangle
  as one polygon, so ``COCO.annToMask`` decodes every annotation (``[]`` or no key at all
  crashes it), marked ``"segmentation_is_box": true`` so our reader reads it back as the box.
- an export with no image still writes ``annotations/instances_default.json``, with empty lists.
  ``iscrowd`` is the label's. ``area``: the mask's (``pycocotools.mask.area``), else the
  polygons' (shoelace, summed), else the box's.
- keypoints: ``keypoints`` and ``num_keypoints`` (labelled points, v > 0), and the box.
- categories: the ORIGINAL ids (``CategoryDef.source_id``); a category without one (or with
  0, e.g. a YOLO class index) gets the next id after the largest, never 0. Keypoint
  categories carry ``keypoints`` and the 1-based ``skeleton``.
- ids: images and annotations numbered from 1 across the whole export (unique, so
  ``COCO.createIndex`` loses nothing).
- provenance rides on each annotation in the fields our reader understands:
  ``attributes``, ``annotator``, ``created_at``, ``guideline_version``, ``source``,
  ``model_name``, ``model_version``, ``is_final`` (only when false), plus ``uid``.

What COCO cannot hold goes to the notes, never silently: polylines and 2D cuboids become
their box (the original points ride along in a non-standard ``points`` / ``cuboid`` field);
3D cuboids without an image box are dropped; image-level classifications go to the image
entry's ``classifications`` list (an annotation without a box breaks ``COCOeval``).
"""

from __future__ import annotations

import hashlib
import json
import operator
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson
from pycocotools import mask as mask_utils

from . import model
from .coco import _KNOWN_FIELDS, COCO_FIELDS
from .model import CategoryDef, ItemRecord, LabelRecord, bbox_of, box_ring
from .writing import (
    COPY_CHUNK,
    DeflatingSpool,
    NameAllocator,
    Notes,
    Sink,
    opened_image,
    relative_image_name,
    split_folder,
)

SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}
_PROVENANCE_FIELDS = ("annotator", "guideline_version", "model_name", "model_version")
_RESERVED = _KNOWN_FIELDS | {"points", "cuboid", "cuboid_3d"}  # never overwritten by a kept field
SPOOL_BUFFER = 1024 * 1024


def coco_category_ids(categories: list[CategoryDef], notes: Notes | None = None) -> dict[str, int]:
    """Category name -> COCO id: the source id when it is one (>= 1), else the next free id."""
    ids: dict[str, int] = {}
    taken = {c.source_id for c in categories if c.source_id is not None and c.source_id >= 1}
    next_id = max(taken, default=0) + 1
    for c in categories:
        if c.source_id is not None and c.source_id >= 1:
            ids[c.name] = c.source_id
            continue
        ids[c.name] = next_id
        if notes is not None:
            was = (
                "had no id"
                if c.source_id is None
                else f"had id {c.source_id}, which COCO tools take as background"
            )
            notes.add("info", f"category {c.name!r} {was}; written with COCO id {next_id}", category=c.name)
        next_id += 1
    return ids


def category_entry(c: CategoryDef, cid: int) -> dict:
    entry: dict = {"id": cid, "name": c.name, "supercategory": c.supercategory or c.name}
    if c.keypoints:
        entry["keypoints"] = list(c.keypoints)
        entry["skeleton"] = [list(pair) for pair in c.skeleton]
    return entry


# One encoder for every annotation: json.dumps() with options builds a new encoder on each call.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumpb(value) -> bytes:
    """An image or annotation entry as compact UTF-8 JSON: orjson (about 10x the stdlib), else the stdlib.

    orjson refuses integers beyond 64 bits (an attribute may hold one); the stdlib writes them.
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return _dumps(value).encode()


def _dump_annotation(ann: dict, label: LabelRecord) -> bytes:
    """``_dumpb`` for an annotation whose segmentation may be a spliced fragment (orjson only)."""
    try:
        return orjson.dumps(ann)
    except TypeError:
        return _dump_with_lists(ann, label.geometry)


def _dump_with_lists(ann: dict, geometry: dict) -> bytes:
    """The stdlib's encoding of an annotation orjson refused, its polygons as lists (not a fragment)."""
    if isinstance(ann.get("segmentation"), orjson.Fragment):
        ann["segmentation"] = [list(ring) for ring in geometry["polygons"]]
    return _dumps(ann).encode()


# A plain polygon label as the export's reader hands it over instead of a LabelRecord (a tuple: no object
# to build, no attribute to look up): its geometry holds only ``bbox`` and ``polygons`` (non-empty), it
# has no attributes, and ``geometry_text`` is the stored JSON text ``geometry`` was decoded from.
POLYGON_ROW = (
    "category",
    "geometry_text",
    "geometry",
    "iscrowd",
    "is_final",
    "uid",
    "annotator",
    "made_at",
    "guideline_version",
    "source",
    "model_name",
    "model_version",
)


# What a stored polygons part holds: numbers, commas, brackets, and the spaces of a database's output.
# Deleted by bytes.translate (a table in C); str.translate looks each character up in a dict, 3x slower.
_NUMBER_TEXT = b"0123456789.,-+eE[] "


def polygons_fragment(text: str | None, polygons: list) -> orjson.Fragment | None:
    """The ``polygons`` part cut out of the geometry's stored JSON text, to be spliced as ``segmentation``.

    ``text`` is what ``polygons`` was decoded from (``LabelRecord.geometry_text``), so the cut-out
    reads back to the very numbers (the database's spelling: PostgreSQL prints 1e-05 as 0.00001); it
    saves encoding them again. None, and the caller encodes, unless the cut holds numbers only, in
    exactly one bracket per ring plus one (no NaN, no deeper nesting).
    """
    if text is None:
        return None
    # Spaced as jsonb and SQLite's json.dumps print it; compact as ingest writes PostgreSQL's json column.
    start = text.find('"polygons": [[')
    if start != -1:
        start += 12
    else:
        start = text.find('"polygons":[[')
        if start == -1:
            return None
        start += 11
    end = text.find("]]", start)
    if end == -1:
        return None
    part = text[start : end + 2]
    if part.count("[") != len(polygons) + 1 or not part.isascii():
        return None
    if part.encode().translate(None, _NUMBER_TEXT):
        return None
    return orjson.Fragment(part.replace(" ", "") if " " in part else part)


def ring_area(ring: list[float]) -> float:
    """Shoelace area of a flat [x1, y1, ...] ring (model.polygon_area, with the loop in C)."""
    xs, ys = ring[0::2], ring[1::2]
    return (
        abs(sum(map(operator.mul, xs, ys[1:] + ys[:1])) - sum(map(operator.mul, xs[1:] + xs[:1], ys))) / 2.0
    )


def _floats(values) -> list[float]:
    return [float(v) for v in values]


def _min_pixel(box: list[float]) -> list[float]:
    """A box derived from points or a line covers at least the pixels it crosses."""
    x, y, w, h = box
    return [x, y, max(w, 1.0), max(h, 1.0)]


@dataclass
class _Split:
    images: BinaryIO | None
    annotations: BinaryIO | DeflatingSpool
    image_count: int = 0
    annotation_count: int = 0
    # Set when the split's file was begun from the items alone (_Writer.begin): its whole text goes
    # here, deflated as it comes, and ``annotations`` is this spool.
    deflating: DeflatingSpool | None = None


@dataclass
class CocoSummary:
    files: list[str] = field(default_factory=list)
    images: int = 0
    annotations: int = 0
    category_ids: dict[str, int] = field(default_factory=dict)


class _Writer:
    def __init__(
        self, sink: Sink, categories: list[CategoryDef], notes: Notes, image_source, provenance: bool
    ):
        self.sink = sink
        self.notes = notes
        self.image_source = image_source
        self.provenance = provenance
        self.categories = categories
        self.ids = coco_category_ids(categories, notes)
        self.splits: dict[str, _Split] = {}
        self.names = NameAllocator()
        self.next_image = 1
        self.next_annotation = 1
        self.begun: int | None = None  # how many items begin() was given; None without it
        self.began_with = hashlib.sha256()  # their keys, to check add() gets the same
        self.added = hashlib.sha256()

    def split(self, name: str) -> _Split:
        s = self.splits.get(name)
        if s is None:
            # A large buffer: one system call per megabyte, not per 8 kB (a busy disk made each cost).
            s = _Split(
                tempfile.TemporaryFile(buffering=SPOOL_BUFFER),  # noqa: SIM115 - closed in close()
                tempfile.TemporaryFile(buffering=SPOOL_BUFFER),  # noqa: SIM115 - closed in close()
            )
            self.splits[name] = s
        return s

    def close(self) -> None:
        for s in self.splits.values():
            if s.images is not None:
                s.images.close()
            s.annotations.close()

    def head(self, info: dict, licenses: list[dict]) -> bytes:
        """A split's file up to its images array's first entry."""
        cats = [category_entry(c, self.ids[c.name]) for c in self.categories]
        return (
            "{"
            f'"info":{_dumps(info)},\n"licenses":{_dumps(licenses)},\n'
            f'"categories":{_dumps(cats)},\n"images":['
        ).encode()

    def image_entry(self, item: ItemRecord, file_name: str, image_id: int) -> dict:
        image: dict = {"id": image_id, "file_name": file_name, "width": item.width, "height": item.height}
        image["license"] = 1
        if item.attributes:
            image["attributes"] = item.attributes
        return image

    def begin(self, items: Iterable[ItemRecord], info: dict, licenses: list[dict]) -> None:
        """Write each split's file up to its annotations from the items alone, deflating it from here on.

        For an export without classification labels (the only labels an image entry holds), whose
        items can be read twice in the same order: the images arrays come first in each file, so
        they are written now, and every annotation is then deflated by a helper thread as ``add``
        writes it (``DeflatingSpool``), instead of the whole file at the end by one thread while the
        other core idles. ``add`` must then get the same items in the same order (checked) and no
        classification label (refused). The bytes are those ``finish`` writes otherwise.
        """
        names = NameAllocator()
        begun = 0
        head = None
        for item in items:
            folder = split_folder(item.split)
            s = self.splits.get(folder)
            if s is None:
                spool = DeflatingSpool(text=False)
                s = self.splits[folder] = _Split(None, spool, deflating=spool)
                head = head or self.head(info, licenses)
                spool.write(head)
            file_name = names.allocate(f"{folder}/{relative_image_name(item.key, item.split)}")[
                len(folder) + 1 :
            ]
            begun += 1
            self.began_with.update(f"{item.key}\0{item.split}\0".encode())
            image = self.image_entry(item, file_name, begun)
            s.deflating.write((b",\n" if s.image_count else b"\n") + _dumpb(image))
            s.image_count += 1
        for s in self.splits.values():
            s.deflating.write(b'\n],\n"annotations":[')
        self.begun = begun

    # -- records ---------------------------------------------------------------------------

    def add(self, item: ItemRecord, labels: list[LabelRecord]) -> None:
        folder = split_folder(item.split)
        s = self.split(folder)
        file_name = self.names.allocate(f"{folder}/{relative_image_name(item.key, item.split)}")[
            len(folder) + 1 :
        ]
        with opened_image(self.image_source, item) as stream:
            if stream is not None:
                self.sink.copy_from(f"images/{folder}/{file_name}", stream)
        image_id = self.next_image
        self.next_image += 1
        if self.begun is not None:
            if image_id > self.begun or s.deflating is None:
                raise RuntimeError(
                    f"COCO export: item {item.key!r} was not among the items its files began with"
                )
            self.added.update(f"{item.key}\0{item.split}\0".encode())
        image = self.image_entry(item, file_name, image_id)
        classifications = []
        written = []  # the item's annotations, written to the split's file in one call
        for label in labels:
            if label.__class__ is tuple:
                written.append(self.polygon_row(label, image_id))
                continue
            if label.geometry_type == model.CLASSIFICATION:
                classifications.append(self.classification(label))
                continue
            ann = self.annotation(label, image_id, item)
            if ann is None:
                continue
            written.append(_dump_annotation(ann, label))
        if written:
            s.annotations.write((b",\n" if s.annotation_count else b"\n") + b",\n".join(written))
            s.annotation_count += len(written)
        if classifications:
            if self.begun is not None:
                raise RuntimeError("COCO export: a classification label after its image entry was written")
            image["classifications"] = classifications
            self.notes.add(
                "converted",
                "COCO instances have no image-level annotation (one without a box breaks COCOeval): "
                "classification labels are in the image entry's 'classifications' list",
                kind=model.CLASSIFICATION,
                count=len(classifications),
            )
        if self.begun is None:
            s.images.write((b",\n" if s.image_count else b"\n") + _dumpb(image))
            s.image_count += 1

    def extras(self, label: LabelRecord, entry: dict) -> None:
        if label.attributes:  # most labels have none: no copy
            attributes = dict(label.attributes)
            fields = attributes.pop(COCO_FIELDS, None)
            # Fields a COCO file had beyond COCO's own (COCO-WholeBody's face_kpts ...) go back as fields.
            for name in fields if isinstance(fields, list) else []:
                if (
                    isinstance(name, str)
                    and name in attributes
                    and name not in entry
                    and name not in _RESERVED
                ):
                    entry[name] = attributes.pop(name)
            if attributes:
                entry["attributes"] = attributes
        if not label.is_final:
            entry["is_final"] = False
        if not self.provenance:
            return
        if label.uid:
            entry["uid"] = str(label.uid)
        p = label.provenance
        for name in _PROVENANCE_FIELDS:
            value = getattr(p, name)
            if value:
                entry[name] = value
        if p.made_at is not None:
            entry["created_at"] = p.made_at.isoformat()
        entry["source"] = p.source

    def classification(self, label: LabelRecord) -> dict:
        entry = {"category_id": self.ids[label.category]}
        self.extras(label, entry)
        return entry

    def annotation(self, label: LabelRecord, image_id: int, item: ItemRecord) -> dict | None:
        g = label.geometry
        kind = label.geometry_type
        cid = self.ids[label.category]
        segmentation: list | dict = []
        area = None
        rle = g.get("rle")
        if rle is not None:
            coded = {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}
            segmentation = {"size": list(rle["size"]), "counts": rle["counts"]}
            area = float(mask_utils.area(coded))
            box = _floats(g["bbox"]) if "bbox" in g else [float(v) for v in mask_utils.toBbox(coded)]
        elif g.get("polygons"):
            spliced = polygons_fragment(label.geometry_text, g["polygons"])
            segmentation = spliced or [list(ring) for ring in g["polygons"]]
            area = sum(ring_area(ring) for ring in g["polygons"])
            box = _floats(g["bbox"]) if "bbox" in g else _floats(bbox_of(g))
        elif "bbox" in g:
            box = _floats(g["bbox"])
        else:
            derived = bbox_of(g)
            box = _min_pixel(_floats(derived)) if derived is not None else None
        if box is None:
            self.notes.add(
                "dropped",
                f"COCO cannot hold a {kind.replace('_', ' ')} label without an image box",
                kind=kind,
                category=label.category,
            )
            return None
        if kind in (model.POLYLINE, model.CUBOID_2D, model.CUBOID_3D):
            part = {model.POLYLINE: "points", model.CUBOID_2D: "cuboid", model.CUBOID_3D: "cuboid_3d"}[kind]
            self.notes.add(
                "converted",
                f"COCO has no {kind.replace('_', ' ')}: written as its box, with the original in a "
                f"non-standard '{part}' field",
                kind=kind,
                category=label.category,
            )
        box_only = not segmentation
        if box_only:
            segmentation = [box_ring(box)]
            self.notes.add(
                "info",
                "Annotations without a polygon or mask (boxes, keypoints, lines and cuboids written "
                "as their box) carry their box's rectangle as segmentation, so every annotation "
                "decodes to a mask",
            )
        ann: dict = {
            "id": self.next_annotation,
            "image_id": image_id,
            "category_id": cid,
            "bbox": box,
            "area": area if area is not None else box[2] * box[3],
            "iscrowd": 1 if label.iscrowd else 0,
            "segmentation": segmentation,
        }
        if box_only:
            ann["segmentation_is_box"] = True  # our reader reads the annotation back as its box
        self.next_annotation += 1
        if "keypoints" in g:
            kp = list(g["keypoints"])
            ann["keypoints"] = kp
            ann["num_keypoints"] = sum(1 for v in kp[2::3] if v > 0)
        for part in ("points", "cuboid", "cuboid_3d"):
            if part in g:
                ann[part] = g[part]
        self.extras(label, ann)
        return ann

    def polygon_row(self, row: tuple, image_id: int) -> bytes:
        """A ``POLYGON_ROW``'s annotation, encoded: what ``annotation``, ``extras`` and ``_dump_annotation``
        make of the same label as a LabelRecord, byte for byte, in fewer steps (the export's hot loop;
        ``tests/marketplace/test_export_polygon_rows.py`` compares the two on every kind of value)."""
        (
            category,
            text,
            g,
            iscrowd,
            is_final,
            uid,
            annotator,
            made_at,
            tag,
            source,
            model_name,
            model_version,
        ) = row
        polygons = g["polygons"]
        # One ring (most polygons): its area alone is the sum's, bit for bit (0 + a is a).
        area = ring_area(polygons[0]) if len(polygons) == 1 else sum(ring_area(ring) for ring in polygons)
        ann = {
            "id": self.next_annotation,
            "image_id": image_id,
            "category_id": self.ids[category],
            "bbox": [float(v) for v in g["bbox"]],
            "area": area,
            "iscrowd": 1 if iscrowd else 0,
            "segmentation": polygons_fragment(text, polygons) or [list(ring) for ring in polygons],
        }
        self.next_annotation += 1
        if not is_final:
            ann["is_final"] = False
        if self.provenance:
            if uid:
                ann["uid"] = uid
            if annotator:
                ann["annotator"] = annotator
            if tag:
                ann["guideline_version"] = tag
            if model_name:
                ann["model_name"] = model_name
            if model_version:
                ann["model_version"] = model_version
            if made_at is not None:
                ann["created_at"] = made_at.isoformat()
            ann["source"] = source
        try:
            return orjson.dumps(ann)
        except TypeError:
            return _dump_with_lists(ann, g)

    # -- files -----------------------------------------------------------------------------

    def finish(self, info: dict, licenses: list[dict]) -> CocoSummary:
        summary = CocoSummary(category_ids=dict(self.ids))
        if self.begun is not None and (
            self.next_image - 1 != self.begun or self.added.digest() != self.began_with.digest()
        ):
            raise RuntimeError("COCO export: not the items its files began with, or not in their order")
        if not self.splits:
            # No image at all: still one annotation file (empty lists) that COCO tools open.
            self.split(split_folder(""))
        head = self.head(info, licenses)
        for folder in sorted(self.splits, key=lambda n: (SPLIT_ORDER.get(n, 9), n)):
            s = self.splits[folder]
            name = f"annotations/instances_{folder}.json"
            if s.deflating is not None:
                s.deflating.write(b"\n]}\n")
                self.sink.copy_deflated(name, s.deflating.finish())
            else:
                with self.sink.open(name) as out:
                    out.write(head)
                    s.images.seek(0)
                    shutil.copyfileobj(s.images, out, COPY_CHUNK)
                    out.write(b'\n],\n"annotations":[')
                    s.annotations.seek(0)
                    shutil.copyfileobj(s.annotations, out, COPY_CHUNK)
                    out.write(b"\n]}\n")
            summary.files.append(name)
            summary.images += s.image_count
            summary.annotations += s.annotation_count
        return summary


def write_coco(
    sink: Sink,
    records: Iterable[tuple[ItemRecord, list[LabelRecord]]],
    *,
    categories: list[CategoryDef],
    notes: Notes,
    info: dict | None = None,
    licenses: list[dict] | None = None,
    image_source: Callable[[ItemRecord], BinaryIO] | None = None,
    provenance: bool = True,
    items_first: Iterable[ItemRecord] | None = None,
) -> CocoSummary:
    """Write records as COCO instances files (and the images, when ``image_source`` is given).

    A record's labels are LabelRecords, or ``POLYGON_ROW`` tuples for plain polygons (the export's).
    ``items_first``: the records' items alone, in the same order, when no label is a classification;
    the files are then begun from them and deflated as the records come (``_Writer.begin``).
    """
    writer = _Writer(sink, categories, notes, image_source, provenance)
    info = info or {}
    licenses = licenses or [{"id": 1, "name": "unspecified", "url": ""}]
    try:
        if items_first is not None:
            writer.begin(items_first, info, licenses)
        for item, labels in records:
            writer.add(item, labels)
        return writer.finish(info, licenses)
    finally:
        writer.close()
