"""The whole analysis of a frame: matches of every pair, clusters, tallies, per-image scores."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from governance.quality.agreement.geometry import (
    CONSENSUS,
    DEFAULT_THRESHOLD,
    MEASURED_KINDS,
    LabelFrame,
    PairMatch,
    compare_geometry,
    items_by_annotator,
)
from governance.quality.agreement.nominal import MISSING, _num, pairwise_agreement, value_counts, value_key
from marketplace.formats import model as fmt


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
