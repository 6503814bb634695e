"""One-to-one matching of labels by geometry: the numeric kernel that agreement (governance.quality)
and lineage (marketplace.deliveries) share. Pure NumPy and SciPy, no Django, like every module here.

Labels are rows of columns; a "key" groups the rows that may match (same image, class, kind, ...).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.optimize import linear_sum_assignment

from . import model as fmt


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


def boxes_of(geometries: Iterable[dict]) -> np.ndarray:
    """(n, 4) enclosing boxes of label geometries; NaN rows for geometries without one."""
    out = []
    for geometry in geometries:
        box = fmt.bbox_of(geometry) if geometry else None
        out.append(box if box is not None and len(box) == 4 else [np.nan] * 4)
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)
