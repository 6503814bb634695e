"""Inter-annotator agreement: how consistently independent annotators labelled the same images.

Two families of measures, both vectorised with NumPy so that 100k images x 3 annotators take
seconds, not minutes:

* **Nominal** (a class per image, an attribute value per object): Cohen's kappa per pair of
  annotators, Fleiss' kappa over units every annotator rated, Krippendorff's alpha (nominal
  distance) over all units, with missing ratings. They agree with scikit-learn's
  ``cohen_kappa_score``, statsmodels' ``fleiss_kappa`` and the ``krippendorff`` package to 1e-9
  (tests/governance/test_agreement.py).
* **Geometry** (boxes, polygons, masks, keypoints): for each pair of annotators, their objects of
  the same class on the same image are matched one-to-one, maximising the summed similarity among
  pairs at or above a threshold (IoU >= 0.5 by default; OKS for keypoints). Matched pairs give
  precision, recall, F1 and the mean similarity. Annotator A of a pair is the reference:
  precision = matched / B's objects, recall = matched / A's objects; F1 is symmetric.

Which labels take part: the *candidates* (``Label.is_final=False``), each made by one annotator.
The final labels are the consensus; every annotator is also compared with them ("vs consensus").
Only images both annotators of a pair labelled count for that pair, so an annotator who did other
images is not charged with misses.

Matched objects across all annotator pairs form *clusters* (connected components of the match
graph): one cluster is one real-world object as the annotators saw it. Attribute agreement takes
clusters as its units, and consensus (``governance.consensus``) fuses them.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from governance.models import Annotator, GuidelineVersion
from marketplace.formats import model as fmt
from marketplace.models import AttributeSpec, Category, Item, Label

MISSING = -1  # a rating that was not given
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


# --------------------------------------------------------------------------- nominal measures


def encode_nominal(ratings: Sequence[Sequence[Hashable | None]]) -> tuple[np.ndarray, list]:
    """Turn raters x units of arbitrary values (None = not rated) into integer codes and the value list."""
    values: dict[str, int] = {}
    originals: list = []
    codes = np.full((len(ratings), len(ratings[0]) if ratings else 0), MISSING, dtype=np.int64)
    for r, row in enumerate(ratings):
        for u, value in enumerate(row):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            key = value_key(value)
            if key not in values:
                values[key] = len(originals)
                originals.append(value)
            codes[r, u] = values[key]
    return codes, originals


def value_key(value) -> str:
    # JSON keeps True and 1 apart, which a dict keyed on the values themselves would not.
    return json.dumps(value, sort_keys=True, default=str)


def as_codes(data) -> np.ndarray:
    """Raters x units as int64 codes with MISSING; floats with NaN for missing are encoded by value."""
    data = np.asarray(data)
    if data.dtype.kind in "iu":
        return data.astype(np.int64, copy=False)
    if data.dtype.kind != "f":
        raise TypeError("use encode_nominal() for non-numeric ratings")
    missing = np.isnan(data)
    codes = np.full(data.shape, MISSING, dtype=np.int64)
    _, inverse = np.unique(data[~missing], return_inverse=True)
    codes[~missing] = inverse
    return codes


def value_counts(codes: np.ndarray, n_values: int | None = None) -> np.ndarray:
    """Units x values: how many raters gave each value to each unit (codes: raters x units)."""
    codes = np.asarray(codes)
    n_units = codes.shape[1]
    if n_values is None:
        n_values = int(codes.max()) + 1 if codes.size and codes.max() >= 0 else 0
    rated = codes >= 0
    units = np.broadcast_to(np.arange(n_units), codes.shape)[rated]
    flat = units * n_values + codes[rated]
    return np.bincount(flat, minlength=n_units * n_values).reshape(n_units, n_values)


def cohen_kappa(a, b) -> float:
    """Cohen's kappa of two raters over the units both rated (codes, MISSING skipped)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    both = (a >= 0) & (b >= 0)
    a, b = a[both], b[both]
    if a.size == 0:
        return math.nan
    k = int(max(a.max(), b.max())) + 1
    confusion = np.bincount(a * k + b, minlength=k * k).reshape(k, k).astype(np.float64)
    # As scikit-learn computes it: 1 - observed / expected disagreement.
    expected = np.outer(confusion.sum(axis=0), confusion.sum(axis=1)) / confusion.sum()
    off = ~np.eye(k, dtype=bool)
    denominator = expected[off].sum()
    if denominator == 0:
        return math.nan  # one value only: agreement beyond chance is undefined
    return float(1.0 - confusion[off].sum() / denominator)


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa from units x values counts; every unit must have the same number of ratings."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0:
        return math.nan
    per_unit = counts.sum(axis=1)
    n = per_unit.max()
    if n < 2 or not np.all(per_unit == n):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every unit")
    p_value = counts.sum(axis=0) / counts.sum()
    p_unit = ((counts * counts).sum(axis=1) - n) / (n * (n - 1.0))
    p_mean, p_expected = p_unit.mean(), (p_value * p_value).sum()
    if p_expected == 1:
        return math.nan
    return float((p_mean - p_expected) / (1.0 - p_expected))


def krippendorff_alpha_nominal(data) -> float:
    """Krippendorff's alpha, nominal distance, raters x units, missing ratings allowed.

    ``data`` is int codes with MISSING, or floats with NaN. Works from the units x values counts
    (O(units x values)), not the per-unit coincidence matrices the reference package builds.
    """
    counts = value_counts(as_codes(data))
    per_unit = counts.sum(axis=1)
    pairable = per_unit >= 2  # a unit rated once tells nothing about agreement
    counts, per_unit = counts[pairable].astype(np.float64), per_unit[pairable].astype(np.float64)
    if counts.size == 0:
        return math.nan
    # Off-diagonal coincidences: sum over units of (n_u^2 - sum_c n_uc^2) / (n_u - 1).
    observed = ((per_unit * per_unit - (counts * counts).sum(axis=1)) / (per_unit - 1.0)).sum()
    n_c = counts.sum(axis=0)
    n = n_c.sum()
    expected = (n * n - (n_c * n_c).sum()) / (n - 1.0)
    if expected == 0:
        return math.nan
    return float(1.0 - observed / expected)


def pairwise_agreement(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: agreeing ordered rating pairs and all ordered pairs (raw agreement = sum / sum)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=1)
    return (counts * (counts - 1.0)).sum(axis=1), n * (n - 1.0)


def nominal_agreement(codes: np.ndarray, raters: Sequence[str], *, min_overlap: int = 1) -> dict:
    """Every nominal measure over raters x units codes, as a JSON-ready summary."""
    codes = as_codes(codes)
    rated = (codes >= 0).sum(axis=0)
    counts = value_counts(codes)
    agree, pairs = pairwise_agreement(counts)
    summary: dict = {
        "units": int((rated >= 2).sum()),
        "ratings": int((codes >= 0).sum()),
        "distinct_values": int(counts.shape[1]),
        "percent_agreement": _num(agree.sum() / pairs.sum()) if pairs.sum() else None,
        "krippendorff_alpha": _num(krippendorff_alpha_nominal(codes)) if (rated >= 2).any() else None,
        "fleiss_kappa": None,
        "fleiss_units": 0,
        "cohen_kappa": [],
    }
    full = int(rated.max()) if rated.size else 0
    complete = rated == full
    if full >= 2 and complete.any():
        summary["fleiss_kappa"] = _num(fleiss_kappa(counts[complete]))
        summary["fleiss_units"] = int(complete.sum())
        summary["fleiss_raters"] = full
    for i, j in itertools.combinations(range(codes.shape[0]), 2):
        overlap = int(((codes[i] >= 0) & (codes[j] >= 0)).sum())
        if overlap >= min_overlap:
            summary["cohen_kappa"].append(
                {
                    "a": raters[i],
                    "b": raters[j],
                    "units": overlap,
                    "kappa": _num(cohen_kappa(codes[i], codes[j])),
                }
            )
    return summary


# --------------------------------------------------------------------------- geometry similarity


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of two (n, 4) arrays of [x, y, w, h] boxes."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def keypoint_similarity(
    kp_a: np.ndarray, kp_b: np.ndarray, area: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """Element-wise OKS of (n, K, 3) keypoint arrays, symmetric between the two annotators.

    COCO's formula, exp(-d^2 / (2 s^2 (2 sigma)^2)) averaged over keypoints, with two choices made
    symmetric: s^2 is the mean of the two objects' box areas, and the keypoints averaged over are
    those either annotator labelled (v > 0) -- one labelled by only one of them scores 0. When both
    label every keypoint and the areas are equal it is exactly pycocotools' computeOks.
    """
    labelled_a, labelled_b = kp_a[..., 2] > 0, kp_b[..., 2] > 0
    d2 = ((kp_a[..., :2] - kp_b[..., :2]) ** 2).sum(axis=-1)
    variances = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    e = d2 / variances / (area[:, None] + np.spacing(1)) / 2.0
    scores = np.where(labelled_a & labelled_b, np.exp(-e), 0.0).sum(axis=-1)
    either = (labelled_a | labelled_b).sum(axis=-1)
    return np.where(either > 0, scores / np.maximum(either, 1), 1.0)


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


def cross_pairs(key_a: np.ndarray, key_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) with key_a[i] == key_b[j], without a Python loop."""
    order = np.argsort(key_b, kind="stable")
    sorted_b = key_b[order]
    start = np.searchsorted(sorted_b, key_a, side="left")
    count = np.searchsorted(sorted_b, key_a, side="right") - start
    ia = np.repeat(np.arange(len(key_a)), count)
    offsets = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    jb = order[np.repeat(start, count) + offsets]
    return ia, jb


def match_optimal(
    ia: np.ndarray, jb: np.ndarray, similarity: np.ndarray, group: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching per group maximising the summed similarity among pairs >= threshold.

    Most groups need no solver: when no object has two candidates at or above the threshold, the
    candidate pairs already are the optimal matching. Only the remaining groups (crowds of
    overlapping objects) go through the Hungarian algorithm, one small problem each.
    """
    if not 0 < threshold <= 1:
        raise ValueError("the matching threshold must be in (0, 1]")
    keep = similarity >= threshold
    ia, jb, similarity, group = ia[keep], jb[keep], similarity[keep], group[keep]
    if ia.size == 0:
        return ia, jb, similarity
    degree_a = np.bincount(ia)
    degree_b = np.bincount(jb)
    contested = (degree_a[ia] > 1) | (degree_b[jb] > 1)
    contested_groups = np.unique(group[contested])
    hard = np.isin(group, contested_groups)
    out_a, out_b, out_s = [ia[~hard]], [jb[~hard]], [similarity[~hard]]
    if contested_groups.size:
        idx = np.flatnonzero(hard)
        idx = idx[np.argsort(group[idx], kind="stable")]
        starts = np.flatnonzero(np.r_[True, group[idx][1:] != group[idx][:-1]])
        for lo, hi in zip(starts, [*starts[1:], len(idx)], strict=True):
            rows = idx[lo:hi]
            ua, ra = np.unique(ia[rows], return_inverse=True)
            ub, rb = np.unique(jb[rows], return_inverse=True)
            grid = np.zeros((len(ua), len(ub)))
            grid[ra, rb] = similarity[rows]
            r, c = linear_sum_assignment(grid, maximize=True)
            good = grid[r, c] >= threshold
            out_a.append(ua[r[good]])
            out_b.append(ub[c[good]])
            out_s.append(grid[r[good], c[good]])
    return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_s)


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


def boxes_of(geometries: Iterable[dict]) -> np.ndarray:
    """(n, 4) enclosing boxes of label geometries; NaN rows for geometries without one."""
    out = []
    for geometry in geometries:
        box = fmt.bbox_of(geometry) if geometry else None
        out.append(box if box is not None and len(box) == 4 else [np.nan] * 4)
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)


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


# --------------------------------------------------------------------------- whole analysis


@dataclass
class Analysis:
    """Everything measured over one frame of candidate labels: pair matches, clusters, ratings."""

    frame: LabelFrame
    annotators: list[int]
    matches: list[PairMatch]
    cluster: np.ndarray  # per row: the cluster (object) it belongs to
    threshold: float

    def kinds(self) -> list[str]:
        return sorted({m.kind for m in self.matches})


def analyse(
    frame: LabelFrame,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    sigmas: dict[int, np.ndarray] | None = None,
) -> Analysis:
    """Compare every pair of annotators on every measured geometry kind and cluster the matches."""
    annotators = sorted(int(a) for a in np.unique(frame.annotator) if a != CONSENSUS)
    items_of = items_by_annotator(frame)
    kinds = [k for k in MEASURED_KINDS if (frame.kind == k).any()]
    matches = [
        compare_geometry(frame, a, b, kind, threshold=threshold, sigmas=sigmas, items_of=items_of)
        for kind in kinds
        for a, b in itertools.combinations(annotators, 2)
    ]
    return Analysis(frame, annotators, matches, clusters_of(len(frame), matches), threshold)


def clusters_of(n_rows: int, matches: Sequence[PairMatch]) -> np.ndarray:
    """Connected components of the match graph: one id per real-world object, per row."""
    if n_rows == 0:
        return np.empty(0, dtype=np.int64)
    a = np.concatenate([m.matched_a for m in matches] or [np.empty(0, np.int64)])
    b = np.concatenate([m.matched_b for m in matches] or [np.empty(0, np.int64)])
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n_rows, n_rows))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


@dataclass
class Tally:
    """Sums that precision, recall, F1 and mean similarity are computed from."""

    matched: float = 0.0
    n_a: float = 0.0
    n_b: float = 0.0
    similarity: float = 0.0

    def add(self, other: Tally) -> None:
        self.matched += other.matched
        self.n_a += other.n_a
        self.n_b += other.n_b
        self.similarity += other.similarity

    def as_dict(self) -> dict:
        m, na, nb = self.matched, self.n_a, self.n_b
        return {
            "matched": int(m),
            "objects_a": int(na),
            "objects_b": int(nb),
            "precision": _num(m / nb) if nb else None,
            "recall": _num(m / na) if na else None,
            "f1": _num(2 * m / (na + nb)) if na + nb else None,
            "mean_similarity": _num(self.similarity / m) if m else None,
        }


def tally(match: PairMatch) -> Tally:
    return Tally(len(match.matched_a), len(match.rows_a), len(match.rows_b), float(match.similarity.sum()))


def tally_by(match: PairMatch, column: np.ndarray) -> dict[int, Tally]:
    """Per value of a frame column (category, item ...): the pair's tallies."""
    values = np.unique(np.concatenate([column[match.rows_a], column[match.rows_b]]))
    index = {int(v): i for i, v in enumerate(values)}
    pos = np.searchsorted(values, column)  # valid for the rows below, which hold only these values
    n = len(values)
    matched = np.bincount(pos[match.matched_a], minlength=n)
    similarity = np.bincount(pos[match.matched_a], weights=match.similarity, minlength=n)
    n_a = np.bincount(pos[match.rows_a], minlength=n)
    n_b = np.bincount(pos[match.rows_b], minlength=n)
    return {
        v: Tally(float(matched[i]), float(n_a[i]), float(n_b[i]), float(similarity[i]))
        for v, i in index.items()
    }


# --------------------------------------------------------------------------- nominal ratings from a frame


def attribute_ratings(
    analysis: Analysis, name: str, categories: set[int] | None = None
) -> tuple[np.ndarray, list, np.ndarray]:
    """Annotators x clusters codes for one attribute, the values, and each unit's cluster id."""
    frame = analysis.frame
    rows = np.flatnonzero(frame.annotator != CONSENSUS)
    if categories is not None:
        rows = rows[np.isin(frame.category[rows], list(categories))]
    values: dict[str, int] = {}
    originals: list = []
    codes_of_row = np.full(len(rows), MISSING, dtype=np.int64)
    for k, r in enumerate(rows):
        value = (frame.attributes[r] or {}).get(name)
        if value is None:
            continue
        key = value_key(value)
        if key not in values:
            values[key] = len(originals)
            originals.append(value)
        codes_of_row[k] = values[key]
    units, unit_of_row = np.unique(analysis.cluster[rows], return_inverse=True)
    rater_index = {a: i for i, a in enumerate(analysis.annotators)}
    raters = np.array([rater_index[int(a)] for a in frame.annotator[rows]], dtype=np.int64)
    codes = np.full((len(analysis.annotators), len(units)), MISSING, dtype=np.int64)
    codes[raters, unit_of_row] = codes_of_row
    return codes, originals, units


def classification_ratings(frame: LabelFrame, annotators: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Annotators x images codes of the class each annotator gave each image, and the image ids."""
    rows = np.flatnonzero((frame.kind == fmt.CLASSIFICATION) & (frame.annotator != CONSENSUS))
    items, unit = np.unique(frame.item[rows], return_inverse=True)
    rater_index = {a: i for i, a in enumerate(annotators)}
    raters = np.array([rater_index[int(a)] for a in frame.annotator[rows]], dtype=np.int64)
    codes = np.full((len(annotators), len(items)), MISSING, dtype=np.int64)
    codes[raters, unit] = frame.category[rows]  # category ids are codes enough for nominal measures
    return _compact(codes), items


def _compact(codes: np.ndarray) -> np.ndarray:
    out = np.full(codes.shape, MISSING, dtype=np.int64)
    rated = codes >= 0
    if rated.any():
        _, out[rated] = np.unique(codes[rated], return_inverse=True)
    return out


# --------------------------------------------------------------------------- per-image scores


def item_scores(analysis: Analysis, attribute_names: Sequence[str] = ()) -> dict[int, dict]:
    """Per multiply-labelled image: geometry F1, class and attribute raw agreement, and their minimum."""
    frame = analysis.frame
    items, item_of_row = np.unique(frame.item, return_inverse=True)
    n = len(items)
    real = frame.annotator != CONSENSUS
    multiple = annotators_per_item(item_of_row[real], frame.annotator[real], n) >= 2
    parts: dict[str, np.ndarray] = {}  # component -> per image value, NaN where it does not apply

    matched, objects = np.zeros(n), np.zeros(n)
    for m in analysis.matches:
        matched += np.bincount(item_of_row[m.matched_a], minlength=n)
        objects += np.bincount(item_of_row[m.rows_a], minlength=n) + np.bincount(
            item_of_row[m.rows_b], minlength=n
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        parts["geometry_f1"] = np.where(objects > 0, 2 * matched / objects, np.nan)

    codes, class_items = classification_ratings(frame, analysis.annotators)
    if class_items.size:
        agree, total = pairwise_agreement(value_counts(codes))
        value = np.full(n, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            value[np.searchsorted(items, class_items)] = np.where(total > 0, agree / total, np.nan)
        parts["class_agreement"] = value

    if attribute_names and len(frame):
        cluster_item = np.zeros(int(analysis.cluster.max()) + 1, dtype=np.int64)
        cluster_item[analysis.cluster] = item_of_row
        agree_sum, pair_sum = np.zeros(n), np.zeros(n)
        for name in attribute_names:
            codes, _, units = attribute_ratings(analysis, name)
            if units.size:
                agree, total = pairwise_agreement(value_counts(codes))
                agree_sum += np.bincount(cluster_item[units], weights=agree, minlength=n)
                pair_sum += np.bincount(cluster_item[units], weights=total, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            parts["attribute_agreement"] = np.where(pair_sum > 0, agree_sum / pair_sum, np.nan)

    table = np.stack(list(parts.values()), axis=1)
    applies = ~np.isnan(table)
    score = np.where(applies, table, np.inf).min(axis=1)
    keep = np.flatnonzero(multiple & applies.any(axis=1))
    columns = {name: np.round(table[keep, k], 6).tolist() for k, name in enumerate(parts)}
    out: dict[int, dict] = {}
    for pos, (item, value) in enumerate(
        zip(items[keep].tolist(), np.round(score[keep], 6).tolist(), strict=True)
    ):
        entry = {
            name: column[pos] for name, column in columns.items() if column[pos] == column[pos]
        }  # not NaN
        entry["score"] = value
        out[item] = entry
    return out


def annotators_per_item(item_index: np.ndarray, annotator: np.ndarray, n_items: int) -> np.ndarray:
    """How many distinct annotators labelled each image (item_index: 0..n_items-1 per row)."""
    _, ann_index = np.unique(annotator, return_inverse=True)
    width = int(ann_index.max()) + 1 if ann_index.size else 1
    distinct = np.unique(item_index.astype(np.int64) * width + ann_index)
    return np.bincount(distinct // width, minlength=n_items)


# --------------------------------------------------------------------------- helpers


def _num(value, digits: int = 6):
    """A JSON-safe float: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits)


# --------------------------------------------------------------------------- a version's report

REPORT_LOWEST_ITEMS = 25  # the report lists this many least-agreed images; the review queue takes all


@dataclass
class VersionLabels:
    """A version's labels as frames, with the names the report prints."""

    candidates: LabelFrame
    finals: LabelFrame
    annotators: dict[int, str]
    categories: dict[int, str]
    guidelines: dict[int, str]
    items: dict[int, str]
    sigmas: dict[int, np.ndarray]
    keypoint_counts: dict[int, int]
    attributes: list[tuple[str, set[int] | None]]  # nominal label attributes and the classes they apply to


def load_version_labels(version) -> VersionLabels:
    """Read a version's labels into frames: candidates (one annotator each) and finals."""
    columns: dict[bool, dict[str, list]] = {
        final: {
            k: []
            for k in ("item", "annotator", "category", "kind", "guideline", "uid", "geometry", "attributes")
        }
        for final in (False, True)
    }
    rows = Label.objects.filter(version=version).values_list(
        "item_id", "annotator_id", "category_id", "geometry_type", "guideline_version_id", "uid", "geometry",
        "attributes", "is_final",
    )  # fmt: skip
    for item, annotator, category, kind, guideline, uid, geometry, attributes, is_final in rows.iterator(
        chunk_size=5000
    ):
        if not is_final and annotator is None:
            continue  # a candidate nobody is named for cannot be compared with anyone
        col = columns[is_final]
        col["item"].append(item)
        col["annotator"].append(CONSENSUS if is_final else annotator)
        col["category"].append(category)
        col["kind"].append(kind)
        col["guideline"].append(-1 if guideline is None else guideline)
        col["uid"].append(str(uid))
        col["geometry"].append(geometry or {})
        col["attributes"].append(attributes or {})
    item_rows = Item.objects.filter(version=version).values_list("id", "key", "height", "width")
    items, sizes = {}, {}
    for pk, key, height, width in item_rows.iterator(chunk_size=5000):
        items[pk] = key
        sizes[pk] = (height, width)

    def frame(col) -> LabelFrame:
        return LabelFrame(
            item=np.asarray(col["item"], dtype=np.int64),
            annotator=np.asarray(col["annotator"], dtype=np.int64),
            category=np.asarray(col["category"], dtype=np.int64),
            kind=np.asarray(col["kind"], dtype=str),
            boxes=boxes_of(col["geometry"]),
            guideline=np.asarray(col["guideline"], dtype=np.int64),
            uid=np.asarray(col["uid"], dtype=object),
            geometry=col["geometry"],
            attributes=col["attributes"],
            item_size=sizes,
        )

    categories = Category.objects.filter(schema__version=version)
    names = {c.pk: c.name for c in categories}
    by_name = {c.name: c.pk for c in categories}
    sigmas = {c.pk: np.asarray(c.keypoint_sigmas, dtype=np.float64) for c in categories if c.keypoint_sigmas}
    attributes = []
    for spec in AttributeSpec.objects.filter(
        schema__version=version,
        scope=AttributeSpec.Scope.LABEL,
        type__in=[AttributeSpec.Type.CHOICE, AttributeSpec.Type.BOOLEAN],
    ).order_by("name"):
        applies = {by_name[n] for n in spec.categories if n in by_name} if spec.categories else None
        attributes.append((spec.name, applies))
    candidates, finals = frame(columns[False]), frame(columns[True])
    used = set(candidates.annotator.tolist())
    return VersionLabels(
        candidates=candidates,
        finals=finals,
        annotators=dict(Annotator.objects.filter(pk__in=used).values_list("pk", "pseudonym")),
        categories=names,
        guidelines=dict(
            GuidelineVersion.objects.filter(labels__version=version).values_list("pk", "tag").distinct()
        ),
        items=items,
        sigmas=sigmas,
        keypoint_counts={c.pk: len(c.keypoint_names) for c in categories if c.keypoint_names},
        attributes=attributes,
    )


def compute_agreement_report(
    version, *, threshold: float = DEFAULT_THRESHOLD, item_threshold: float = 0.8
) -> dict:
    """The agreement report of a version: overall, per class, per annotator, per guideline version."""
    data = load_version_labels(version)
    return agreement_report(data, threshold=threshold, item_threshold=item_threshold)


def agreement_report(
    data: VersionLabels, *, threshold: float = DEFAULT_THRESHOLD, item_threshold: float = 0.8
) -> dict:
    """The report from frames already loaded (the bench calls this without a database)."""
    frame = data.candidates
    annotators_per_item = _annotators_per_item(frame)
    report: dict = {
        "threshold": threshold,
        "item_threshold": item_threshold,
        "annotators": [data.annotators.get(a, str(a)) for a in sorted(set(frame.annotator.tolist()))],
        "candidate_labels": len(frame),
        "annotations_per_item": annotators_per_item,
        "measurable": bool(annotators_per_item["items_with_2_or_more"]),
    }
    if not report["measurable"]:
        report["reason"] = (
            "No image was labelled independently by two or more annotators: agreement cannot be measured."
        )
        return report
    analysis = analyse(frame, threshold=threshold, sigmas=data.sigmas)
    report["geometry"] = _geometry_section(analysis, data)
    report["categorical"] = _categorical_section(analysis, data)
    report["per_annotator"] = _annotator_section(analysis, data, threshold, report["categorical"])
    report["per_guideline"] = _guideline_section(data, threshold)
    scores = item_scores(analysis, [name for name, _ in data.attributes])
    low = sorted(scores.items(), key=lambda kv: kv[1]["score"])
    report["items"] = {
        "scored": len(scores),
        "below_threshold": sum(1 for _, s in low if s["score"] < item_threshold),
        "mean_score": _num(np.mean([s["score"] for s in scores.values()])) if scores else None,
        "lowest": [{"item": data.items.get(i, str(i)), **s} for i, s in low[:REPORT_LOWEST_ITEMS]],
    }
    report["summary"] = _headline(report)
    return report


def _annotators_per_item(frame: LabelFrame) -> dict:
    if not len(frame):
        return {"items": 0, "mean": 0, "histogram": {}, "items_with_2_or_more": 0}
    items, item_index = np.unique(frame.item, return_inverse=True)
    per_item = annotators_per_item(item_index, frame.annotator, len(items))
    hist = np.bincount(per_item)
    return {
        "items": int(per_item.size),
        "mean": _num(per_item.mean(), 3),
        "histogram": {str(k): int(v) for k, v in enumerate(hist) if v},
        "items_with_2_or_more": int((per_item >= 2).sum()),
    }


def _geometry_section(analysis: Analysis, data: VersionLabels) -> dict:
    frame = analysis.frame
    section: dict = {}
    for kind in analysis.kinds():
        matches = [m for m in analysis.matches if m.kind == kind]
        overall = Tally()
        per_class: dict[int, Tally] = {}
        pairs = []
        for m in matches:
            t = tally(m)
            overall.add(t)
            pairs.append(
                {
                    "a": data.annotators.get(m.a, str(m.a)),
                    "b": data.annotators.get(m.b, str(m.b)),
                    **t.as_dict(),
                }
            )
            for cat, ct in tally_by(m, frame.category).items():
                per_class.setdefault(cat, Tally()).add(ct)
        entry = {
            "similarity": SIMILARITY[kind],
            "overall": overall.as_dict(),
            "pairs": pairs,
            "per_class": {data.categories.get(c, str(c)): t.as_dict() for c, t in sorted(per_class.items())},
        }
        if kind == fmt.KEYPOINTS:
            entry["sigmas"] = {
                data.categories.get(c, str(c)): sigmas_source(
                    data.keypoint_counts.get(c, 0), data.sigmas.get(c)
                )
                for c in per_class
            }
        section[kind] = entry
    return section


def _categorical_section(analysis: Analysis, data: VersionLabels) -> dict:
    raters = [data.annotators.get(a, str(a)) for a in analysis.annotators]
    section: dict = {}
    codes, items = classification_ratings(analysis.frame, analysis.annotators)
    if items.size and ((codes >= 0).sum(axis=0) >= 2).any():
        section["classification"] = nominal_agreement(codes, raters)
    attributes = {}
    frame = analysis.frame
    for name, applies in data.attributes:
        codes, values, units = attribute_ratings(analysis, name, applies)
        if not units.size or not ((codes >= 0).sum(axis=0) >= 2).any():
            continue
        entry = nominal_agreement(codes, raters)
        entry["values"] = list(values)
        cluster_category = np.zeros(int(analysis.cluster.max()) + 1, dtype=np.int64)
        cluster_category[analysis.cluster] = frame.category
        per_class = {}
        for cat in np.unique(cluster_category[units]):
            sel = cluster_category[units] == cat
            sub = codes[:, sel]
            if ((sub >= 0).sum(axis=0) >= 2).any():
                c = nominal_agreement(sub, raters)
                per_class[data.categories.get(int(cat), str(cat))] = {
                    k: c[k] for k in ("units", "percent_agreement", "krippendorff_alpha", "fleiss_kappa")
                }
        entry["per_class"] = per_class
        attributes[name] = entry
    if attributes:
        section["attributes"] = attributes
    return section


def _annotator_section(
    analysis: Analysis, data: VersionLabels, threshold: float, categorical: dict
) -> list[dict]:
    nominal = [
        s for s in [categorical.get("classification"), *categorical.get("attributes", {}).values()] if s
    ]
    frame = analysis.frame
    finals = data.finals
    combined = LabelFrame.concat([frame, finals]) if len(finals) else frame
    items_of = items_by_annotator(combined)
    items_of[CONSENSUS] = np.unique(finals.item) if len(finals) else np.empty(0, np.int64)
    out = []
    for a in analysis.annotators:
        rows = frame.annotator == a
        with_others = Tally()
        for m in analysis.matches:
            if a in (m.a, m.b):
                t = tally(m)
                if m.b == a:  # seen from a's side
                    t = Tally(t.matched, t.n_b, t.n_a, t.similarity)
                with_others.add(t)
        entry: dict = {
            "annotator": data.annotators.get(a, str(a)),
            "labels": int(rows.sum()),
            "items": int(np.unique(frame.item[rows]).size),
            "guideline_versions": sorted(
                {data.guidelines.get(int(g), "") for g in np.unique(frame.guideline[rows]) if g >= 0}
            ),
            "with_others": with_others.as_dict() if with_others.n_a + with_others.n_b else None,
        }
        kappas = [
            k["kappa"]
            for section in nominal
            for k in section["cohen_kappa"]
            if entry["annotator"] in (k["a"], k["b"]) and k["kappa"] is not None
        ]
        entry["mean_cohen_kappa"] = _num(np.mean(kappas)) if kappas else None
        if len(finals):
            entry["vs_consensus"] = _versus_consensus(combined, a, data, threshold, items_of)
        out.append(entry)
    return out


def _versus_consensus(combined: LabelFrame, a: int, data: VersionLabels, threshold: float, items_of) -> dict:
    """How an annotator's candidates compare with the final labels: geometry, classes, attributes."""
    geometry = Tally()
    attr_agree: dict[str, list[int]] = {}
    for kind in MEASURED_KINDS:
        if not ((combined.kind == kind) & (combined.annotator == a)).any():
            continue
        m = compare_geometry(
            combined, CONSENSUS, a, kind, threshold=threshold, sigmas=data.sigmas, items_of=items_of
        )
        geometry.add(tally(m))
        for final_row, cand_row in zip(m.matched_a, m.matched_b, strict=True):
            final_attrs, cand_attrs = combined.attributes[final_row], combined.attributes[cand_row]
            for name, applies in data.attributes:
                if applies is not None and int(combined.category[final_row]) not in applies:
                    continue
                if name in final_attrs and name in cand_attrs:
                    counts = attr_agree.setdefault(name, [0, 0])
                    counts[0] += final_attrs[name] == cand_attrs[name]
                    counts[1] += 1
    out: dict = {"geometry": geometry.as_dict() if geometry.n_a + geometry.n_b else None}
    out["attribute_accuracy"] = {k: _num(v[0] / v[1]) for k, v in sorted(attr_agree.items()) if v[1]}
    rows_c = np.flatnonzero((combined.kind == fmt.CLASSIFICATION) & (combined.annotator == CONSENSUS))
    rows_a = np.flatnonzero((combined.kind == fmt.CLASSIFICATION) & (combined.annotator == a))
    if rows_c.size and rows_a.size:
        final_class = dict(
            zip(combined.item[rows_c].tolist(), combined.category[rows_c].tolist(), strict=True)
        )
        hits = [
            final_class[i] == c
            for i, c in zip(combined.item[rows_a].tolist(), combined.category[rows_a].tolist(), strict=True)
            if i in final_class
        ]
        out["class_accuracy"] = _num(sum(hits) / len(hits)) if hits else None
    return out


def _guideline_section(data: VersionLabels, threshold: float) -> list[dict]:
    """The headline measures again, over the labels made under each guideline version alone."""
    frame = data.candidates
    out = []
    for g in np.unique(frame.guideline):
        sub = frame.take(np.flatnonzero(frame.guideline == g))
        per_item = _annotators_per_item(sub)
        entry: dict = {
            "guideline_version": data.guidelines.get(int(g), "unknown") if g >= 0 else "unknown",
            "labels": len(sub),
            "items_with_2_or_more": per_item["items_with_2_or_more"],
        }
        if per_item["items_with_2_or_more"]:
            analysis = analyse(sub, threshold=threshold, sigmas=data.sigmas)
            geometry = Tally()
            for m in analysis.matches:
                geometry.add(tally(m))
            entry["geometry"] = geometry.as_dict() if geometry.n_a + geometry.n_b else None
            categorical = _categorical_section(analysis, data)
            entry["classification_alpha"] = categorical.get("classification", {}).get("krippendorff_alpha")
            entry["attribute_alpha"] = {
                name: s["krippendorff_alpha"] for name, s in categorical.get("attributes", {}).items()
            }
        out.append(entry)
    return out


def _headline(report: dict) -> dict:
    """The few numbers a buyer reads first."""
    geometry = report.get("geometry", {})
    categorical = report.get("categorical", {})
    return {
        "geometry_f1": {kind: s["overall"]["f1"] for kind, s in geometry.items()},
        "geometry_mean_similarity": {kind: s["overall"]["mean_similarity"] for kind, s in geometry.items()},
        "classification_alpha": categorical.get("classification", {}).get("krippendorff_alpha"),
        "attribute_alpha": {k: v["krippendorff_alpha"] for k, v in categorical.get("attributes", {}).items()},
        "items_below_threshold": report["items"]["below_threshold"],
    }
