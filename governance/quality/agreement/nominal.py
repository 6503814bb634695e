"""Agreement over nominal (categorical) ratings: Cohen's and Fleiss' kappa, Krippendorff's alpha."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Hashable, Sequence

import numpy as np

MISSING = -1  # a rating that was not given


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


def _num(value, digits: int = 6):
    """A JSON-safe float: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits)
