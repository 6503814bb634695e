"""The neutral annotation model that every codec reads into and writes from.

No Django here: codecs are pure so they can stream a million labels and be tested alone.

Coordinates are pixel floats with the origin at the top-left corner of the image and the
first pixel covering [0, 1) x [0, 1) -- the COCO convention. Each codec converts its own
format's convention (VOC's 1-based corners, YOLO's normalised centres, Label Studio's
percentages) at its edge; nothing else in the system does.

A label's ``geometry`` is a dict of *parts*, so one source annotation stays one label
whatever it carries (a COCO keypoints annotation keeps its box and its segmentation):

=============  ==============================================================  ==============
part           value                                                           primary for
=============  ==============================================================  ==============
``bbox``       ``[x, y, w, h]``                                                bbox
``polygons``   ``[[x1, y1, x2, y2, ...], ...]`` one or more rings               polygon
``points``     ``[x1, y1, x2, y2, ...]`` an open line                           polyline
``rle``        COCO RLE ``{"size": [h, w], "counts": str}`` (compressed)         mask
``keypoints``  ``[x1, y1, v1, ...]``, v: 0 unlabelled, 1 occluded, 2 visible     keypoints
``cuboid``     8 projected corners ``[x1, y1, ... x8, y8]``: front face          cuboid_2d
               top-left, bottom-left, top-right, bottom-right, then the back
               face in the same order (CVAT's order)
``cuboid_3d``  ``{"position": [x, y, z], "dimensions": [l, w, h],                cuboid_3d
               "rotation": [rx, ry, rz]}`` metres and radians, camera frame
=============  ==============================================================  ==============

``classification`` labels carry no part: the category is the label.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol

from .quoting import clip

MAX_MESSAGE = 1000  # characters of one problem's message (messages quote input through quoting.quote)

BBOX = "bbox"
POLYGON = "polygon"
POLYLINE = "polyline"
MASK = "mask"
KEYPOINTS = "keypoints"
CUBOID_2D = "cuboid_2d"
CUBOID_3D = "cuboid_3d"
CLASSIFICATION = "classification"

GEOMETRY_TYPES = (BBOX, POLYGON, POLYLINE, MASK, KEYPOINTS, CUBOID_2D, CUBOID_3D, CLASSIFICATION)

# The part that must be present for each geometry type.
PRIMARY_PART = {
    BBOX: "bbox",
    POLYGON: "polygons",
    POLYLINE: "points",
    MASK: "rle",
    KEYPOINTS: "keypoints",
    CUBOID_2D: "cuboid",
    CUBOID_3D: "cuboid_3d",
    CLASSIFICATION: None,
}

HUMAN = "human"
MODEL = "model"
CONSENSUS = "consensus"
SOURCES = (HUMAN, MODEL, CONSENSUS)

# Pixel tolerance for "inside the image": peer tools round and write x+w == width + 0.5.
EDGE_TOLERANCE = 1.0


@dataclass
class CategoryDef:
    """One category of an annotation schema, as a source file declares it."""

    name: str
    source_id: int | None = None  # the id in the source (COCO category id): kept on round trip
    supercategory: str = ""
    keypoints: list[str] = field(default_factory=list)
    skeleton: list[list[int]] = field(default_factory=list)  # 1-based pairs, as COCO writes them
    geometry_types: list[str] = field(default_factory=list)
    color: str = ""


@dataclass
class Provenance:
    """Who made a label, when, how. Any field may be unknown (None / empty)."""

    annotator: str | None = None  # pseudonymous id within the supplier
    made_at: datetime | None = None
    updated_at: datetime | None = None
    guideline_version: str | None = None  # version tag, e.g. "v1.2"
    source: str = HUMAN  # human | model | consensus
    model_name: str = ""
    model_version: str = ""
    review: str = ""  # "", accepted, rejected, fixed
    reviewer: str | None = None
    reviewed_at: datetime | None = None


@dataclass
class ItemRecord:
    """One image of a delivery."""

    key: str  # path of the image inside the delivery, e.g. "images/train/0001.jpg"
    width: int | None = None
    height: int | None = None
    split: str = ""
    attributes: dict = field(default_factory=dict)
    source_ref: str = ""  # where it was declared, for error messages
    source_id: str | int | None = None  # COCO image id, CVAT image id, LS task id


@dataclass
class LabelRecord:
    """One annotation of one item."""

    item_key: str
    category: str
    geometry_type: str
    geometry: dict = field(default_factory=dict)
    attributes: dict = field(default_factory=dict)
    uid: str | None = None  # a stable id if the source has one
    is_final: bool = True  # False: one annotator's candidate, kept next to the final label
    iscrowd: bool = False
    provenance: Provenance = field(default_factory=Provenance)
    source_ref: str = ""  # "annotations.json#/annotations/17" or "labels/train/a.txt:3"
    source_id: str | int | None = None  # COCO annotation id, CVAT shape index...
    # The tool's own id of the annotation, kept by the tool across its exports (COCO annotation id,
    # CVAT shape id when the export has one, Label Studio result id): lineage matches on it.
    stable_id: str | None = None
    # The stored JSON text ``geometry`` was decoded from, when the reader has it (an export reading the
    # database): a writer may copy a part from it instead of encoding it again (the COCO writer splices
    # polygons). Whoever changes ``geometry`` after reading sets this back to None.
    geometry_text: str | None = None


@dataclass
class Problem:
    """One thing wrong with a delivery, located precisely enough to fix it."""

    file: str
    message: str
    line: int | None = None
    pointer: str | None = None  # JSON pointer, e.g. "/annotations/17/bbox"
    code: str = "invalid"

    def __post_init__(self) -> None:
        # A report is stored and served: no message may carry an unbounded slice of the input.
        if len(self.message) > MAX_MESSAGE:
            self.message = clip(self.message, MAX_MESSAGE)
        if len(self.file) > MAX_MESSAGE:
            self.file = clip(self.file, MAX_MESSAGE)

    def where(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}"
        if self.pointer is not None:
            return f"{self.file}#{self.pointer}"
        return self.file

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"


class FormatError(Exception):
    """A source cannot be read; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems[:5]))


class Source(Protocol):
    """Read-only view of a delivery's files (a checked zip or a directory)."""

    def names(self) -> list[str]: ...

    def open(self, name: str) -> BinaryIO: ...


@dataclass
class Parsed:
    """What a reader returns: the schema it found and streams of items and labels.

    ``items`` and ``labels`` are iterators so a reader never needs to hold the whole
    delivery; ``problems`` collects what the reader found along the way (it is complete
    once both iterators are exhausted).
    """

    format: str
    categories: list[CategoryDef]
    items: Iterator[ItemRecord]
    labels: Iterator[LabelRecord]
    problems: list[Problem] = field(default_factory=list)


# What JSON gives: ints and floats of exactly these types take the fast path of _finite.
_PLAIN_NUMBERS = frozenset((int, float))


def _finite(values) -> bool:
    """Every value a finite int or float (a bool is not a number here).

    The check runs on every coordinate of every label (1.7 M values for 50k polygons), so the common
    case -- plain ints and floats -- is done by two C loops with no Python frame per value; any other
    type (a bool, a str, a float subclass) takes the reference path, value by value. Both give the same
    answer (tests hold them equal). An int past a float's range (JSON allows ``1`` and 400 zeros) is
    not finite: math.isfinite raised OverflowError on it, which ended the ingest as an internal error.
    """
    try:
        if _PLAIN_NUMBERS.issuperset(map(type, values)):
            return all(map(math.isfinite, values))
        return _finite_each(values)
    except OverflowError:
        return False


def _finite_each(values) -> bool:
    """The reference of _finite: value by value."""
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _outside(values, low: float, high: float) -> bool:
    """Is any of these finite numbers below ``low`` or above ``high``? (min and max run in C)"""
    return bool(values) and (min(values) < low or max(values) > high)


def _flat_outside(flat: list, bounds: tuple | None) -> bool:
    """Is a point of a finite ``[x1, y1, x2, y2, ...]`` past ``bounds`` (right, bottom) or the tolerance?"""
    return bounds is not None and (
        _outside(flat[0::2], -EDGE_TOLERANCE, bounds[0]) or _outside(flat[1::2], -EDGE_TOLERANCE, bounds[1])
    )


def box_ring(box: list[float]) -> list[float]:
    """The rectangle of an ``[x, y, w, h]`` box as one polygon ring, clockwise from top-left
    (what the COCO writer gives a box-only annotation as segmentation, and the reader recognises)."""
    x, y, w, h = box
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def bbox_of(geometry: dict) -> list[float] | None:
    """The tight [x, y, w, h] box of a geometry, from whichever part it has."""
    if "bbox" in geometry:
        return list(geometry["bbox"])
    xs: list[float] = []
    ys: list[float] = []
    for ring in geometry.get("polygons", []):
        xs += ring[0::2]
        ys += ring[1::2]
    if "points" in geometry:
        xs += geometry["points"][0::2]
        ys += geometry["points"][1::2]
    if "cuboid" in geometry:
        xs += geometry["cuboid"][0::2]
        ys += geometry["cuboid"][1::2]
    if "keypoints" in geometry:
        kp = geometry["keypoints"]
        for i in range(0, len(kp), 3):
            if kp[i + 2] > 0:
                xs.append(kp[i])
                ys.append(kp[i + 1])
    if not xs:
        return None
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def polygon_area(ring: list[float]) -> float:
    """Shoelace area of one flat [x1, y1, x2, y2, ...] ring."""
    xs, ys = ring[0::2], ring[1::2]
    n = len(xs)
    s = 0.0
    for i in range(n):
        j = (i + 1) % n
        s += xs[i] * ys[j] - xs[j] * ys[i]
    return abs(s) / 2.0


# One shape's size, whatever the format: a million-point polygon is no annotation, and every
# check, the database row, the ledger event and each export would pay for it (37 s for one).
MAX_SHAPE_POINTS = 20_000  # points of one polygon ring or polyline
MAX_RINGS = 1_000  # polygons of one label
MAX_KEYPOINTS = 1_000  # keypoints of one label


def _too_many_points(geometry: dict) -> str | None:
    """Why this geometry is too big to check (looked at before any per-value work), or None."""
    polygons = geometry.get("polygons")
    if isinstance(polygons, list):
        if len(polygons) > MAX_RINGS:
            return f"{len(polygons)} polygons in one label: at most {MAX_RINGS}"
        for ring in polygons:
            if isinstance(ring, list) and len(ring) > 2 * MAX_SHAPE_POINTS:
                return f"a polygon of {len(ring) // 2} points: at most {MAX_SHAPE_POINTS} per shape"
    points = geometry.get("points")
    if isinstance(points, list) and len(points) > 2 * MAX_SHAPE_POINTS:
        return f"a polyline of {len(points) // 2} points: at most {MAX_SHAPE_POINTS} per shape"
    keypoints = geometry.get("keypoints")
    if isinstance(keypoints, list) and len(keypoints) > 3 * MAX_KEYPOINTS:
        return f"{len(keypoints) // 3} keypoints in one label: at most {MAX_KEYPOINTS}"
    return None


def validate_geometry(geometry_type: str, geometry: dict, width: int | None, height: int | None) -> list[str]:
    """Every reason this geometry is not acceptable for an image of this size (empty if fine).

    Called for every part of every label (twice per COCO polygon annotation), so the common parts'
    checks are written out without helper frames; the messages and their order are the reference's
    (tests/marketplace/formats/test_geometry_fast_path.py holds a copy of it and compares them).
    """
    if geometry_type not in GEOMETRY_TYPES:
        return [f"unknown geometry type {geometry_type!r}"]
    part = PRIMARY_PART[geometry_type]
    if part and part not in geometry:
        return [f"{geometry_type} label has no {part!r}"]
    too_big = _too_many_points(geometry)
    if too_big:
        return [too_big]
    errors: list[str] = []
    # The bounds a coordinate may reach (EDGE_TOLERANCE past each edge); None: the size is unknown.
    bounds = None if width is None or height is None else (width + EDGE_TOLERANCE, height + EDGE_TOLERANCE)
    if "bbox" in geometry:
        b = geometry["bbox"]
        if not (isinstance(b, (list, tuple)) and len(b) == 4 and _finite(b)):
            errors.append("bbox must be four numbers [x, y, w, h]")
        elif b[2] <= 0 or b[3] <= 0:
            errors.append(f"bbox has zero or negative size (w={b[2]}, h={b[3]})")
        elif bounds is not None:
            x0, y0, x1, y1 = b[0], b[1], b[0] + b[2], b[1] + b[3]
            right, bottom = bounds
            if (
                x0 < -EDGE_TOLERANCE or x0 > right or x1 < -EDGE_TOLERANCE or x1 > right
                or y0 < -EDGE_TOLERANCE or y0 > bottom or y1 < -EDGE_TOLERANCE or y1 > bottom
            ):  # fmt: skip
                errors.append(f"bbox lies outside the {width}x{height} image")
    polygons = geometry.get("polygons", [])
    for ring in polygons if isinstance(polygons, list) else [None]:
        if not (isinstance(ring, list) and len(ring) >= 6 and len(ring) % 2 == 0 and _finite(ring)):
            errors.append("each polygon needs at least 3 points as [x1, y1, x2, y2, ...]")
            break
        if _flat_outside(ring, bounds):
            errors.append(f"polygon lies outside the {width}x{height} image")
    if "points" in geometry:
        pts = geometry["points"]
        if not (isinstance(pts, list) and len(pts) >= 4 and len(pts) % 2 == 0 and _finite(pts)):
            errors.append("a polyline needs at least 2 points as [x1, y1, x2, y2, ...]")
        elif _flat_outside(pts, bounds):
            errors.append(f"polyline lies outside the {width}x{height} image")
    if "cuboid" in geometry:
        c = geometry["cuboid"]
        if not (isinstance(c, list) and len(c) == 16 and _finite(c)):
            errors.append("a 2D cuboid needs 8 corners (16 numbers)")
        elif _flat_outside(c, bounds):
            errors.append(f"cuboid lies outside the {width}x{height} image")
    if "keypoints" in geometry:
        _check_keypoints(geometry["keypoints"], bounds, width, height, errors)
    if "rle" in geometry:
        rle = geometry["rle"]
        if not (isinstance(rle, dict) and "size" in rle and "counts" in rle):
            errors.append("mask RLE needs 'size' [h, w] and 'counts'")
        elif width is not None and height is not None and list(rle["size"]) != [height, width]:
            errors.append(f"mask size {rle['size']} does not match the image ({height}x{width}, as [h, w])")
    if "cuboid_3d" in geometry:
        c3 = geometry["cuboid_3d"]
        ok = isinstance(c3, dict) and all(
            isinstance(c3.get(k), list) and len(c3[k]) == 3 and _finite(c3[k])
            for k in ("position", "dimensions", "rotation")
        )
        if not ok:
            errors.append("a 3D cuboid needs position, dimensions and rotation, three numbers each")
        elif any(d <= 0 for d in c3["dimensions"]):
            errors.append("a 3D cuboid's dimensions must be positive")
    return errors


def polygon_fits(bbox, rings, width: int | None, height: int | None) -> bool:
    """``not validate_geometry(POLYGON, {"bbox": bbox, "polygons": rings}, width, height)``, in fewer steps.

    The COCO reader asks this of most annotations (a box and its rings): with a box of four plain ints
    or floats and rings that are lists of them, the checks are written out here, with no dict, no
    message and no helper frame per ring; anything else -- another type anywhere, a shape past the
    size limits, an int past a float's range -- is answered by validate_geometry itself, so the answer
    is always its answer (tests/marketplace/formats/test_geometry_fast_path.py holds them equal).
    """
    if not (type(bbox) is list and len(bbox) == 4 and type(rings) is list and len(rings) <= MAX_RINGS):
        return not validate_geometry(POLYGON, {"bbox": bbox, "polygons": rings}, width, height)
    low = -EDGE_TOLERANCE
    try:
        if not _PLAIN_NUMBERS.issuperset(map(type, bbox)):
            return not validate_geometry(POLYGON, {"bbox": bbox, "polygons": rings}, width, height)
        x, y, w, h = bbox
        if not all(map(math.isfinite, bbox)) or w <= 0 or h <= 0:
            return False
        bounded = width is not None and height is not None
        if bounded:
            right, bottom = width + EDGE_TOLERANCE, height + EDGE_TOLERANCE
            if not (
                low <= x <= right and low <= x + w <= right and low <= y <= bottom and low <= y + h <= bottom
            ):
                return False
        for ring in rings:
            if not (
                type(ring) is list
                and 6 <= len(ring) <= 2 * MAX_SHAPE_POINTS
                and not len(ring) % 2
                and _PLAIN_NUMBERS.issuperset(map(type, ring))
            ):
                return not validate_geometry(POLYGON, {"bbox": bbox, "polygons": rings}, width, height)
            if not all(map(math.isfinite, ring)):
                return False
            if bounded:
                xs, ys = ring[0::2], ring[1::2]
                if min(xs) < low or max(xs) > right or min(ys) < low or max(ys) > bottom:
                    return False
    except OverflowError:  # an int past a float's range: validate_geometry says what it is
        return not validate_geometry(POLYGON, {"bbox": bbox, "polygons": rings}, width, height)
    return True


def _check_keypoints(kp, bounds: tuple | None, width, height, errors: list[str]) -> None:
    """validate_geometry's keypoints part."""
    if not (isinstance(kp, list) and len(kp) % 3 == 0 and kp and _finite(kp)):
        errors.append("keypoints must be [x1, y1, v1, ...] triples")
    elif any(v not in (0, 1, 2) for v in kp[2::3]):
        errors.append("keypoint visibility must be 0, 1 or 2")
    elif bounds is not None:
        labelled = [i for i in range(0, len(kp), 3) if kp[i + 2] > 0]
        xs, ys = [kp[i] for i in labelled], [kp[i + 1] for i in labelled]
        if _outside(xs, -EDGE_TOLERANCE, bounds[0]) or _outside(ys, -EDGE_TOLERANCE, bounds[1]):
            errors.append(f"keypoint lies outside the {width}x{height} image")
