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

The Django half of the module (at the end) loads the previous version, rewrites the uids of the
spooled rows and yields the ledger events: ``modified`` with before and after for a changed label,
nothing for an unchanged one, ``created`` for a new one, ``deleted`` for a vanished one.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
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
    """Match the new labels to the previous ones: uid, source id, geometry, relabel (module docstring)."""
    limits = thresholds or Thresholds()
    n_old, n_new = len(old), len(new)
    matched_old = np.full(n_new, -1, dtype=np.int64)
    method = np.zeros(n_new, dtype=np.int8)
    sim = np.zeros(n_new, dtype=np.float64)
    taken = np.zeros(n_old, dtype=bool)
    result = Matches(matched_old, method, sim, np.zeros(0, dtype=np.int64), thresholds=limits)
    if n_old == 0 or n_new == 0:
        result.removed = np.arange(n_old, dtype=np.int64)
        return result

    def take(jn: np.ndarray, io: np.ndarray, how: int, s) -> None:
        matched_old[jn] = io
        method[jn] = how
        sim[jn] = s
        taken[io] = True

    item_old, item_new = _codes(old.item, new.item)
    cat_old, cat_new = _codes(old.category, new.category)
    kind_old, kind_new = _codes(old.kind, new.kind)
    grp_old, grp_new = _codes(old.group, new.group)

    # 1. uid: a previous label with the very same uid (uids are unique within a version).
    has_uid = new.has_uid if new.has_uid is not None else np.ones(n_new, dtype=bool)
    order = np.argsort(old.uid, kind="stable")
    pos = np.clip(np.searchsorted(old.uid[order], new.uid), 0, n_old - 1)
    hit = has_uid & (old.uid[order][pos] == new.uid)
    take(np.flatnonzero(hit), order[pos[hit]], BY_UID, 1.0)

    # 2. source id, scoped by the item, one-to-one, when consistent.
    free_new = np.flatnonzero((matched_old < 0) & (new.source_id != ""))
    free_old = np.flatnonzero(~taken & (old.source_id != ""))
    if free_new.size and free_old.size:
        sid_old, sid_new = _codes(old.source_id[free_old], new.source_id[free_new])
        n_sid = int(max(sid_old.max(), sid_new.max())) + 1
        key_old = item_old[free_old] * n_sid + sid_old
        key_new = item_new[free_new] * n_sid + sid_new
        a, b = cross_pairs(key_new, key_old)
        unique = (np.bincount(a, minlength=free_new.size)[a] == 1) & (
            np.bincount(b, minlength=free_old.size)[b] == 1
        )
        jn, io = free_new[a[unique]], free_old[b[unique]]
        same_kind = kind_new[jn] == kind_old[io]
        close = np.zeros(len(jn), dtype=bool)
        for kind in np.unique(new.kind[jn[same_kind]]):
            sel = np.flatnonzero(same_kind & (new.kind[jn] == kind))
            close[sel] = similarity(old, new, io[sel], jn[sel], str(kind), limits) >= limits.for_kind(
                str(kind)
            )
        consistent = same_kind & (grp_new[jn] == grp_old[io]) & ((cat_new[jn] == cat_old[io]) | close)
        result.source_id_pairs, result.source_id_consistent = int(len(jn)), int(consistent.sum())
        # Trust is decided on geometry alone: a tool that renumbers its shapes keeps classes
        # plausible (two cars swap ids) but not boxes, while a corrected export keeps most boxes.
        if len(jn) and close.sum() >= SOURCE_ID_TRUST * len(jn):
            result.source_ids = "used"
            take(jn[consistent], io[consistent], BY_SOURCE_ID, 1.0)
        elif len(jn):
            result.source_ids = "ignored"

    # 3. geometry, per item + class + kind + group; 4. relabel, per item + kind + group.
    for how, with_class in ((BY_GEOMETRY, True), (BY_RELABEL, False)):
        free_new = np.flatnonzero(matched_old < 0)
        free_old = np.flatnonzero(~taken)
        if free_new.size == 0 or free_old.size == 0:
            break
        n_cat = int(max(cat_old.max(), cat_new.max())) + 1 if with_class else 1
        n_kind = int(max(kind_old.max(), kind_new.max())) + 1
        n_grp = int(max(grp_old.max(), grp_new.max())) + 1

        def key(item, cat, kind, grp, rows, n_cat=n_cat, n_kind=n_kind, n_grp=n_grp, with_class=with_class):
            c = cat[rows] if with_class else 0
            return ((item[rows] * n_cat + c) * n_kind + kind[rows]) * n_grp + grp[rows]

        key_new = key(item_new, cat_new, kind_new, grp_new, free_new)
        key_old = key(item_old, cat_old, kind_old, grp_old, free_old)
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
                s = np.where(cat_new[jn] != cat_old[io], s, 0.0)  # same class was the geometry pass's
            mj, mi, ms = match_optimal(a[sel], b[sel], s, key_new[a[sel]], threshold)
            take(free_new[mj], free_old[mi], how, ms)
    result.removed = np.flatnonzero(~taken)
    return result


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
    old: Side | None = None
    new: Side | None = None
    # The uid each spooled row is written with; None: each row's own (nothing to match against).
    uids: list | None = None
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
        examples: dict[str, list] = {}
        for code, name in ((BY_SOURCE_ID, "source_id"), (BY_GEOMETRY, "geometry"), (BY_RELABEL, "relabel")):
            rows = np.flatnonzero(m.method == code)[:EXAMPLES]
            examples[name] = [
                {
                    "uid": str(self.uids[j]),
                    "item": str(self.new.item[j]),
                    "category": str(self.new.category[j]),
                    "was": str(self.old.category[m.old[j]]),
                    "similarity": round(float(m.similarity[j]), 4),
                }
                for j in rows
            ]
        examples["new"] = [
            {"uid": str(self.uids[j]), "item": str(self.new.item[j]), "category": str(self.new.category[j])}
            for j in np.flatnonzero(m.method == NEW)[:EXAMPLES]
        ]
        examples["removed"] = [
            {
                "uid": str(uuid.UUID(bytes=bytes(self.old.uid[i]).ljust(16, b"\0"))),
                "item": str(self.old.item[i]),
                "category": str(self.old.category[i]),
            }
            for i in m.removed[:EXAMPLES]
        ]
        body["examples"] = examples
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


def _old_side(previous) -> tuple[Side, np.ndarray]:
    """The previous version's labels as columns (geometry kept only where the matcher needs it)."""
    from ..models import Label

    ids, uids, items, cats, kinds, groups, sids, geoms, heights, widths = ([] for _ in range(10))
    boxes = []
    nan = [math.nan] * 4
    rows = (
        Label.objects.filter(version=previous)
        .order_by()
        .values_list(
            "id",
            "uid",
            "item__key",
            "category__name",
            "geometry_type",
            "geometry",
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
        uids.append(uid.bytes)
        items.append(item)
        cats.append(cat)
        kinds.append(kind)
        groups.append(_group(final, annotator))
        sids.append(sid or "")
        box = fmt.bbox_of(geometry) if geometry else None
        boxes.append(box if box is not None and len(box) == 4 else nan)
        geoms.append(geometry if kind in GEOMETRY_KINDS else None)
        heights.append(height or 0)
        widths.append(width or 0)
    side = Side(
        uid=np.array(uids, dtype="S16"),
        item=np.array(items, dtype=object),
        category=np.array(cats, dtype=object),
        kind=np.array(kinds, dtype=object),
        group=np.array(groups, dtype=object),
        source_id=np.array(sids, dtype=object),
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        geometry=geoms,
        height=np.array(heights, dtype=np.int64),
        width=np.array(widths, dtype=np.int64),
    )
    return side, np.array(ids, dtype=np.int64)


def _new_side(batches: Iterable[list], sizes: dict[str, tuple[int, int]]) -> tuple[Side, list]:
    """The spooled rows as columns, and their uids in spool order."""
    uids, items, cats, kinds, groups, sids, geoms, heights, widths, boxes = ([] for _ in range(10))
    nan = [math.nan] * 4
    for batch in batches:
        for uid, row in batch:
            uids.append(uid)
            items.append(row.item)
            cats.append(row.category)
            kinds.append(row.geometry_type)
            groups.append(_group(row.is_final, row.annotator))
            sids.append(row.source_id or "")
            box = fmt.bbox_of(row.geometry) if row.geometry else None
            boxes.append(box if box is not None and len(box) == 4 else nan)
            geoms.append(row.geometry if row.geometry_type in GEOMETRY_KINDS else None)
            height, width = sizes.get(row.item, (0, 0))
            heights.append(height)
            widths.append(width)
    side = Side(
        # A fresh uuid4 never equals a previous uid, so every uid may take part in the uid pass.
        uid=np.array([u.bytes for u in uids], dtype="S16"),
        item=np.array(items, dtype=object),
        category=np.array(cats, dtype=object),
        kind=np.array(kinds, dtype=object),
        group=np.array(groups, dtype=object),
        source_id=np.array(sids, dtype=object),
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        geometry=geoms,
        height=np.array(heights, dtype=np.int64),
        width=np.array(widths, dtype=np.int64),
    )
    return side, uids


def match_delivery(*, labels, previous, version, options: dict | None) -> Lineage:
    """Match the spooled labels (``labels.batches()``) to ``previous``'s; decide each row's uid."""
    from ..models import Item, Label

    options = options or {}
    thresholds = Thresholds.parse(options.get("thresholds"))
    enabled = options.get("enabled", True)
    result = Lineage(enabled=enabled, thresholds=thresholds, labels=labels.count)
    if previous is not None:
        result.previous_number = previous.number
    if not enabled:
        # A new generation: every label is new, even one carrying its own uid; the old ones go.
        result.uids = [uuid.uuid4() for _ in range(labels.count)]
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
    result.new, uids = _new_side(labels.batches(), sizes)
    result.old, result.old_ids = _old_side(previous)
    m = result.matches = match_labels(result.old, result.new, thresholds=thresholds)
    matched = np.flatnonzero(m.old >= 0)
    for j, i in zip(matched.tolist(), m.old[matched].tolist(), strict=True):
        uids[j] = uuid.UUID(bytes=bytes(result.old.uid[i]).ljust(16, b"\0"))
    result.uids = uids
    return result


def _row_provenance(row, tags: dict[int, str]) -> dict:
    """``_provenance`` of the label a spooled row becomes (``tags``: guideline tag by id)."""
    return {
        "annotator": row.annotator or "",
        "guideline_version": tags[row.guideline_version] if row.guideline_version else "",
        "source": row.source,
        "model_name": row.model_name,
        "model_version": row.model_version,
    }


def _row_state(row, geometry_json: str | None = None) -> dict:
    """``ledger.events.label_state`` of the label a spooled row becomes, without building the Label.

    ``geometry_json``: the row's geometry as written (``WrittenLabel.geometry_json``), hashed as it is.
    """
    from governance.ledger.events import label_state

    return label_state(
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
    from governance import ledger

    uid, row, _ = written
    return ledger.EventData(
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
    from governance.ledger import canonical

    state = _row_state(written.row, written.geometry_json)
    payload_json = canonical.plain_json_text({"after": state})
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


def _matched_events(
    batch: list, lineage: Lineage, *, tags: dict[int, str], now, delivery_id: int, version_number: int
):
    """The events of one batch of written rows: created, modified, or none for an unchanged label."""
    # The one definition of a label's state in payloads, and what it says by value.
    from governance.ledger.events import _label_state, label_content

    m = lineage.matches
    wanted = [int(m.old[n]) for n, _ in batch if m is not None and m.old[n] >= 0]
    before = _previous_labels([int(lineage.old_ids[i]) for i in wanted]) if wanted else {}
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
