"""Write the neutral model as Pascal VOC: XML boxes, split lists, class and instance PNGs.

Layout (the VOC2012 devkit's, which datumaro and our reader both read)::

    Annotations/<id>.xml           one per image: size, and one <object> per label with a box
    JPEGImages/<id>.<ext>          the images, when the export has them
    ImageSets/Main/<split>.txt     image ids per split (train, val, test; "default" if none)
    ImageSets/Main/<class>_<split>.txt   image-level classification: "<id> 1" or "<id> -1"
    SegmentationClass/<id>.png     palette PNG, pixel = class index (labelmap order, 0 background)
    SegmentationObject/<id>.png    palette PNG, pixel = k for the k-th <object> of the XML
    labelmap.txt                   class order and colours: "name:r,g,b::", background first

Coordinates. VOC's top-left pixel is (1, 1) and its corners are inclusive integers. Our
reader's rule is ``x = xmin - 1, w = xmax - xmin + 1``; this writer is its inverse, with
0-based float boxes rounded to the nearest pixel edge (half up)::

    xmin = round(x) + 1    ymin = round(y) + 1    xmax = round(x + w)    ymax = round(y + h)

so a box survives a round trip within half a pixel per edge, and ``[0, 0, W, H]`` is
``1, 1, W, H``. Corners are clamped to ``1..width`` / ``1..height`` (counted in the notes
when that moves one), and a box thinner than a pixel keeps one pixel.

Masks: every mask and polygon label is painted into both PNGs (polygons rasterised as
pycocotools does, masks decoded from RLE), in label order, so where two instances overlap the later
one is on top -- VOC stores one value per pixel (counted in the notes). At most 254
instances per image fit the instance PNG (255 is VOC's "void").

Not held (notes): keypoints (the box is kept), polylines and 2D cuboids (their box is kept),
3D cuboids. Image-level classifications go to the per-class lists of ``ImageSets/Main``.
Attributes: ``truncated``, ``difficult`` and ``occluded`` as VOC's own flags, ``pose`` as
``<pose>``, the rest CVAT-style as ``<attributes><attribute><name/><value/>`` (as text).
"""

from __future__ import annotations

import io
import math
import posixpath
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from . import model
from .model import CategoryDef, ItemRecord, LabelRecord, bbox_of
from .writing import (
    NameAllocator,
    Notes,
    Sink,
    opened_image,
    provenance_line,
    relative_image_name,
    split_folder,
)

VOID = 255
MAX_INSTANCES = 254
_FLAGS = ("truncated", "difficult", "occluded")
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def voc_colormap(n: int = 256) -> list[tuple[int, int, int]]:
    """The VOC devkit palette (bit-interleaved), the one datumaro and the devkit use."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append((r, g, b))
    return colors


PALETTE = voc_colormap()
_FLAT_PALETTE = [v for rgb in PALETTE for v in rgb]


def _edge(v: float) -> int:
    """Round half up: Python's round() is to even, which would move 0.5 edges both ways."""
    return math.floor(v + 0.5)


def voc_box(box: list[float], width: int, height: int) -> tuple[tuple[int, int, int, int], bool]:
    """0-based [x, y, w, h] -> 1-based inclusive (xmin, ymin, xmax, ymax), and whether it stuck out.

    A box thinner than a pixel keeps one pixel; a box outside the image is clamped to it.
    """
    x, y, w, h = box
    xmin, ymin = _edge(x) + 1, _edge(y) + 1
    xmax, ymax = _edge(x + w), _edge(y + h)
    outside = xmin < 1 or ymin < 1 or xmax > width or ymax > height
    xmin = min(max(xmin, 1), width)
    ymin = min(max(ymin, 1), height)
    xmax = min(max(xmax, xmin), width)
    ymax = min(max(ymax, ymin), height)
    return (xmin, ymin, xmax, ymax), outside


_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def _is_part(part) -> bool:
    return (
        isinstance(part, dict)
        and isinstance(part.get("bbox"), list)
        and len(part["bbox"]) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part["bbox"])
    )


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _png(array: np.ndarray) -> bytes:
    img = Image.fromarray(array, mode="P")
    img.putpalette(_FLAT_PALETTE)
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)  # masks are flat colour: level 1 is nearly as small
    return out.getvalue()


@dataclass
class VocSummary:
    images: int = 0
    objects: int = 0
    segmented: int = 0
    class_index: dict[str, int] = field(default_factory=dict)


class _Writer:
    def __init__(self, sink: Sink, categories: list[CategoryDef], notes: Notes, image_source, database: str):
        self.sink = sink
        self.notes = notes
        self.image_source = image_source
        self.database = database
        self.categories = categories
        # Palette index of each class: its position in labelmap.txt, background first.
        self.class_index = {c.name: i for i, c in enumerate(categories, start=1)}
        if len(categories) > MAX_INSTANCES:
            notes.add(
                "info",
                f"{len(categories)} classes: SegmentationClass PNGs hold 254; classes after the 254th "
                "are left out of them (their boxes are in the XML)",
            )
        self.ids = NameAllocator()
        self.split_lists: dict[str, BinaryIO] = {}
        self.positives: dict[str, BinaryIO] = {}  # split -> "category\tid" lines of classifications
        self.classified: set[str] = set()
        self.summary = VocSummary(class_index=dict(self.class_index))
        self.provenance = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        for f in [*self.split_lists.values(), *self.positives.values(), self.provenance]:
            f.close()

    def _list(self, store: dict, split: str) -> BinaryIO:
        if split not in store:
            store[split] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        return store[split]

    # -- one image -------------------------------------------------------------------------

    def add(self, item: ItemRecord, labels: list[LabelRecord]) -> None:
        folder = split_folder(item.split)
        rel = relative_image_name(item.key, item.split)
        stem, ext = posixpath.splitext(rel)
        voc_id = self.ids.allocate(stem.replace("/", "__"))
        filename = f"{voc_id}{ext.lower() or '.jpg'}"
        with opened_image(self.image_source, item) as stream:
            if stream is not None:
                self.sink.copy_from(f"JPEGImages/{filename}", stream)
        self._list(self.split_lists, folder).write(f"{voc_id}\n".encode())
        width, height = item.width, item.height
        objects: list[str] = []
        instance = klass = None
        for label in labels:
            kind = label.geometry_type
            if kind == model.CLASSIFICATION:
                self._list(self.positives, folder).write(f"{label.category}\t{voc_id}\n".encode())
                self.classified.add(label.category)
                continue
            g = label.geometry
            box = g.get("bbox")
            if box is None and "rle" in g:
                coded = {"size": g["rle"]["size"], "counts": g["rle"]["counts"].encode("ascii")}
                box = [float(v) for v in mask_utils.toBbox(coded)]
            if box is None:
                box = bbox_of(g)
            if box is None:
                self.notes.add(
                    "dropped",
                    f"VOC cannot hold a {kind.replace('_', ' ')} label",
                    kind=kind,
                    category=label.category,
                )
                continue
            if kind in (model.KEYPOINTS, model.POLYLINE, model.CUBOID_2D, model.CUBOID_3D):
                self.notes.add(
                    "converted",
                    f"VOC has no {kind.replace('_', ' ')}: written as its box",
                    kind=kind,
                    category=label.category,
                )
            corners, clamped = voc_box(box, width, height)
            if clamped:
                self.notes.add(
                    "clipped", "box corners clamped to the image (VOC corners are 1..width, 1..height)"
                )
            k = len(objects) + 1
            objects.append(self.object_xml(label, corners, width, height))
            self.provenance_record(f"Annotations/{voc_id}.xml#{k}", label)
            if "rle" in g or g.get("polygons"):
                if instance is None:
                    instance = np.zeros((height, width), dtype=np.uint8)
                    klass = np.zeros((height, width), dtype=np.uint8)
                self.paint(label, k, instance, klass, width, height)
                self.provenance_record(f"SegmentationObject/{voc_id}.png#{k}", label)
        segmented = instance is not None
        if segmented:
            self.sink.write(f"SegmentationObject/{voc_id}.png", _png(instance))
            self.sink.write(f"SegmentationClass/{voc_id}.png", _png(klass))
            self.summary.segmented += 1
        xml = (
            "<annotation>\n"
            "  <folder>JPEGImages</folder>\n"
            f"  <filename>{escape(filename)}</filename>\n"
            f"  <source><database>{escape(self.database)}</database></source>\n"
            f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
            f"  <segmented>{1 if segmented else 0}</segmented>\n" + "".join(objects) + "</annotation>\n"
        )
        self.sink.write(f"Annotations/{voc_id}.xml", xml.encode())
        self.summary.images += 1
        self.summary.objects += len(objects)

    def object_xml(
        self, label: LabelRecord, corners: tuple[int, int, int, int], width: int = 0, height: int = 0
    ) -> str:
        attrs = dict(label.attributes)
        pose = attrs.pop("pose", "Unspecified")
        parts = [
            f"  <object>\n    <name>{escape(label.category)}</name>\n    <pose>{escape(_text(pose))}</pose>\n"
        ]
        for flag in _FLAGS:
            value = attrs.pop(flag, False)
            if isinstance(value, bool) or value in (0, 1):
                parts.append(f"    <{flag}>{int(bool(value))}</{flag}>\n")
            else:
                attrs[flag] = value  # not a flag VOC can say: keep it as an attribute
        xmin, ymin, xmax, ymax = corners
        parts.append(
            f"    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>\n"
        )
        # What the reader kept of <part> and <actions> goes back as VOC elements (issue #17).
        voc_parts = attrs.get("parts")
        if width and height and isinstance(voc_parts, list) and all(_is_part(p) for p in voc_parts):
            del attrs["parts"]
            for part in voc_parts:
                (pxmin, pymin, pxmax, pymax), _ = voc_box([float(v) for v in part["bbox"]], width, height)
                parts.append(
                    f"    <part><name>{escape(str(part['name']))}</name><bndbox><xmin>{pxmin}</xmin>"
                    f"<ymin>{pymin}</ymin><xmax>{pxmax}</xmax><ymax>{pymax}</ymax></bndbox></part>\n"
                )
        actions = attrs.get("actions")
        if (
            isinstance(actions, dict)
            and all(isinstance(v, bool) for v in actions.values())
            and all(isinstance(k, str) and _XML_NAME.fullmatch(k) for k in actions)
        ):
            del attrs["actions"]
            flags = "".join(f"<{k}>{int(v)}</{k}>" for k, v in actions.items())
            parts.append(f"    <actions>{flags}</actions>\n")
        if attrs:
            parts.append("    <attributes>\n")
            for name, value in attrs.items():
                parts.append(
                    f"      <attribute><name>{escape(str(name))}</name><value>{escape(_text(value))}</value></attribute>\n"
                )
            parts.append("    </attributes>\n")
        parts.append("  </object>\n")
        return "".join(parts)

    def paint(
        self, label: LabelRecord, k: int, instance: np.ndarray, klass: np.ndarray, width: int, height: int
    ):
        g = label.geometry
        if k > MAX_INSTANCES:
            self.notes.add(
                "dropped",
                f"more than {MAX_INSTANCES} masks in one image: the rest are left out of SegmentationObject "
                "(their boxes are in the XML)",
                kind=label.geometry_type,
                category=label.category,
            )
            return
        # Polygons are rasterised as COCO does (pycocotools, pixel centres inside the outline), so a
        # COCO polygon and its VOC mask agree; the work is then done in the shape's own box.
        if "rle" in g:
            coded = {"size": g["rle"]["size"], "counts": g["rle"]["counts"].encode("ascii")}
        else:
            coded = mask_utils.merge(mask_utils.frPyObjects([list(r) for r in g["polygons"]], height, width))
        x, y, w, h = (int(v) for v in mask_utils.toBbox(coded))
        x0, y0, x1, y1 = x, y, x + w, y + h
        pixels = mask_utils.decode(coded)[y0:y1, x0:x1].astype(bool)
        if not pixels.any():
            self.notes.add(
                "dropped", "mask or polygon covers no pixel: left out of the PNGs", kind=label.geometry_type
            )
            return
        region = instance[y0:y1, x0:x1]
        if region[pixels].any():
            self.notes.add(
                "info",
                "overlapping masks: VOC keeps one instance per pixel, the later label on top",
                kind=label.geometry_type,
            )
        region[pixels] = k
        index = self.class_index.get(label.category, 0)
        if 0 < index <= MAX_INSTANCES:
            klass[y0:y1, x0:x1][pixels] = index

    def provenance_record(self, reference: str, label: LabelRecord) -> None:
        self.provenance.write((provenance_line(reference, label) + "\n").encode())

    # -- the lists -------------------------------------------------------------------------

    def finish(self) -> VocSummary:
        lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
        for name, index in self.class_index.items():
            r, g, b = PALETTE[index % 256]
            lines.append(f"{name}:{r},{g},{b}::")
        self.sink.write("labelmap.txt", ("\n".join(lines) + "\n").encode())
        order = sorted(self.split_lists, key=lambda n: (SPLIT_ORDER.get(n, 9), n))
        for split in order:
            ids_file = self.split_lists[split]
            ids_file.seek(0)
            with self.sink.open(f"ImageSets/Main/{split}.txt") as out:
                for line in ids_file:
                    out.write(line)
        for category in sorted(self.classified):
            for split in order:
                positive: set[str] = set()
                if split in self.positives:
                    self.positives[split].seek(0)
                    for line in self.positives[split]:
                        cat, _, voc_id = line.decode().rstrip("\n").partition("\t")
                        if cat == category:
                            positive.add(voc_id)
                self.split_lists[split].seek(0)
                with self.sink.open(f"ImageSets/Main/{category}_{split}.txt") as out:
                    for line in self.split_lists[split]:
                        voc_id = line.decode().rstrip("\n")
                        out.write(f"{voc_id} {1 if voc_id in positive else -1}\n".encode())
        if self.classified:
            count = sum(1 for _ in self._positive_lines())
            self.notes.add(
                "converted",
                "image-level classifications are in ImageSets/Main/<class>_<split>.txt (1: has the class, "
                "-1: has not), VOC's classification lists",
                kind=model.CLASSIFICATION,
                count=count,
            )
        self.provenance.seek(0)
        with self.sink.open("provenance.jsonl") as out:
            for line in self.provenance:
                out.write(line)
        return self.summary

    def _positive_lines(self):
        for f in self.positives.values():
            f.seek(0)
            yield from f


def write_voc(
    sink: Sink,
    records: Iterable[tuple[ItemRecord, list[LabelRecord]]],
    *,
    categories: list[CategoryDef],
    notes: Notes,
    image_source: Callable[[ItemRecord], BinaryIO] | None = None,
    database: str = "",
) -> VocSummary:
    """Write records as a Pascal VOC tree (and the images into ``JPEGImages/`` when given)."""
    writer = _Writer(sink, categories, notes, image_source, database)
    try:
        for item, labels in records:
            writer.add(item, labels)
        return writer.finish()
    finally:
        writer.close()
