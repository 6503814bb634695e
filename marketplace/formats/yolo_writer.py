"""Write the neutral model as YOLO in the Ultralytics layout: detect, segment or pose.

Layout::

    data.yaml                  names (index -> name), train/val/test, and for pose kpt_shape,
                               flip_idx and kpt_names; no ``path`` key, so Ultralytics reads the
                               folders relative to the YAML itself
    images/<split>/<name>      the images, when the export has them
    labels/<split>/<stem>.txt  one per image, written even when empty (a background image)
    provenance.jsonl           who made each row, keyed "labels/<split>/<stem>.txt:<line>"

Class indices are 0-based and contiguous in the schema's category order; the mapping to the
original category ids is written in ``data.yaml`` (a comment) and in the export's notes.

Rows pass Ultralytics' ``verify_image_label`` (ultralytics/data/utils.py):

- detect ``c cx cy w h``; segment ``c x1 y1 ... xn yn`` (3 points or more); pose
  ``c cx cy w h`` then K triplets ``px py v`` (an unlabelled keypoint is ``0 0 0``);
- every coordinate normalised and inside 0..1: what sticks out of the image is clipped, and
  counted in the notes when that moves it by more than a tenth of a pixel;
- a file never mixes box and segment rows (Ultralytics would read a box row in a segment file
  as a 2-point polygon), so in a segment export a box is written as its 4-corner polygon;
- no duplicate rows (Ultralytics drops them silently; we drop them and say so);
- decimals written without exponent (datumaro's importer refuses ``1e-05``).

The task decides what each label kind becomes (all conversions are in the notes):

==============  =====================  =======================  ===========================
label           detect                 segment                  pose
==============  =====================  =======================  ===========================
bbox            box                    4-corner polygon         box, no keypoints (0 0 0)
polygon         its box                polygon (rings joined)   its box, no keypoints
mask            its box                traced outline polygon   its box, no keypoints
keypoints       its box                4-corner polygon         box and keypoints
polyline        its box                4-corner polygon         its box, no keypoints
cuboid_2d       box of the corners     4-corner polygon         its box, no keypoints
cuboid_3d       dropped (no image geometry)
classification  dropped (YOLO detect/segment/pose label files have no image-level class)
==============  =====================  =======================  ===========================

A polygon with several parts (or a mask with several blobs) becomes one row: the parts are
joined by zero-width bridges, as Ultralytics' own COCO converter does (``merge_multi_segment``).
Mask outlines are traced along pixel edges and simplified (Douglas-Peucker, 1.5 pixels).
"""

from __future__ import annotations

import json
import math
import posixpath
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
from pycocotools import mask as mask_utils

from . import model
from .model import CategoryDef, ItemRecord, LabelRecord, bbox_of
from .writing import (
    NameAllocator,
    Notes,
    Sink,
    fmt_number,
    opened_image,
    provenance_line,
    relative_image_name,
    split_folder,
)
from .yolo import label_key_for

DETECT, SEGMENT, POSE = "detect", "segment", "pose"
TASKS = (DETECT, SEGMENT, POSE)
SIMPLIFY_EPSILON = 1.5  # pixels: outlines along pixel edges are staircases; this straightens them
CLIP_NOTE_PIXELS = 0.1
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def choose_task(categories: list[CategoryDef], kinds: Iterable[str]) -> str:
    """The task an export defaults to: pose if there are keypoints, segment if shapes, else detect."""
    kinds = set(kinds)
    if model.KEYPOINTS in kinds and any(c.keypoints for c in categories):
        return POSE
    if kinds & {model.POLYGON, model.MASK}:
        return SEGMENT
    return DETECT


# --------------------------------------------------------------------------- mask outlines


def _trace(mask: np.ndarray, row: int, col: int) -> list[tuple[int, int]]:
    """The outer outline of the blob whose top-left pixel is (row, col), along pixel edges.

    Walks the corners of the pixel grid keeping the blob on its right (clockwise on screen),
    turning left whenever the pixel ahead-left is set, so diagonal neighbours stay in the blob
    (8-connectivity). Returns the corners where it turns, as (x, y).
    """
    h, w = mask.shape

    def fg(x: float, y: float) -> bool:
        c, r = math.floor(x), math.floor(y)
        return 0 <= r < h and 0 <= c < w and bool(mask[r, c])

    start = (col, row)
    x, y = start
    dx, dy = 1, 0
    corners: list[tuple[int, int]] = []
    while True:
        x, y = x + dx, y + dy
        # The two pixels in front of the corner, left and right of the direction of travel.
        lx, ly = dy, -dx
        ahead_left = fg(x + 0.5 * dx + 0.5 * lx, y + 0.5 * dy + 0.5 * ly)
        ahead_right = fg(x + 0.5 * dx - 0.5 * lx, y + 0.5 * dy - 0.5 * ly)
        if ahead_left:
            ndx, ndy = lx, ly
        elif ahead_right:
            ndx, ndy = dx, dy
        else:
            ndx, ndy = -lx, -ly
        if (ndx, ndy) != (dx, dy):
            corners.append((x, y))
        dx, dy = ndx, ndy
        if (x, y) == start and (dx, dy) == (1, 0):
            break
    return corners


def _simplify(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Douglas-Peucker on an open polyline (iterative: outlines can be long)."""
    keep = np.zeros(len(points), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        seg = points[b] - points[a]
        rel = points[a + 1 : b] - points[a]
        norm = math.hypot(*seg)
        if norm == 0:
            dist = np.hypot(rel[:, 0], rel[:, 1])
        else:
            dist = np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / norm
        i = int(dist.argmax())
        if dist[i] > epsilon:
            keep[a + 1 + i] = True
            stack += [(a, a + 1 + i), (a + 1 + i, b)]
    return points[keep]


def mask_outlines(rle: dict, *, epsilon: float = SIMPLIFY_EPSILON) -> list[list[float]]:
    """Outer outlines of every blob of a COCO RLE mask, as flat [x1, y1, ...] rings (holes ignored)."""
    coded = {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}
    mask = mask_utils.decode(coded).astype(bool)
    h, w = mask.shape
    rings: list[list[float]] = []
    while mask.any():
        flat = int(np.argmax(mask))  # the first set pixel in row order: a top-left of its blob
        row, col = divmod(flat, w)
        corners = _trace(mask, row, col)
        # Remove this blob: rasterise its outline exactly as COCO does (corner coordinates).
        ring = [float(v) for xy in corners for v in xy]
        blob = mask_utils.decode(mask_utils.frPyObjects([ring], h, w))[:, :, 0].astype(bool)
        if not (blob & mask).any():  # cannot happen for a traced outline; never loop forever
            break
        mask &= ~blob
        pts = np.array(corners + [corners[0]], dtype=float)
        # Split the closed outline at its farthest point so Douglas-Peucker sees two open halves.
        far = int(np.hypot(*(pts - pts[0]).T).argmax())
        simplified = np.vstack([_simplify(pts[: far + 1], epsilon)[:-1], _simplify(pts[far:], epsilon)[:-1]])
        if len(simplified) < 3:
            simplified = pts[:-1]
        rings.append([float(v) for v in simplified.ravel()])
    return rings


def join_rings(rings: list[list[float]]) -> list[float]:
    """One ring from several, joined by zero-width bridges at their closest vertices."""
    path = [(ring[i], ring[i + 1]) for ring in rings[:1] for i in range(0, len(ring), 2)]
    for ring in rings[1:]:
        pts = [(ring[i], ring[i + 1]) for i in range(0, len(ring), 2)]
        a = np.array(path)
        b = np.array(pts)
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        loop = pts[j:] + pts[:j] + [pts[j]]
        path = path[: i + 1] + loop + path[i:]
    return [v for xy in path for v in xy]


# --------------------------------------------------------------------------- the writer


@dataclass
class YoloSummary:
    task: str = DETECT
    images: int = 0
    rows: int = 0
    splits: list[str] = field(default_factory=list)
    class_index: dict[str, int] = field(default_factory=dict)


class _Writer:
    def __init__(
        self,
        sink: Sink,
        categories: list[CategoryDef],
        notes: Notes,
        task: str,
        flip_idx: list[int] | None,
        image_source,
    ):
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}")
        self.sink = sink
        self.notes = notes
        self.task = task
        self.image_source = image_source
        self.categories = categories
        self.index = {c.name: i for i, c in enumerate(categories)}
        self.class_text = {name: str(i) for name, i in self.index.items()}
        self.holds = {DETECT: (model.BBOX,), POSE: (model.BBOX, model.KEYPOINTS), SEGMENT: ()}[task]
        self.pose_category = next((c for c in categories if c.keypoints), None) if task == POSE else None
        self.k = len(self.pose_category.keypoints) if self.pose_category else 0
        self.flip_idx = flip_idx if flip_idx and len(flip_idx) == self.k else None
        if task == POSE and self.pose_category is None:
            raise ValueError("a pose export needs a category with keypoints")
        self.names = NameAllocator()
        self.splits: set[str] = set()
        self.summary = YoloSummary(task=task, class_index=dict(self.index))
        self.provenance = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        self.provenance.close()

    # -- rows ------------------------------------------------------------------------------

    def note(self, code: str, detail: str, label: LabelRecord) -> None:
        self.notes.add(code, detail, kind=label.geometry_type, category=label.category)

    def box_of(self, label: LabelRecord) -> list[float] | None:
        g = label.geometry
        if "bbox" in g:
            return [float(v) for v in g["bbox"]]
        if "rle" in g:
            coded = {"size": list(g["rle"]["size"]), "counts": g["rle"]["counts"].encode("ascii")}
            return [float(v) for v in mask_utils.toBbox(coded)]
        box = bbox_of(g)
        if box is None:
            return None
        x, y, w, h = box
        return [x, y, max(w, 1.0), max(h, 1.0)]

    def clip(self, values: list[float], sizes: tuple[int, int], label: LabelRecord) -> list[float]:
        """Pixel (x, y) pairs, clipped into the image."""
        out = []
        moved = 0.0
        for i, v in enumerate(values):
            size = sizes[i % 2]
            c = min(max(v, 0.0), float(size))
            moved = max(moved, abs(c - v))
            out.append(c)
        if moved > CLIP_NOTE_PIXELS:
            self.note("clipped", "coordinates outside the image clipped to its edge (YOLO holds 0..1)", label)
        return out

    def box_row(self, label: LabelRecord, box: list[float], width: int, height: int) -> list[str] | None:
        # The hot path of detect and pose exports: clip inline rather than through clip().
        x, y, w, h = box
        x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        if max(x1 - x, y1 - y, x + w - x2, y + h - y2) > CLIP_NOTE_PIXELS:
            self.note("clipped", "coordinates outside the image clipped to its edge (YOLO holds 0..1)", label)
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            self.note("dropped", "box outside the image or empty after clipping", label)
            return None
        return [
            f"{(x1 + x2) / 2 / width:.6f}",
            f"{(y1 + y2) / 2 / height:.6f}",
            f"{(x2 - x1) / width:.6f}",
            f"{(y2 - y1) / height:.6f}",
        ]

    def segment_row(self, label: LabelRecord, width: int, height: int) -> list[str] | None:
        g = label.geometry
        kind = label.geometry_type
        if g.get("polygons"):
            rings = [list(r) for r in g["polygons"]]
        elif "rle" in g:
            rings = mask_outlines(g["rle"])
            self.note(
                "converted", "mask written as its traced outline (within 1.5 px; holes left out)", label
            )
        else:
            box = self.box_of(label)
            if box is None:
                return None
            x, y, w, h = box
            rings = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            self.note(
                "converted",
                f"{kind.replace('_', ' ')} written as its box's 4-corner polygon (a segment file cannot "
                "mix box and segment rows)",
                label,
            )
        rings = [r for r in rings if len(r) >= 6]
        if not rings:
            self.note("dropped", "polygon with fewer than 3 points", label)
            return None
        if len(rings) > 1:
            self.note("converted", "a multi-part polygon joined into one ring by zero-width bridges", label)
        ring = self.clip(join_rings(rings) if len(rings) > 1 else rings[0], (width, height), label)
        return [fmt_number(v / (width if i % 2 == 0 else height)) for i, v in enumerate(ring)]

    def keypoint_columns(self, label: LabelRecord, width: int, height: int) -> list[str]:
        kp = label.geometry.get("keypoints")
        if kp is None or label.category != self.pose_category.name:
            if kp is not None:
                self.note("dropped", "keypoints of a second skeleton: YOLO pose holds one kpt_shape", label)
            return ["0"] * (3 * self.k)
        if len(kp) != 3 * self.k:
            self.note("dropped", "keypoints that do not match the category's keypoint count", label)
            return ["0"] * (3 * self.k)
        cols = []
        for i in range(0, len(kp), 3):
            x, y, v = kp[i], kp[i + 1], int(kp[i + 2])
            if v == 0:
                cols += ["0", "0", "0"]
                continue
            cx, cy = self.clip([x, y], (width, height), label)
            cols += [fmt_number(cx / width), fmt_number(cy / height), str(v)]
        return cols

    def row(self, label: LabelRecord, width: int, height: int) -> str | None:
        kind = label.geometry_type
        if kind == model.CLASSIFICATION:
            self.note("dropped", "YOLO detect, segment and pose labels have no image-level class", label)
            return None
        if kind == model.CUBOID_3D and "bbox" not in label.geometry:
            self.note("dropped", "a 3D cuboid has no geometry in the image plane", label)
            return None
        cls = self.class_text[label.category]
        if self.task == SEGMENT:
            cols = self.segment_row(label, width, height)
        else:
            box = self.box_of(label)
            if box is None:
                self.note("dropped", f"{kind.replace('_', ' ')} without an image box", label)
                return None
            cols = self.box_row(label, box, width, height)
            if cols is None:
                return None
            if kind not in self.holds:
                self.note("converted", f"{kind.replace('_', ' ')} written as its box", label)
            if self.task == POSE:
                if kind != model.KEYPOINTS:
                    self.note(
                        "info", "labels without keypoints are pose rows whose keypoints are all 0 0 0", label
                    )
                cols += self.keypoint_columns(label, width, height)
        if cols is None:
            return None
        return " ".join([cls, *cols])

    # -- one image -------------------------------------------------------------------------

    def add(self, item: ItemRecord, labels: list[LabelRecord]) -> None:
        folder = split_folder(item.split)
        self.splits.add(folder)
        # Unique by stem: a.jpg and a.png would otherwise share labels/<split>/a.txt.
        stem, ext = posixpath.splitext(relative_image_name(item.key, item.split))
        rel = self.names.allocate(f"{folder}/{stem}") + ext
        with opened_image(self.image_source, item) as stream:
            if stream is not None:
                self.sink.copy_from(f"images/{rel}", stream)
        # Ultralytics' own rule (the last /images/ becomes /labels/), also for keys holding "images/".
        label_file = label_key_for(f"images/{rel}")
        lines: list[str] = []
        seen: set[str] = set()
        for label in labels:
            line = self.row(label, item.width, item.height)
            if line is None:
                continue
            if line in seen:
                self.note("dropped", "duplicate row (Ultralytics would drop it too)", label)
                continue
            seen.add(line)
            lines.append(line)
            self.provenance.write((provenance_line(f"{label_file}:{len(lines)}", label) + "\n").encode())
        self.sink.write(label_file, "".join(f"{line}\n" for line in lines).encode())
        self.summary.images += 1
        self.summary.rows += len(lines)

    # -- data.yaml -------------------------------------------------------------------------

    def finish(self, dataset_name: str) -> YoloSummary:
        order = sorted(self.splits, key=lambda n: (SPLIT_ORDER.get(n, 9), n))
        self.summary.splits = order
        lines = [
            f"# {dataset_name}" if dataset_name else "# YOLO export",
            "# class index: category (original id)",
        ]
        for c in self.categories:
            lines.append(
                f"#   {self.index[c.name]}: {c.name} ({c.source_id if c.source_id is not None else '-'})"
            )
        train = [f"images/{s}" for s in order if s in ("train", "default")] or [f"images/{s}" for s in order]
        val = [f"images/{s}" for s in order if s == "val"]
        if not val and train:
            val = train[:1]
            self.notes.add("info", f"no val split: val points at {val[0]} (Ultralytics needs one)")
        if "default" in order:
            self.notes.add("info", "images without a split are in images/default, listed under train")

        def paths(values: list[str]) -> str:
            return json.dumps(values[0]) if len(values) == 1 else json.dumps(values)

        lines.append(f"train: {paths(train)}")
        lines.append(f"val: {paths(val)}")
        if "test" in order:
            lines.append('test: "images/test"')
        lines.append("names:")
        for c in self.categories:
            lines.append(f"  {self.index[c.name]}: {json.dumps(c.name, ensure_ascii=False)}")
        if self.task == POSE:
            lines.append(f"kpt_shape: [{self.k}, 3]")
            if self.flip_idx:
                lines.append(f"flip_idx: {json.dumps(list(self.flip_idx))}")
            names = json.dumps(list(self.pose_category.keypoints), ensure_ascii=False)
            lines.append(f"kpt_names:\n  {self.index[self.pose_category.name]}: {names}")
        self.sink.write("data.yaml", ("\n".join(lines) + "\n").encode())
        mapping = ", ".join(
            f"{self.index[c.name]}={c.name}" + (f" (id {c.source_id})" if c.source_id is not None else "")
            for c in self.categories
        )
        self.notes.add("info", f"YOLO class indices are 0-based and contiguous: {mapping}")
        self.provenance.seek(0)
        with self.sink.open("provenance.jsonl") as out:
            for line in self.provenance:
                out.write(line)
        return self.summary


def write_yolo(
    sink: Sink,
    records: Iterable[tuple[ItemRecord, list[LabelRecord]]],
    *,
    categories: list[CategoryDef],
    notes: Notes,
    task: str = DETECT,
    flip_idx: list[int] | None = None,
    image_source: Callable[[ItemRecord], BinaryIO] | None = None,
    dataset_name: str = "",
) -> YoloSummary:
    """Write records in the Ultralytics YOLO layout for one task (detect, segment or pose)."""
    writer = _Writer(sink, categories, notes, task, flip_idx, image_source)
    try:
        for item, labels in records:
            writer.add(item, labels)
        return writer.finish(dataset_name)
    finally:
        writer.close()
