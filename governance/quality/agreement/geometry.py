"""Agreement over geometry: similarity (IoU, mask IoU, OKS), one-to-one matching, label frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

from marketplace.formats import model as fmt
from marketplace.formats.matching import box_iou, cross_pairs, keypoint_similarity, match_optimal

CONSENSUS = -2  # the annotator id the final (consensus) labels carry in a frame
DEFAULT_THRESHOLD = 0.5

# COCO's per-keypoint OKS sigmas for its 17 person keypoints (cocoeval.py, Params.setKpParams).
COCO_PERSON_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)
# For a skeleton that is not COCO's and declares no sigmas: COCO's mean, a middling tolerance.
DEFAULT_SIGMA = float(COCO_PERSON_SIGMAS.mean())

# How each geometry type is compared. Polylines and 2D cuboids have no area of their own: their
# enclosing boxes stand in. 3D cuboids need a 3D IoU this module does not have: not measured.
BOX_KINDS = (fmt.BBOX, fmt.POLYLINE, fmt.CUBOID_2D)
MASK_KINDS = (fmt.POLYGON, fmt.MASK)
MEASURED_KINDS = (*BOX_KINDS, *MASK_KINDS, fmt.KEYPOINTS)
SIMILARITY = {
    fmt.BBOX: "iou",
    fmt.POLYLINE: "iou of enclosing boxes",
    fmt.CUBOID_2D: "iou of enclosing boxes",
    fmt.POLYGON: "mask iou",
    fmt.MASK: "mask iou",
    fmt.KEYPOINTS: "oks",
}


# --------------------------------------------------------------------------- geometry similarity


def mask_iou_pairs(rles: Sequence[dict | None], ia: np.ndarray, jb: np.ndarray) -> np.ndarray:
    """IoU of RLE masks for each pair (ia[k], jb[k]); one pycocotools call per distinct ``ia``."""
    out = np.zeros(len(ia), dtype=np.float64)
    if len(ia) == 0:
        return out
    order = np.argsort(ia, kind="stable")
    starts = np.flatnonzero(np.r_[True, ia[order][1:] != ia[order][:-1]])
    for lo, hi in zip(starts, [*starts[1:], len(order)], strict=True):
        rows = order[lo:hi]
        a = rles[ia[rows[0]]]
        bs = [rles[j] for j in jb[rows]]
        if a is None or any(b is None for b in bs):
            continue
        out[rows] = np.asarray(mask_utils.iou(bs, [a], [0]), dtype=np.float64).reshape(-1)
    return out


def rle_of(geometry: dict, geometry_type: str, height: int, width: int) -> dict | None:
    """The COCO RLE of a polygon or mask label, for pycocotools (counts as bytes)."""
    if geometry_type == fmt.MASK and "rle" in geometry:
        rle = geometry["rle"]
        counts = rle["counts"]
        if isinstance(counts, list):
            return mask_utils.frPyObjects(rle, *rle["size"])
        return {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    rings = [r for r in geometry.get("polygons", []) if len(r) >= 6]
    if not rings:
        return None
    return mask_utils.merge(mask_utils.frPyObjects(rings, height, width))


# --------------------------------------------------------------------------- matching


# --------------------------------------------------------------------------- label frames


@dataclass
class LabelFrame:
    """Labels as columns, what the measures read. Row i is one label.

    ``boxes`` holds each label's enclosing [x, y, w, h] (NaN when it has none). ``geometry`` and
    ``attributes`` (lists of dicts) are needed only for masks, keypoints, attributes and consensus.
    """

    item: np.ndarray
    annotator: np.ndarray
    category: np.ndarray
    kind: np.ndarray
    boxes: np.ndarray
    guideline: np.ndarray | None = None
    uid: np.ndarray | None = None
    geometry: list | None = None
    attributes: list | None = None
    item_size: dict = field(default_factory=dict)  # item id -> (height, width)

    def __post_init__(self):
        n = len(self.item)
        if self.guideline is None:
            self.guideline = np.full(n, -1, dtype=np.int64)
        self.kind = np.asarray(self.kind).astype(str)

    def __len__(self) -> int:
        return len(self.item)

    def take(self, rows: np.ndarray) -> LabelFrame:
        rows = np.asarray(rows)
        return LabelFrame(
            item=self.item[rows],
            annotator=self.annotator[rows],
            category=self.category[rows],
            kind=self.kind[rows],
            boxes=self.boxes[rows],
            guideline=self.guideline[rows],
            uid=None if self.uid is None else self.uid[rows],
            geometry=None if self.geometry is None else [self.geometry[i] for i in rows],
            attributes=None if self.attributes is None else [self.attributes[i] for i in rows],
            item_size=self.item_size,
        )

    @classmethod
    def concat(cls, frames: Sequence[LabelFrame]) -> LabelFrame:
        def cat(name):
            parts = [getattr(f, name) for f in frames]
            return None if any(p is None for p in parts) else np.concatenate(parts)

        def join(name):
            parts = [getattr(f, name) for f in frames]
            return None if any(p is None for p in parts) else [x for p in parts for x in p]

        sizes: dict = {}
        for f in frames:
            sizes.update(f.item_size)
        return cls(
            item=cat("item"),
            annotator=cat("annotator"),
            category=cat("category"),
            kind=np.concatenate([f.kind for f in frames]),
            boxes=np.concatenate([f.boxes for f in frames]).reshape(-1, 4),
            guideline=cat("guideline"),
            uid=cat("uid"),
            geometry=join("geometry"),
            attributes=join("attributes"),
            item_size=sizes,
        )


# --------------------------------------------------------------------------- pairwise geometry


@dataclass
class PairMatch:
    """What comparing annotator ``a`` with annotator ``b`` on one geometry kind found (row indices)."""

    kind: str
    a: int
    b: int
    rows_a: np.ndarray  # a's labels on the images both labelled
    rows_b: np.ndarray
    matched_a: np.ndarray  # matched pairs, as frame rows
    matched_b: np.ndarray
    similarity: np.ndarray


def items_by_annotator(frame: LabelFrame) -> dict[int, np.ndarray]:
    """The images each annotator labelled at all (with any kind of label)."""
    order = np.lexsort((frame.item, frame.annotator))
    ann, items = frame.annotator[order], frame.item[order]
    starts = np.flatnonzero(np.r_[True, ann[1:] != ann[:-1]])
    return {
        int(ann[lo]): np.unique(items[lo:hi]) for lo, hi in zip(starts, [*starts[1:], len(ann)], strict=True)
    }


def compare_geometry(
    frame: LabelFrame,
    a: int,
    b: int,
    kind: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    sigmas: dict[int, np.ndarray] | None = None,
    items_of: dict[int, np.ndarray] | None = None,
) -> PairMatch:
    """Match annotator a's and b's labels of one geometry kind, class by class, image by image."""
    items_of = items_of if items_of is not None else items_by_annotator(frame)
    common = np.intersect1d(items_of.get(a, np.empty(0, np.int64)), items_of.get(b, np.empty(0, np.int64)))
    of_kind = frame.kind == kind
    in_common = np.isin(frame.item, common)
    rows_a = np.flatnonzero(of_kind & in_common & (frame.annotator == a))
    rows_b = np.flatnonzero(of_kind & in_common & (frame.annotator == b))
    empty = np.empty(0, dtype=np.int64)
    if rows_a.size == 0 or rows_b.size == 0:
        return PairMatch(kind, a, b, rows_a, rows_b, empty, empty, np.empty(0))
    # One key per (image, class): only objects of the same class on the same image are compared.
    _, inverse = np.unique(
        np.concatenate([frame.category[rows_a], frame.category[rows_b]]), return_inverse=True
    )
    n_cat = int(inverse.max()) + 1
    key_a = frame.item[rows_a] * n_cat + inverse[: rows_a.size]
    key_b = frame.item[rows_b] * n_cat + inverse[rows_a.size :]
    ia, jb = cross_pairs(key_a, key_b)
    ra, rb = rows_a[ia], rows_b[jb]
    similarity = _similarity(frame, kind, ra, rb, sigmas or {})
    ma, mb, sim = match_optimal(ia, jb, similarity, key_a[ia], threshold)
    return PairMatch(kind, a, b, rows_a, rows_b, rows_a[ma], rows_b[mb], sim)


def _similarity(frame: LabelFrame, kind: str, ra: np.ndarray, rb: np.ndarray, sigmas: dict) -> np.ndarray:
    if kind in BOX_KINDS:
        return np.nan_to_num(box_iou(frame.boxes[ra], frame.boxes[rb]), nan=0.0)
    if kind in MASK_KINDS:
        rows = np.unique(np.concatenate([ra, rb]))
        rles: dict[int, dict | None] = {}
        for r in rows:
            height, width = frame.item_size.get(int(frame.item[r]), (0, 0))
            rles[int(r)] = rle_of(frame.geometry[r], str(frame.kind[r]), height, width)
        lookup = list(rles.values())
        position = {r: i for i, r in enumerate(rles)}
        return mask_iou_pairs(
            lookup,
            np.array([position[int(r)] for r in ra], dtype=np.int64),
            np.array([position[int(r)] for r in rb], dtype=np.int64),
        )
    if kind == fmt.KEYPOINTS:
        out = np.zeros(len(ra))
        for category in np.unique(frame.category[ra]):
            sel = np.flatnonzero(frame.category[ra] == category)
            kp_a = _keypoints(frame, ra[sel])
            kp_b = _keypoints(frame, rb[sel])
            if kp_a is None or kp_b is None or kp_a.shape != kp_b.shape:
                continue
            k = kp_a.shape[1]
            sig = sigmas.get(int(category))
            if sig is None or len(sig) != k:
                sig = COCO_PERSON_SIGMAS if k == len(COCO_PERSON_SIGMAS) else np.full(k, DEFAULT_SIGMA)
            area_a = frame.boxes[ra[sel], 2] * frame.boxes[ra[sel], 3]
            area_b = frame.boxes[rb[sel], 2] * frame.boxes[rb[sel], 3]
            area = np.nan_to_num((area_a + area_b) / 2.0, nan=0.0)
            out[sel] = keypoint_similarity(kp_a, kp_b, area, sig)
        return out
    raise ValueError(f"{kind} geometry is not compared")


def _keypoints(frame: LabelFrame, rows: np.ndarray) -> np.ndarray | None:
    points = [frame.geometry[r].get("keypoints", []) for r in rows]
    lengths = {len(p) for p in points}
    if len(lengths) != 1 or 0 in lengths:
        return None
    return np.asarray(points, dtype=np.float64).reshape(len(points), -1, 3)


def sigmas_source(k: int, declared) -> str:
    if declared is not None and len(declared) == k:
        return "schema"
    return "coco" if k == len(COCO_PERSON_SIGMAS) else "default"
