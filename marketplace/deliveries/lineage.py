"""Label lineage: a new delivery's labels are matched to the labels of the version it replaces.

A supplier fixes labels in their annotation tool and delivers the whole export again. Each label
of the new delivery is matched to a label of the previous version, in this order, and the first
match wins:

1. **uid** -- the label's own uid (ours, written by our COCO export, or derived from a Label
   Studio id), equal to a previous label's uid.
2. **source id** -- the source tool's own id of the annotation (COCO annotation id, CVAT shape
   id when the export has one, Label Studio result id), scoped by the item: a pair counts when it
   is *consistent* (same class, or geometry close by the kind's threshold). When fewer than half
   of the pairs that share an id have close geometry, the delivery's ids are taken as renumbered
   and none is used (CVAT renumbers between exports, and a renumbering within one class would
   otherwise pass for consistent).
3. **geometry** -- per item, class and geometry kind (and per annotator, for candidate labels),
   the optimal one-to-one matching that maximises the summed similarity among pairs at or above
   the kind's threshold: IoU for boxes and 2D cuboids, mask IoU for polygons and masks, OKS for
   keypoints, distance for polylines, single points and 3D cuboids.
4. **relabel** -- per item and kind, the same geometry (similarity >= ``relabel``) under another
   class: the same label, modified.

A matched label keeps the previous label's uid. Everything is columns of NumPy arrays: pairs come
from sorted keys (``cross_pairs``), similarities are computed for all pairs of a kind at once, and
only groups where one label has two candidates above the threshold go through the Hungarian
solver, one small problem each. No Python loop runs per pair of labels; mask IoU makes one
pycocotools call per new label that still has candidates.

The numeric kernel (``box_iou``, ``keypoint_similarity``, ``cross_pairs``, ``match_optimal``) is
``marketplace.formats.matching``, shared with governance's agreement measures.

Ingest matches in bounded memory (``match_delivery``): both sides are written to disk by buckets of
whole items (``_Buckets``), and the per-item passes run bucket by bucket; per label only its uid, the
previous label's primary key and the match stay in memory. ``match_labels`` is the same passes on two
sides in memory, as one bucket.

The Django half of the module (at the end) loads the previous version, rewrites the uids of the
spooled rows and yields the ledger events: ``modified`` with before and after for a changed label,
nothing for an unchanged one, ``created`` for a new one, ``deleted`` for a vanished one.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pickle
import tempfile
import types
import uuid
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import orjson
from pycocotools import mask as mask_utils

from ..formats import model as fmt
from ..formats.matching import box_iou, boxes_of, cross_pairs, keypoint_similarity, match_optimal

# How a new label found its previous self (``Matches.method``).
NEW, BY_UID, BY_SOURCE_ID, BY_GEOMETRY, BY_RELABEL = 0, 1, 2, 3, 4
METHOD_NAMES = {BY_UID: "uid", BY_SOURCE_ID: "source_id", BY_GEOMETRY: "geometry", BY_RELABEL: "relabel"}

IOU_KINDS = (fmt.BBOX, fmt.CUBOID_2D)
MASK_KINDS = (fmt.POLYGON, fmt.MASK)
# Kinds whose geometry the matcher needs beyond the enclosing box.
GEOMETRY_KINDS = frozenset({fmt.POLYGON, fmt.MASK, fmt.KEYPOINTS, fmt.CUBOID_3D})

# COCO's per-keypoint OKS sigmas for its 17 person keypoints (cocoeval.py, Params.setKpParams).
COCO_PERSON_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)
DEFAULT_SIGMA = float(COCO_PERSON_SIGMAS.mean())
# Keypoint sets whose box is smaller than this (in px^2) are compared by distance: OKS divides by
# the area, so on a single point it would refuse a one-pixel nudge.
MIN_OKS_AREA = 16.0
# The delivery ids are trusted when at least this share of the pairs they make are consistent.
SOURCE_ID_TRUST = 0.5
EXAMPLES = 10


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Thresholds:
    """Per-kind thresholds; a supplier may set any of them per delivery.

    The defaults catch a nudged box (a 1 px shift of a 10x8 box is IoU ~0.8) and refuse a
    different object (two boxes that overlap by half of their union are not the same object).
    """

    iou: float = 0.5  # boxes, 2D cuboids, polygons, masks: IoU at or above
    oks: float = 0.5  # keypoints: OKS at or above
    distance: float = 8.0  # polylines and single points: pixels, at most
    distance_3d: float = 0.5  # 3D cuboids: metres between centres, at most
    relabel: float = 0.9  # the relabel pass: similarity at or above (same geometry, other class)

    LIMITS = {
        "iou": (0.0, 1.0),
        "oks": (0.0, 1.0),
        "distance": (0.0, 10_000.0),
        "distance_3d": (0.0, 1_000.0),
        "relabel": (0.0, 1.0),
    }

    @classmethod
    def parse(cls, options: dict | None) -> Thresholds:
        """Thresholds from a supplier's JSON object; ValueError names the first bad one."""
        if options is None:
            return cls()
        if not isinstance(options, dict):
            raise ValueError("thresholds must be a JSON object")
        unknown = sorted(set(options) - set(cls.LIMITS))
        if unknown:
            names = ", ".join(repr(str(n)[:40]) for n in unknown[:5])
            raise ValueError(f"unknown threshold(s) {names}; known: {', '.join(cls.LIMITS)}")
        values = {}
        for name, value in options.items():
            lo, hi = cls.LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"threshold {name} must be a number")
            if not lo < value <= hi:
                raise ValueError(f"threshold {name} must be in ({lo:g}, {hi:g}]")
            values[name] = float(value)
        return cls(**values)

    def as_dict(self) -> dict:
        return asdict(self)

    def for_kind(self, kind: str) -> float:
        """The similarity threshold of a kind (distances are turned into similarities, see below)."""
        if kind in IOU_KINDS or kind in MASK_KINDS:
            return self.iou
        if kind == fmt.KEYPOINTS:
            return self.oks
        return 0.5  # distance kinds: similarity 1 - d / (2 D) >= 0.5  <=>  d <= D


# --------------------------------------------------------------------------- labels as columns


@dataclass
class Side:
    """One side of the matching (the previous version, or the delivery) as columns; row i is one label.

    ``geometry`` holds each label's geometry dict for the kinds in GEOMETRY_KINDS (None elsewhere is
    fine); ``height``/``width`` are its image's size (polygons are rasterised at it).
    """

    uid: np.ndarray  # S16: uuid bytes
    item: np.ndarray  # str
    category: np.ndarray  # str
    kind: np.ndarray  # str
    group: np.ndarray  # str: "" for final labels, the annotator for candidates
    source_id: np.ndarray  # str, "" when the source has none
    boxes: np.ndarray  # (n, 4) enclosing [x, y, w, h], NaN when none
    geometry: list
    height: np.ndarray
    width: np.ndarray
    has_uid: np.ndarray | None = None  # new side: the uid is the source's own (else a fresh one)

    def __len__(self) -> int:
        return len(self.uid)

    @classmethod
    def from_rows(cls, rows: Iterable[dict]) -> Side:
        """Columns from dicts with uid, item, category, kind, geometry and optional group, source_id,
        has_uid, height, width (tests and small callers)."""
        rows = list(rows)
        geometries = [r.get("geometry") or {} for r in rows]
        return cls(
            uid=uid_array([r["uid"] for r in rows]),
            item=np.array([str(r["item"]) for r in rows], dtype=object),
            category=np.array([str(r["category"]) for r in rows], dtype=object),
            kind=np.array([r["kind"] for r in rows], dtype=object),
            group=np.array([str(r.get("group") or "") for r in rows], dtype=object),
            source_id=np.array([str(r.get("source_id") or "") for r in rows], dtype=object),
            boxes=boxes_of(geometries),
            geometry=geometries,
            height=np.array([int(r.get("height") or 0) for r in rows], dtype=np.int64),
            width=np.array([int(r.get("width") or 0) for r in rows], dtype=np.int64),
            has_uid=np.array([bool(r.get("has_uid", True)) for r in rows], dtype=bool),
        )


def uid_array(uids: Sequence) -> np.ndarray:
    """uuids (or their strings) as a sortable S16 array."""
    return np.array([(u if isinstance(u, uuid.UUID) else uuid.UUID(str(u))).bytes for u in uids], dtype="S16")


@dataclass
class Matches:
    """For each new label: the previous label it continues (-1: none), how, and how similar."""

    old: np.ndarray  # int64, index into the previous side, -1 for a new label
    method: np.ndarray  # int8: NEW, BY_UID, BY_SOURCE_ID, BY_GEOMETRY, BY_RELABEL
    similarity: np.ndarray  # float64, 1.0 for uid and source-id matches
    removed: np.ndarray  # indices of previous labels nobody continues
    source_ids: str = "unused"  # "used", "unused" (none shared), "ignored" (renumbered)
    source_id_pairs: int = 0
    source_id_consistent: int = 0
    thresholds: Thresholds = field(default_factory=Thresholds)

    def counts(self) -> dict:
        counts = {name: int((self.method == code).sum()) for code, name in METHOD_NAMES.items()}
        counts["new"] = int((self.method == NEW).sum())
        counts["removed"] = int(len(self.removed))
        return counts


# --------------------------------------------------------------------------- similarity


def _codes(*columns: np.ndarray) -> list[np.ndarray]:
    """The same integer codes for equal values across several columns."""
    joined = np.concatenate([np.asarray(c, dtype=object).astype(str) for c in columns])
    _, inverse = np.unique(joined, return_inverse=True)
    out, start = [], 0
    for c in columns:
        out.append(inverse[start : start + len(c)].astype(np.int64))
        start += len(c)
    return out


def _distance_similarity(distance: np.ndarray, limit: float) -> np.ndarray:
    """A distance as a similarity in [0, 1] that is 0.5 exactly at the limit (1 at distance 0)."""
    return np.clip(1.0 - distance / (2.0 * limit), 0.0, 1.0)


def similarity(
    old: Side, new: Side, io: np.ndarray, jn: np.ndarray, kind: str, limits: Thresholds
) -> np.ndarray:
    """Similarity in [0, 1] of the pairs (old io[k], new jn[k]), all of geometry kind ``kind``."""
    n = len(io)
    if n == 0:
        return np.zeros(0)
    if kind in IOU_KINDS:
        return np.nan_to_num(box_iou(old.boxes[io], new.boxes[jn]), nan=0.0)  # 0 where a box is missing
    if kind == fmt.POLYLINE:
        edges_old = _corners(old.boxes[io])
        edges_new = _corners(new.boxes[jn])
        shift = np.nan_to_num(np.abs(edges_old - edges_new).max(axis=1), nan=np.inf)
        return _distance_similarity(shift, limits.distance)
    if kind == fmt.CLASSIFICATION:
        return np.ones(n)
    if kind == fmt.CUBOID_3D:
        a = _positions(old, io)
        b = _positions(new, jn)
        return _distance_similarity(
            np.nan_to_num(np.linalg.norm(a - b, axis=1), nan=np.inf), limits.distance_3d
        )
    if kind in MASK_KINDS:
        return _mask_similarity(old, new, io, jn)
    if kind == fmt.KEYPOINTS:
        return _keypoint_similarity(old, new, io, jn, limits)
    return np.zeros(n)


def _corners(boxes: np.ndarray) -> np.ndarray:
    return np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]])


def _positions(side: Side, rows: np.ndarray) -> np.ndarray:
    out = np.full((len(rows), 3), np.nan)
    for k, r in enumerate(rows):  # per label row, not per pair: rows repeat only in crowded groups
        position = ((side.geometry[r] or {}).get("cuboid_3d") or {}).get("position")
        if isinstance(position, list) and len(position) == 3:
            out[k] = position
    return out


def _rle(geometry: dict | None, kind: str, height: int, width: int):
    geometry = geometry or {}
    if kind == fmt.MASK and "rle" in geometry:
        rle = geometry["rle"]
        counts = rle["counts"]
        if isinstance(counts, list):
            return mask_utils.frPyObjects(rle, *rle["size"])
        return {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    rings = [r for r in geometry.get("polygons", []) if len(r) >= 6]
    if not rings or height <= 0 or width <= 0:
        return None
    return mask_utils.merge(mask_utils.frPyObjects(rings, height, width))


def _mask_similarity(old: Side, new: Side, io: np.ndarray, jn: np.ndarray) -> np.ndarray:
    """Mask IoU; pairs whose boxes do not touch score 0 without rasterising, equal geometries 1."""
    out = np.zeros(len(io))
    touching = box_iou(old.boxes[io], new.boxes[jn]) > 0
    missing_box = np.isnan(old.boxes[io, 0]) | np.isnan(new.boxes[jn, 0])  # an RLE-only mask
    todo = np.flatnonzero(touching | missing_box)
    if todo.size == 0:
        return out
    # One pycocotools call per new label with candidates: iou(old masks, [new mask]).
    order = todo[np.argsort(jn[todo], kind="stable")]
    starts = np.flatnonzero(np.r_[True, jn[order][1:] != jn[order][:-1]])
    old_rles: dict[int, object] = {}
    for lo, hi in zip(starts, [*starts[1:], len(order)], strict=True):
        pairs = order[lo:hi]
        j = int(jn[pairs[0]])
        b = _rle(new.geometry[j], str(new.kind[j]), int(new.height[j]), int(new.width[j]))
        if b is None:
            continue
        olds, keep = [], []
        for k in pairs:
            i = int(io[k])
            if old.geometry[i] == new.geometry[j]:
                out[k] = 1.0
                continue
            if i not in old_rles:
                h, w = int(old.height[i]) or int(new.height[j]), int(old.width[i]) or int(new.width[j])
                old_rles[i] = _rle(old.geometry[i], str(old.kind[i]), h, w)
            if old_rles[i] is not None and list(old_rles[i]["size"]) == list(b["size"]):
                olds.append(old_rles[i])
                keep.append(k)
        if olds:
            out[keep] = np.asarray(mask_utils.iou(olds, [b], [0]), dtype=np.float64).reshape(-1)
    return out


def _keypoint_array(side: Side, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    points = [(side.geometry[r] or {}).get("keypoints") or [] for r in rows]
    lengths = {len(p) for p in points}
    if len(lengths) != 1 or 0 in lengths or next(iter(lengths)) % 3:
        return None
    return np.asarray(points, dtype=np.float64).reshape(len(points), -1, 3), side.boxes[rows]


def _keypoint_similarity(
    old: Side, new: Side, io: np.ndarray, jn: np.ndarray, limits: Thresholds
) -> np.ndarray:
    out = np.zeros(len(io))
    # Keypoint sets of different lengths never match; group the pairs by length (a handful of groups).
    length_old = np.array([len((old.geometry[i] or {}).get("keypoints") or []) for i in io])
    length_new = np.array([len((new.geometry[j] or {}).get("keypoints") or []) for j in jn])
    for length in np.unique(length_new[length_old == length_new]):
        sel = np.flatnonzero((length_old == length) & (length_new == length))
        a, b = _keypoint_array(old, io[sel]), _keypoint_array(new, jn[sel])
        if a is None or b is None:
            continue
        (kp_a, box_a), (kp_b, box_b) = a, b
        k = kp_a.shape[1]
        sigmas = COCO_PERSON_SIGMAS if k == len(COCO_PERSON_SIGMAS) else np.full(k, DEFAULT_SIGMA)
        area = np.nan_to_num((box_a[:, 2] * box_a[:, 3] + box_b[:, 2] * box_b[:, 3]) / 2.0, nan=0.0)
        oks = keypoint_similarity(kp_a, kp_b, area, sigmas)
        # Points without an area of their own: the mean distance of the points both labelled.
        both = (kp_a[..., 2] > 0) & (kp_b[..., 2] > 0)
        either = (kp_a[..., 2] > 0) | (kp_b[..., 2] > 0)
        d = np.sqrt(((kp_a[..., :2] - kp_b[..., :2]) ** 2).sum(axis=-1))
        mean_d = np.where(
            both.sum(axis=1) > 0, (d * both).sum(axis=1) / np.maximum(both.sum(axis=1), 1), np.inf
        )
        mean_d = np.where(both.sum(axis=1) == either.sum(axis=1), mean_d, np.inf)
        by_distance = _distance_similarity(mean_d, limits.distance)
        # A distance similarity is compared with 0.5, OKS with limits.oks: rescale so both use oks.
        by_distance = np.where(
            by_distance >= 0.5, limits.oks + (1 - limits.oks) * (by_distance - 0.5) * 2, 0.0
        )
        out[sel] = np.where(area >= MIN_OKS_AREA, oks, by_distance)
    return out


# --------------------------------------------------------------------------- the matching


def match_labels(old: Side, new: Side, *, thresholds: Thresholds | None = None) -> Matches:
    """Match the new labels to the previous ones: uid, source id, geometry, relabel (module docstring).

    Both sides in memory, matched as one chunk; ``match_delivery`` runs the same passes chunk by chunk.
    """
    matching = _Matching(len(old), len(new), thresholds or Thresholds())
    if len(old) and len(new):
        everything_old, everything_new = np.arange(len(old)), np.arange(len(new))
        matching.match_uids(old.uid, new.uid, new.has_uid)
        matching.collect_source_ids(old, new, everything_old, everything_new)
        matching.take_source_ids()
        matching.match_geometry(old, new, everything_old, everything_new)
    return matching.matches()


class _Matching:
    """The state of one matching: which previous label each new one continues, which are taken.

    The uid pass is global (a label keeps its uid wherever it moved); the source-id, geometry and
    relabel passes are per item, so they run on any partition of the labels into whole items
    (``rows_old``/``rows_new``: a chunk's labels, as indices into the whole sides, ascending). The one
    global decision, whether the delivery's source ids are trusted, waits for every chunk's pairs.
    """

    def __init__(self, n_old: int, n_new: int, limits: Thresholds):
        self.limits = limits
        self.old = np.full(n_new, -1, dtype=np.int64)
        self.method = np.zeros(n_new, dtype=np.int8)
        self.similarity = np.zeros(n_new, dtype=np.float64)
        self.taken = np.zeros(n_old, dtype=bool)
        self.source_id_pairs: list[tuple[np.ndarray, np.ndarray]] = []  # consistent pairs (new, old)
        self.pairs = self.consistent = self.close = 0
        self.source_ids = "unused"

    def take(self, jn: np.ndarray, io: np.ndarray, how: int, s) -> None:
        self.old[jn] = io
        self.method[jn] = how
        self.similarity[jn] = s
        self.taken[io] = True

    def match_uids(self, old_uid: np.ndarray, new_uid: np.ndarray, has_uid: np.ndarray | None) -> None:
        """1. uid: a previous label with the very same uid (uids are unique within a version)."""
        if len(old_uid) == 0 or len(new_uid) == 0:
            return
        has_uid = has_uid if has_uid is not None else np.ones(len(new_uid), dtype=bool)
        order = np.argsort(old_uid, kind="stable")
        pos = np.clip(np.searchsorted(old_uid[order], new_uid), 0, len(old_uid) - 1)
        hit = has_uid & (old_uid[order][pos] == new_uid)
        self.take(np.flatnonzero(hit), order[pos[hit]], BY_UID, 1.0)

    def collect_source_ids(self, old: Side, new: Side, rows_old: np.ndarray, rows_new: np.ndarray) -> None:
        """2. source id, scoped by the item, one-to-one: a chunk's pairs, counted for the decision."""
        limits = self.limits
        free_new = np.flatnonzero((self.old[rows_new] < 0) & (new.source_id != ""))
        free_old = np.flatnonzero(~self.taken[rows_old] & (old.source_id != ""))
        if free_new.size == 0 or free_old.size == 0:
            return
        item_old, item_new = _codes(old.item[free_old], new.item[free_new])
        sid_old, sid_new = _codes(old.source_id[free_old], new.source_id[free_new])
        n_sid = int(max(sid_old.max(), sid_new.max())) + 1
        a, b = cross_pairs(item_new * n_sid + sid_new, item_old * n_sid + sid_old)
        unique = (np.bincount(a, minlength=free_new.size)[a] == 1) & (
            np.bincount(b, minlength=free_old.size)[b] == 1
        )
        jn, io = free_new[a[unique]], free_old[b[unique]]
        if len(jn) == 0:
            return
        kind_old, kind_new = _codes(old.kind[io], new.kind[jn])
        cat_old, cat_new = _codes(old.category[io], new.category[jn])
        grp_old, grp_new = _codes(old.group[io], new.group[jn])
        same_kind = kind_new == kind_old
        close = np.zeros(len(jn), dtype=bool)
        for kind in np.unique(new.kind[jn[same_kind]]):
            sel = np.flatnonzero(same_kind & (new.kind[jn] == kind))
            close[sel] = similarity(old, new, io[sel], jn[sel], str(kind), limits) >= limits.for_kind(
                str(kind)
            )
        consistent = same_kind & (grp_new == grp_old) & ((cat_new == cat_old) | close)
        self.pairs += int(len(jn))
        self.consistent += int(consistent.sum())
        self.close += int(close.sum())
        self.source_id_pairs.append((rows_new[jn[consistent]], rows_old[io[consistent]]))

    def take_source_ids(self) -> None:
        """Trust is decided on geometry alone: a tool that renumbers its shapes keeps classes
        plausible (two cars swap ids) but not boxes, while a corrected export keeps most boxes."""
        if self.pairs and self.close >= SOURCE_ID_TRUST * self.pairs:
            self.source_ids = "used"
            for jn, io in self.source_id_pairs:
                self.take(jn, io, BY_SOURCE_ID, 1.0)
        elif self.pairs:
            self.source_ids = "ignored"
        self.source_id_pairs = []

    def match_geometry(self, old: Side, new: Side, rows_old: np.ndarray, rows_new: np.ndarray) -> None:
        """3. geometry, per item + class + kind + group; 4. relabel, per item + kind + group."""
        limits = self.limits
        for how, with_class in ((BY_GEOMETRY, True), (BY_RELABEL, False)):
            free_new = np.flatnonzero(self.old[rows_new] < 0)
            free_old = np.flatnonzero(~self.taken[rows_old])
            if free_new.size == 0 or free_old.size == 0:
                break
            item_old, item_new = _codes(old.item[free_old], new.item[free_new])
            cat_old, cat_new = _codes(old.category[free_old], new.category[free_new])
            kind_old, kind_new = _codes(old.kind[free_old], new.kind[free_new])
            grp_old, grp_new = _codes(old.group[free_old], new.group[free_new])
            n_cat = int(max(cat_old.max(), cat_new.max())) + 1 if with_class else 1
            n_kind = int(max(kind_old.max(), kind_new.max())) + 1
            n_grp = int(max(grp_old.max(), grp_new.max())) + 1

            def key(item, cat, kind, grp, n_cat=n_cat, n_kind=n_kind, n_grp=n_grp, with_class=with_class):
                c = cat if with_class else 0
                return ((item * n_cat + c) * n_kind + kind) * n_grp + grp

            key_new = key(item_new, cat_new, kind_new, grp_new)
            key_old = key(item_old, cat_old, kind_old, grp_old)
            a, b = cross_pairs(key_new, key_old)
            for kind in np.unique(new.kind[free_new[a]]) if a.size else ():
                sel = np.flatnonzero(new.kind[free_new[a]] == kind)
                jn, io = free_new[a[sel]], free_old[b[sel]]
                s = similarity(old, new, io, jn, str(kind), limits)
                threshold = (
                    limits.for_kind(str(kind))
                    if how == BY_GEOMETRY
                    else max(limits.relabel, limits.for_kind(str(kind)))
                )
                if how == BY_RELABEL:
                    s = np.where(
                        cat_new[a[sel]] != cat_old[b[sel]], s, 0.0
                    )  # same class: the geometry pass's
                mj, mi, ms = match_optimal(a[sel], b[sel], s, key_new[a[sel]], threshold)
                self.take(rows_new[free_new[mj]], rows_old[free_old[mi]], how, ms)

    def matches(self) -> Matches:
        return Matches(
            self.old,
            self.method,
            self.similarity,
            np.flatnonzero(~self.taken),
            source_ids=self.source_ids,
            source_id_pairs=self.pairs,
            source_id_consistent=self.consistent,
            thresholds=self.limits,
        )


# --------------------------------------------------------------------------- ingest: the Django half


def parse_options(options: dict | None) -> dict:
    """A delivery's matching options, checked: ``{"enabled": bool, "thresholds": {...}}``.

    ValueError names what is wrong; the caller turns it into its own error.
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError("matching options must be a JSON object")
    unknown = sorted(set(options) - {"enabled", "thresholds"})
    if unknown:
        raise ValueError(f"unknown matching option(s): {', '.join(repr(str(k)[:40]) for k in unknown[:5])}")
    enabled = options.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError("matching option 'enabled' must be true or false")
    thresholds = Thresholds.parse(options.get("thresholds"))
    out: dict = {"enabled": enabled}
    if options.get("thresholds"):
        out["thresholds"] = {k: getattr(thresholds, k) for k in options["thresholds"]}
    return out


@dataclass
class Lineage:
    """What matching made of a delivery, and what the write and the ledger need from it."""

    enabled: bool
    thresholds: Thresholds
    previous_number: int | None = None
    matches: Matches | None = None
    old_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # Label pk per old row
    # The report's examples, per method: the first EXAMPLES labels in delivery order.
    examples: dict = field(default_factory=dict)
    # The uid each spooled row is written with; None: each row's own (nothing to match against).
    uids: Sequence | None = None
    labels: int = 0  # how many rows the delivery has
    modified: int = 0
    provenance_only: int = 0  # of ``modified``: same content, other annotator, guideline or source
    unchanged: int = 0

    def section(self) -> dict:
        """The delivery report's lineage section."""
        body: dict = {
            "enabled": self.enabled,
            "previous_version": self.previous_number,
            "thresholds": self.thresholds.as_dict(),
        }
        if self.matches is None:
            body["counts"] = {"uid": 0, "source_id": 0, "geometry": 0, "relabel": 0, "new": self.labels}
            body["counts"]["removed"] = int(len(self.old_ids))
            body["counts"].update(modified=0, provenance_only=0, unchanged=0)
            body["examples"] = {}
            return body
        m = self.matches
        body["counts"] = {
            **m.counts(),
            "modified": self.modified,
            "provenance_only": self.provenance_only,
            "unchanged": self.unchanged,
        }
        body["source_ids"] = {
            "status": m.source_ids,
            "pairs": m.source_id_pairs,
            "consistent": m.source_id_consistent,
        }
        body["examples"] = self.examples
        return body


def _provenance(label) -> dict:
    """Who made a label, under which guideline, by which means: a change here alone is a modification.

    ``made_at`` is left out: a tool that stamps its export time would otherwise modify every label.
    """
    return {
        "annotator": label.annotator.pseudonym if label.annotator_id else "",
        "guideline_version": label.guideline_version.tag if label.guideline_version_id else "",
        "source": label.source,
        "model_name": label.model_name,
        "model_version": label.model_version,
    }


def _group(is_final: bool, annotator: str | None) -> str:
    # Final labels match final labels; an annotator's candidates match that annotator's candidates.
    return "" if is_final else f"candidate:{annotator or ''}"


# --------------------------------------------------------------------------- bounded memory

# Labels per bucket of items matched at once (each side, on average): the matcher's memory is a
# bucket's labels as Python objects, whatever the size of the delivery.
CHUNK_LABELS = 20_000
# Records held before they are written to their bucket: bounds the write buffers' memory.
BUFFERED_RECORDS = 20_000


class _Buckets:
    """One side of ``match_delivery`` in bounded memory: its labels' records on disk, by bucket of items.

    An item's labels all go to bucket ``item code % n``, the same on both sides, so a bucket holds
    whole items and is matched on its own (the source-id, geometry and relabel passes are per item).
    A record is ``_record``'s (category, kind, group, source id, box, geometry, height, width), with
    the label's row (its index on its side) and item code; records are buffered per bucket and
    written as columns (NumPy for the numbers: a pickled array loads in one piece) into one temporary
    file, read back bucket by bucket. Held per label in memory: its uid.
    """

    def __init__(self, buckets: int):
        self.n = buckets
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.segments: list[list[int]] = [[] for _ in range(buckets)]  # file offsets of each bucket's batches
        self.buffers: list[tuple[list, list, list]] = [([], [], []) for _ in range(buckets)]
        self.buffered = 0
        self.uids = bytearray()
        self.count = 0

    def add(self, uid: bytes, item: int, record: tuple) -> None:
        self.uids += uid
        rows, items, records = self.buffers[item % self.n]
        rows.append(self.count)
        items.append(item)
        records.append(record)
        self.count += 1
        self.buffered += 1
        if self.buffered >= BUFFERED_RECORDS:
            self.flush()

    def flush(self) -> None:
        for bucket, (rows, items, records) in enumerate(self.buffers):
            if not rows:
                continue
            cats, kinds, groups, sids, boxes, geometries, heights, widths = zip(*records, strict=True)
            columns = (
                np.array(rows, dtype=np.int64),
                np.array(items, dtype=np.int64),
                cats,
                kinds,
                groups,
                sids,
                np.array(boxes, dtype=np.float64).reshape(-1, 4),
                geometries,
                np.array(heights, dtype=np.int64),
                np.array(widths, dtype=np.int64),
            )
            self.segments[bucket].append(self.file.tell())
            pickle.dump(columns, self.file, protocol=pickle.HIGHEST_PROTOCOL)
            self.buffers[bucket] = ([], [], [])
        self.buffered = 0

    def uid_array(self) -> np.ndarray:
        """The uids, in row order (a view of the bytes held: nothing is added once matching starts)."""
        return np.frombuffer(self.uids, dtype="S16") if self.uids else np.zeros(0, dtype="S16")

    def side(self, bucket: int, item_names: np.ndarray) -> tuple[Side, np.ndarray]:
        """A bucket's labels as a Side, and their rows (ascending)."""
        parts = []
        for offset in self.segments[bucket]:
            self.file.seek(offset)
            parts.append(pickle.load(self.file))  # noqa: S301 - our own file, written above by this process
        if not parts:
            return Side.from_rows([]), np.zeros(0, dtype=np.int64)
        rows, items, cats, kinds, groups, sids, boxes, geometries, heights, widths = zip(*parts, strict=True)

        def strings(column) -> np.ndarray:
            return np.concatenate([np.array(part, dtype=object) for part in column])

        side = Side(
            uid=np.zeros(sum(len(r) for r in rows), dtype="S16"),  # the uid pass is global: not needed here
            item=item_names[np.concatenate(items)],
            category=strings(cats),
            kind=strings(kinds),
            group=strings(groups),
            source_id=strings(sids),
            boxes=np.concatenate(boxes),
            geometry=[g for part in geometries for g in part],
            height=np.concatenate(heights),
            width=np.concatenate(widths),
        )
        return side, np.concatenate(rows)

    def close(self) -> None:
        self.file.close()


_NO_BOX = (math.nan,) * 4


def _parse_json(text: str | None):
    """JSON text as ``json.loads`` reads it; orjson first (faster), which refuses integers beyond 64 bits."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _record(category: str, kind: str, group: str, source_id, geometry, height, width) -> tuple:
    """A label's record in ``_Buckets``: its geometry only where the matcher needs more than the box."""
    box = fmt.bbox_of(geometry) if geometry else None
    return (
        category,
        kind,
        group,
        source_id or "",
        box if box is not None and len(box) == 4 else _NO_BOX,
        geometry if kind in GEOMETRY_KINDS else None,
        height or 0,
        width or 0,
    )


def _old_buckets(previous, buckets: int, item_codes: dict[str, int]) -> tuple[_Buckets, np.ndarray]:
    """The previous version's labels into buckets (geometry kept only where the matcher needs it)."""
    from django.db.models import TextField
    from django.db.models.functions import Cast

    from ..models import Label

    out = _Buckets(buckets)
    ids = array("q")
    rows = (
        Label.objects.filter(version=previous)
        .order_by()
        # The geometry's JSON text, parsed here by orjson: a third of json.loads' time per label.
        .annotate(geometry_text=Cast("geometry", output_field=TextField()))
        .values_list(
            "id",
            "uid",
            "item__key",
            "category__name",
            "geometry_type",
            "geometry_text",
            "is_final",
            "annotator__pseudonym",
            "source_id",
            "item__height",
            "item__width",
        )
    )
    for pk, uid, item, cat, kind, geometry, final, annotator, sid, height, width in rows.iterator(
        chunk_size=5000
    ):
        ids.append(pk)
        geometry = _parse_json(geometry)
        code = item_codes.setdefault(item, len(item_codes))
        out.add(uid.bytes, code, _record(cat, kind, _group(final, annotator), sid, geometry, height, width))
    out.flush()
    return out, np.frombuffer(ids, dtype=np.int64).copy()


def _new_buckets(
    batches: Iterable[list], buckets: int, sizes: dict[str, tuple[int, int]], item_codes
) -> _Buckets:
    """The spooled rows into buckets, in spool order; their uids are the rows' own."""
    out = _Buckets(buckets)
    for batch in batches:
        for uid, row in batch:
            code = item_codes.setdefault(row.item, len(item_codes))
            height, width = sizes.get(row.item, (0, 0))
            record = _record(
                row.category,
                row.geometry_type,
                _group(row.is_final, row.annotator),
                row.source_id,
                row.geometry,
                height,
                width,
            )
            out.add(uid.bytes, code, record)
    out.flush()
    return out


class _Examples:
    """The report's examples: per method, the first EXAMPLES labels in delivery order, gathered chunk by chunk."""

    def __init__(self):
        self.rows: dict[str, list] = {
            name: [] for name in ("source_id", "geometry", "relabel", "new", "removed")
        }

    def _keep(self, name: str, found: list) -> None:
        self.rows[name] = sorted(self.rows[name] + found, key=lambda pair: pair[0])[:EXAMPLES]

    def add(self, m: _Matching, old: Side, new: Side, rows_old, rows_new, old_uids, new_uids) -> None:
        """A chunk's examples (a matched label shows the uid it keeps, its previous label's)."""
        for code, name in ((BY_SOURCE_ID, "source_id"), (BY_GEOMETRY, "geometry"), (BY_RELABEL, "relabel")):
            local = np.flatnonzero(m.method[rows_new] == code)[:EXAMPLES]
            if local.size == 0:
                continue
            # The previous label is in this bucket (these passes match within an item); rows ascend.
            where = np.searchsorted(rows_old, m.old[rows_new[local]])
            found = []
            for k, i in zip(local.tolist(), where.tolist(), strict=True):
                j = int(rows_new[k])
                found.append(
                    (
                        j,
                        {
                            "uid": str(_uuid(old_uids[m.old[j]])),
                            "item": str(new.item[k]),
                            "category": str(new.category[k]),
                            "was": str(old.category[i]),
                            "similarity": round(float(m.similarity[j]), 4),
                        },
                    )
                )
            self._keep(name, found)
        found = [
            (
                int(rows_new[k]),
                {
                    "uid": str(_uuid(new_uids[rows_new[k]])),
                    "item": str(new.item[k]),
                    "category": str(new.category[k]),
                },
            )
            for k in np.flatnonzero(m.method[rows_new] == NEW)[:EXAMPLES].tolist()
        ]
        self._keep("new", found)
        found = [
            (
                int(rows_old[k]),
                {
                    "uid": str(_uuid(old_uids[rows_old[k]])),
                    "item": str(old.item[k]),
                    "category": str(old.category[k]),
                },
            )
            for k in np.flatnonzero(~m.taken[rows_old])[:EXAMPLES].tolist()
        ]
        self._keep("removed", found)

    def as_dict(self) -> dict:
        return {name: [example for _, example in found] for name, found in self.rows.items()}


def _uuid(value: bytes) -> uuid.UUID:
    # NumPy's S16 drops trailing zero bytes.
    return uuid.UUID(bytes=bytes(value).ljust(16, b"\0"))


class _Uids(Sequence):
    """The uid each spooled row is written with, 16 bytes a row instead of a UUID object."""

    def __init__(self, uids: np.ndarray):
        self.array = uids

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, n):
        return _uuid(self.array[n])


def _fresh_uids(n: int) -> np.ndarray:
    """``n`` random (version 4) uuids as an S16 array, as ``uuid.uuid4`` makes them."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return raw.view("S16").reshape(n)


def match_delivery(*, labels, previous, version, options: dict | None) -> Lineage:
    """Match the spooled labels (``labels.batches()``) to ``previous``'s; decide each row's uid.

    In bounded memory: both sides go to disk by buckets of whole items (``_Buckets``) and are matched
    bucket by bucket; per label only its uid, the previous label's primary key and the match are held.
    """
    from ..models import Item, Label

    options = options or {}
    thresholds = Thresholds.parse(options.get("thresholds"))
    enabled = options.get("enabled", True)
    result = Lineage(enabled=enabled, thresholds=thresholds, labels=labels.count)
    if previous is not None:
        result.previous_number = previous.number
    if not enabled:
        # A new generation: every label is new, even one carrying its own uid; the old ones go.
        result.uids = _Uids(_fresh_uids(labels.count))
        if previous is not None:
            result.old_ids = np.fromiter(
                Label.objects.filter(version=previous).order_by("id").values_list("id", flat=True),
                dtype=np.int64,
            )
        return result
    if previous is None:
        return result  # the first version: the rows keep their own uids, and the spool is not read twice
    sizes = {
        k: (h, w) for k, h, w in Item.objects.filter(version=version).values_list("key", "height", "width")
    }
    item_codes = {key: n for n, key in enumerate(sizes)}
    n_old = Label.objects.filter(version=previous).count()
    buckets = max(1, -(-(n_old + labels.count) // (2 * CHUNK_LABELS)))
    new = old = None
    try:
        new = _new_buckets(labels.batches(), buckets, sizes, item_codes)
        old, result.old_ids = _old_buckets(previous, buckets, item_codes)
        del sizes
        item_names = list(item_codes)
        del item_codes
        m, result.examples = match_buckets(old, new, item_names=item_names, thresholds=thresholds)
    finally:
        for side in (new, old):
            if side is not None:
                side.close()
    result.matches = m
    new_uids = new.uid_array()  # a view of the bytes: rewritten in place
    matched = np.flatnonzero(m.old >= 0)
    new_uids[matched] = old.uid_array()[m.old[matched]]
    result.uids = _Uids(new_uids)
    return result


def match_buckets(
    old: _Buckets, new: _Buckets, *, item_names: list[str], thresholds: Thresholds
) -> tuple[Matches, dict]:
    """``match_labels`` bucket by bucket (the same passes, the same matches), and the report's examples."""
    new_uids, old_uids = new.uid_array(), old.uid_array()
    names = np.array(item_names, dtype=object)
    m = _Matching(old.count, new.count, thresholds)
    # A fresh uuid4 never equals a previous uid, so every uid may take part in the uid pass.
    m.match_uids(old_uids, new_uids, None)
    examples = _Examples()

    def finish(bucket: int, old_side: Side, new_side: Side, rows_old, rows_new) -> None:
        if len(rows_old) and len(rows_new):
            m.match_geometry(old_side, new_side, rows_old, rows_new)
        examples.add(m, old_side, new_side, rows_old, rows_new, old_uids, new_uids)

    # Pass 1: each bucket's source-id pairs. A bucket without any is finished at once: what the
    # decision takes elsewhere cannot change its matches (pairs are within an item). Only buckets
    # with pairs are read again, once the decision is made (renumbered ids make few pairs).
    waiting = []
    for bucket in range(new.n):
        if not (new.segments[bucket] or old.segments[bucket]):
            continue
        (old_side, rows_old), (new_side, rows_new) = old.side(bucket, names), new.side(bucket, names)
        pairs = m.pairs
        if len(rows_old) and len(rows_new):
            m.collect_source_ids(old_side, new_side, rows_old, rows_new)
        if m.pairs > pairs:
            waiting.append(bucket)
        else:
            finish(bucket, old_side, new_side, rows_old, rows_new)
    m.take_source_ids()
    for bucket in waiting:
        (old_side, rows_old), (new_side, rows_new) = old.side(bucket, names), new.side(bucket, names)
        finish(bucket, old_side, new_side, rows_old, rows_new)
    return m.matches(), examples.as_dict()


def _row_provenance(row, tags: dict[int, str]) -> dict:
    """``_provenance`` of the label a spooled row becomes (``tags``: guideline tag by id)."""
    return {
        "annotator": row.annotator or "",
        "guideline_version": tags[row.guideline_version] if row.guideline_version else "",
        "source": row.source,
        "model_name": row.model_name,
        "model_version": row.model_version,
    }


@functools.cache
def _ledger() -> types.SimpleNamespace:
    """The ledger's parts a label event is built with, imported once: a function-level import
    costs ~0.3 us each time, three per label on the ingest's hot path."""
    from governance import ledger
    from governance.ledger.events import label_state, state_payload_json

    return types.SimpleNamespace(
        EventData=ledger.EventData, label_state=label_state, state_payload_json=state_payload_json
    )


def _row_state(row, geometry_json: str | None = None) -> dict:
    """``ledger.events.label_state`` of the label a spooled row becomes, without building the Label.

    ``geometry_json``: the row's geometry as written (``WrittenLabel.geometry_json``), hashed as it is.
    """
    return _ledger().label_state(
        category=row.category,
        geometry_type=row.geometry_type,
        geometry=row.geometry,
        attributes=row.attributes,
        is_final=row.is_final,
        item=row.item,
        geometry_json=geometry_json,
    )


def _row_content(row) -> tuple:
    """``ledger.events.label_content`` of the label a spooled row becomes."""
    return (row.category, row.geometry_type, row.geometry, row.attributes, row.is_final, row.item)


def _row_event(written, *, action: str, payload: dict, tags: dict[int, str], now, **fields):
    """``ledger.label_event`` of the label a written row became: the same document, from the row.

    A label without its own time occurred ``now``: one moment for the labels of one delivery.
    """
    uid, row, _ = written
    return _ledger().EventData(
        label_uid=uid,
        action=action,
        actor=row.annotator or row.model_name or row.source,
        occurred_at=row.made_at or now,
        guideline_version=tags[row.guideline_version] if row.guideline_version else "",
        source=row.source,
        model_name=row.model_name,
        model_version=row.model_version,
        payload=payload,
        **fields,
    )


def _created_event(written, *, tags: dict[int, str], now, delivery_id: int, version_number: int):
    """The hot path of a first delivery: the geometry's hash is taken of its bytes as written."""
    state = _row_state(written.row, written.geometry_json)
    payload_json = _ledger().state_payload_json("after", state)
    return _row_event(
        written,
        action="created",
        payload={"after": state},
        tags=tags,
        now=now,
        payload_json=payload_json,
        delivery_id=delivery_id,
        version_number=version_number,
    )


def lineage_events(
    written: Iterable,
    lineage: Lineage,
    *,
    delivery_id: int,
    version_number: int,
    actor: str,
    guideline_tags: dict[int, str],
) -> Iterator:
    """The ledger events of a delivery's labels (in write order), then of the previous labels it removed.

    ``written``: the rows as written (``write.WrittenLabel``: uid, spooled row, geometry JSON), so that
    no Label is built for the ledger. ``created`` for a new label; for a matched one, ``modified`` with
    before and after (and how it was matched) when its content or its provenance (annotator, guideline
    version, source, model) changed, nothing when neither did; ``deleted`` for a vanished one. The
    event's actor and guideline are the new label's ("v2 modified by reviewer B under guideline v2"); a
    provenance change also carries the previous provenance under ``provenance.before``. The previous
    labels are read back in batches by primary key, so memory stays bounded.
    """
    from django.utils import timezone

    context = {"tags": guideline_tags, "now": timezone.now(), "delivery_id": delivery_id}
    batch: list = []
    for n, label in enumerate(written):
        batch.append((n, label))
        if len(batch) >= 2000:
            yield from _matched_events(batch, lineage, version_number=version_number, **context)
            batch = []
    yield from _matched_events(batch, lineage, version_number=version_number, **context)
    yield from _deleted_events(lineage, actor=actor, delivery_id=delivery_id, version_number=version_number)


def _previous_labels(pks: list[int]) -> dict:
    from ..models import Label

    return Label.objects.select_related("item", "category", "annotator", "guideline_version").in_bulk(pks)


def _previous_states(pks: list[int]) -> dict:
    """What ``_matched_events`` reads of the previous labels, by primary key, without Label instances.

    The attributes ``label_content``, ``_provenance`` and ``_label_state`` read, on plain namespaces;
    geometry and attributes come as the database's JSON text, parsed once (``_parse_json``). The ORM
    (``_previous_labels``: four related rows and the JSON converters per label) took about 7 s of a
    16 s re-delivery of 50,000 labels under cProfile.
    """
    from types import SimpleNamespace as NS

    from django.db.models import TextField
    from django.db.models.functions import Cast

    from ..models import Label

    rows = (
        Label.objects.filter(pk__in=pks)
        .annotate(
            geometry_text=Cast("geometry", TextField()), attributes_text=Cast("attributes", TextField())
        )
        .values_list(
            "pk",
            "category__name",
            "geometry_type",
            "geometry_text",
            "attributes_text",
            "is_final",
            "item__key",
            "iscrowd",
            "annotator_id",
            "annotator__pseudonym",
            "guideline_version_id",
            "guideline_version__tag",
            "source",
            "model_name",
            "model_version",
        )
    )
    return {
        pk: NS(
            category=NS(name=category),
            geometry_type=kind,
            geometry=_parse_json(geometry),
            attributes=_parse_json(attributes),
            is_final=is_final,
            item=NS(key=item),
            iscrowd=iscrowd,
            annotator_id=annotator_id,
            annotator=NS(pseudonym=pseudonym) if annotator_id else None,
            guideline_version_id=guideline_id,
            guideline_version=NS(tag=tag) if guideline_id else None,
            source=source,
            model_name=model_name,
            model_version=model_version,
        )
        for (
            pk,
            category,
            kind,
            geometry,
            attributes,
            is_final,
            item,
            iscrowd,
            annotator_id,
            pseudonym,
            guideline_id,
            tag,
            source,
            model_name,
            model_version,
        ) in rows
    }


def _matched_events(
    batch: list, lineage: Lineage, *, tags: dict[int, str], now, delivery_id: int, version_number: int
):
    """The events of one batch of written rows: created, modified, or none for an unchanged label."""
    # The one definition of a label's state in payloads, and what it says by value.
    from governance.ledger.events import _label_state, label_content

    m = lineage.matches
    wanted = [int(m.old[n]) for n, _ in batch if m is not None and m.old[n] >= 0]
    before = _previous_states([int(lineage.old_ids[i]) for i in wanted]) if wanted else {}
    for n, written in batch:
        i = -1 if m is None else int(m.old[n])
        if i < 0:
            yield _created_event(
                written, tags=tags, now=now, delivery_id=delivery_id, version_number=version_number
            )
            continue
        old, row = before[int(lineage.old_ids[i])], written.row
        # By value, as before the hash rule; the states (and the geometries' hashes) only for an event.
        same_content = label_content(old) == _row_content(row) and old.iscrowd == row.iscrowd
        old_prov, new_prov = _provenance(old), _row_provenance(row, tags)
        if same_content and old_prov == new_prov:
            lineage.unchanged += 1
            continue
        lineage.modified += 1
        extra: dict = {
            "lineage": {
                "method": METHOD_NAMES[int(m.method[n])],
                "similarity": round(float(m.similarity[n]), 4),
                "previous_version": lineage.previous_number,
                "changed": [
                    part
                    for part, same in (("content", same_content), ("provenance", old_prov == new_prov))
                    if not same
                ],
            }
        }
        if old_prov != new_prov:
            extra["provenance"] = {"before": old_prov, "after": new_prov}
            if same_content:
                lineage.provenance_only += 1
        yield _row_event(
            written,
            action="modified",
            payload={"after": _row_state(row, written.geometry_json), "before": _label_state(old), **extra},
            tags=tags,
            now=now,
            delivery_id=delivery_id,
            version_number=version_number,
        )


def _deleted_events(lineage: Lineage, *, actor: str, delivery_id: int, version_number: int):
    from django.utils import timezone

    from governance import ledger
    from governance.ledger.events import _label_state

    m = lineage.matches
    removed = lineage.old_ids if m is None else lineage.old_ids[m.removed]
    now = timezone.now()
    for lo in range(0, len(removed), 2000):
        chunk = sorted(int(pk) for pk in removed[lo : lo + 2000])
        olds = _previous_labels(chunk)
        for pk in chunk:
            old = olds[pk]
            yield ledger.label_event(
                old,
                action="deleted",
                actor=actor,
                occurred_at=now,
                before=_label_state(old),
                include_after=False,
                delivery_id=delivery_id,
                version_number=version_number,
            )
