"""Class and demographic balance of a version's final labels, and its annotator pool.

What a buyer checks before training on a dataset, and what Art. 10(2)(f) and 10(3) of the AI Act
ask a provider to examine: how many examples each class has in each split, how many objects an
image carries and how big they are, and -- for every attribute the schema marks as describing a
person -- how the people are spread across its values, overall, per class and crossed with the
other person attributes, against the distribution the supplier declares as its target.

The arithmetic runs on NumPy columns (``BalanceInput``) so that a million labels take a fraction
of a second; ``load_balance_input`` reads them from the database. Only final labels count: the
candidates are the annotators' drafts, not the dataset.

Flags, each a gap the compliance report lists:
* *absent*: a declared value (or a cell of a cross-table) with no example at all;
* *too few*: fewer than ``min_count`` examples (30 by default: below that a per-group error
  rate is too noisy to compare groups);
* *under-/over-represented*: an observed share below (1 - tolerance) or above (1 + tolerance)
  times the declared target share (tolerance 0.2 by default). The chi-square goodness-of-fit test
  against the target says how surprising the whole deviation would be by chance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count
from scipy.stats import chi2

from governance.models import Annotator
from governance.quality.agreement import boxes_of
from marketplace.models import AttributeSpec, Category, Item, Label

MIN_COUNT = 30
TOLERANCE = 0.2
# COCO's size buckets, by box area in pixels: small < 32^2 <= medium < 96^2 <= large.
COCO_SMALL, COCO_LARGE = 32**2, 96**2
# Buckets of an object's box area as a share of its image.
RELATIVE_EDGES = [0.0, 0.01, 0.05, 0.15, 0.4, math.inf]
RELATIVE_NAMES = ["<1%", "1-5%", "5-15%", "15-40%", ">=40%"]


# --------------------------------------------------------------------------- statistics


def normalised_entropy(counts) -> float | None:
    """Shannon entropy of the counts over log(number of groups): 1 is perfectly even, 0 one group only."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size < 2 or counts.sum() == 0:
        return None
    p = counts[counts > 0] / counts.sum()
    return max(0.0, float(-(p * np.log(p)).sum() / math.log(counts.size)))


def min_max_ratio(counts) -> float | None:
    """Smallest group over largest group (0 when a group is empty)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0 or counts.max() == 0:
        return None
    return float(counts.min() / counts.max())


def chi_square(observed, expected_shares) -> tuple[float, float, int]:
    """Pearson's goodness-of-fit statistic, its p-value and degrees of freedom (as scipy's chisquare)."""
    observed = np.asarray(observed, dtype=np.float64)
    shares = np.asarray(expected_shares, dtype=np.float64)
    expected = shares / shares.sum() * observed.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(
            expected > 0, (observed - expected) ** 2 / expected, np.where(observed > 0, np.inf, 0.0)
        )
    statistic = float(terms.sum())
    dof = observed.size - 1
    return statistic, float(chi2.sf(statistic, dof)), dof


def distribution(
    values: Sequence[str], counts: Sequence[int], *, min_count: int = MIN_COUNT, declared: bool = True
) -> dict:
    """Counts and shares of groups, with evenness and the groups that are absent or too small.

    ``declared``: the value list is the schema's, so a value with no example is a gap; otherwise
    only the observed values are listed.
    """
    counts_arr = np.asarray(counts, dtype=np.int64)
    total = int(counts_arr.sum())
    return {
        "total": total,
        "counts": {v: int(c) for v, c in zip(values, counts_arr, strict=True)},
        "shares": {v: _num(c / total) if total else None for v, c in zip(values, counts_arr, strict=True)},
        "normalised_entropy": _num(normalised_entropy(counts_arr)),
        "min_max_ratio": _num(min_max_ratio(counts_arr)),
        "absent": [v for v, c in zip(values, counts_arr, strict=True) if c == 0] if declared else [],
        "too_few": [v for v, c in zip(values, counts_arr, strict=True) if 0 < c < min_count],
    }


def target_deviation(
    values: Sequence[str], counts: Sequence[int], target: dict, *, tolerance: float = TOLERANCE
) -> dict | None:
    """Observed against declared shares: chi-square test, the largest gap, the groups off target."""
    shares = {v: float(target[v]) for v in values if v in target and float(target[v]) >= 0}
    if not shares or sum(shares.values()) <= 0:
        return None
    norm = sum(shares.values())
    names = list(shares)
    observed = np.array([counts[list(values).index(v)] for v in names], dtype=np.float64)
    total = observed.sum()
    if total == 0:
        return {"target": {v: _num(s / norm) for v, s in shares.items()}, "observed_total": 0}
    target_share = np.array([shares[v] / norm for v in names])
    observed_share = observed / total
    statistic, p_value, dof = chi_square(observed, target_share)
    gap = observed_share - target_share
    worst = int(np.argmax(np.abs(gap)))
    return {
        "target": {v: _num(s) for v, s in zip(names, target_share, strict=True)},
        "observed": {v: _num(s) for v, s in zip(names, observed_share, strict=True)},
        "chi_square": _num(statistic),
        "p_value": _num(p_value),
        "dof": dof,
        "largest_gap": {
            "value": names[worst],
            "observed": _num(observed_share[worst]),
            "target": _num(target_share[worst]),
            "gap": _num(gap[worst]),
        },
        "under_represented": [
            v for v, o, t in zip(names, observed_share, target_share, strict=True) if o < t * (1 - tolerance)
        ],
        "over_represented": [
            v for v, o, t in zip(names, observed_share, target_share, strict=True) if o > t * (1 + tolerance)
        ],
        "tolerance": tolerance,
    }


# --------------------------------------------------------------------------- columns


@dataclass
class Attribute:
    """One attribute's values as codes over the labels (scope label) or the images (scope item)."""

    name: str
    scope: str
    values: list[str]  # code -> value; the declared values first
    codes: np.ndarray  # per label or per item; -1 where not given
    applies: np.ndarray  # per label or per item: the attribute applies there
    declared: bool = True
    target: dict = field(default_factory=dict)
    describes_person: bool = True


@dataclass
class BalanceInput:
    """A version's final labels and images as columns."""

    splits: list[str]
    categories: list[str]
    item_split: np.ndarray  # per image: split code
    item_area: np.ndarray  # per image: width x height
    label_item: np.ndarray  # per label: image index
    label_category: np.ndarray  # per label: category code
    label_boxes: np.ndarray  # per label: enclosing [x, y, w, h], NaN when it has none
    attributes: list[Attribute] = field(default_factory=list)
    # per label: True for another view of an object already counted (see ``same_object_views``)
    label_same_object: np.ndarray | None = None


# A 2D cuboid is the projection of an object whose 3D pose a cuboid_3d gives: on one image and for one
# class, the two describe the same objects (as in KITTI or nuScenes, where each 3D box comes with its
# 2D box). The class share counts objects, so the second view is not counted again. Other pairs of
# kinds (a crack's polyline and a box) may be different objects and are counted as they are.
PAIRED_VIEWS = ("cuboid_2d", "cuboid_3d")


def same_object_views(
    label_item: np.ndarray, label_category: np.ndarray, label_kind: Sequence[str]
) -> np.ndarray:
    """Per label, whether it is the second view of an object: of each image and class, the first
    min(#cuboid_2d, #cuboid_3d) 3D cuboids (their 2D cuboids are counted)."""
    kinds = np.asarray(label_kind, dtype=object)
    out = np.zeros(len(kinds), dtype=bool)
    flat, second = kinds == PAIRED_VIEWS[0], kinds == PAIRED_VIEWS[1]
    if not flat.any() or not second.any():
        return out
    key = label_item.astype(np.int64) * (int(label_category.max()) + 1) + label_category
    # Vectorised: rank each 3D cuboid within its (image, class) and keep those ranked below the
    # number of 2D cuboids there.
    second_at = np.nonzero(second)[0]
    order = np.argsort(key[second_at], kind="stable")
    sorted_keys = key[second_at][order]
    rank = np.arange(len(sorted_keys)) - np.searchsorted(sorted_keys, sorted_keys, side="left")
    flat_keys, flat_counts = np.unique(key[flat], return_counts=True)
    at = np.minimum(np.searchsorted(flat_keys, sorted_keys), len(flat_keys) - 1)
    flats_there = np.where(flat_keys[at] == sorted_keys, flat_counts[at], 0)
    out[second_at[order[rank < flats_there]]] = True
    return out


def encode_values(raw: Sequence, declared: Sequence) -> tuple[np.ndarray, list[str]]:
    """Codes of raw values, declared values first (as strings; None and "" are missing)."""
    values = [str(v) for v in declared]
    index = {v: i for i, v in enumerate(values)}
    codes = np.full(len(raw), -1, dtype=np.int64)
    for k, value in enumerate(raw):
        if value is None or value == "":
            continue
        key = str(value).lower() if isinstance(value, bool) else str(value)
        if key not in index:
            index[key] = len(values)
            values.append(key)
        codes[k] = index[key]
    return codes, values


# --------------------------------------------------------------------------- the report


def balance_report(data: BalanceInput, *, min_count: int = MIN_COUNT, tolerance: float = TOLERANCE) -> dict:
    """Every balance statistic of the columns, JSON-ready; ``gaps`` lists what is missing or off target."""
    n_items, n_labels = len(data.item_split), len(data.label_item)
    n_cat, n_split = len(data.categories), len(data.splits)
    report: dict = {"items": n_items, "final_labels": n_labels, "min_count": min_count}
    gaps: list[dict] = []

    # Classes count objects: a label that is another view of an object already counted is left out.
    counted = np.ones(n_labels, dtype=bool) if data.label_same_object is None else ~data.label_same_object
    counted_category = data.label_category[counted]
    per_class = np.bincount(counted_category, minlength=n_cat)
    label_split = data.item_split[data.label_item[counted]] if n_labels else np.empty(0, np.int64)
    grid = np.bincount(label_split * n_cat + counted_category, minlength=n_split * n_cat).reshape(
        n_split, n_cat
    )
    classes = distribution(data.categories, per_class, min_count=min_count)
    not_counted = np.bincount(data.label_category[~counted], minlength=n_cat)
    classes["same_object_views"] = {
        c: int(not_counted[k]) for k, c in enumerate(data.categories) if not_counted[k]
    }
    classes["per_split"] = {
        split: {c: int(grid[s, k]) for k, c in enumerate(data.categories)}
        for s, split in enumerate(data.splits)
        if grid[s].sum() or (data.item_split == s).any()
    }
    report["classes"] = classes
    for name in classes["absent"]:
        gaps.append(_gap("class", f"class {name!r} has no label", name=name))
    for name in classes["too_few"]:
        gaps.append(
            _gap("class", f"class {name!r} has {classes['counts'][name]} labels (< {min_count})", name=name)
        )
    for split, row in classes["per_split"].items():
        missing = [c for c, n in row.items() if n == 0 and classes["counts"][c] > 0]
        if missing and split != "unassigned":
            gaps.append(_gap("split", f"split {split!r} has no label of {', '.join(missing)}", split=split))

    per_item = np.bincount(data.label_item, minlength=n_items) if n_items else np.empty(0, np.int64)
    report["labels_per_item"] = {
        "mean": _num(per_item.mean()) if n_items else None,
        "median": _num(np.median(per_item)) if n_items else None,
        "max": int(per_item.max()) if n_items else 0,
        "items_without_labels": int((per_item == 0).sum()),
        "histogram": _histogram(per_item),
    }
    report["object_sizes"] = _sizes(data)
    report["person_attributes"] = []
    report["context_attributes"] = []
    for attr in data.attributes:
        entry = _attribute_entry(data, attr, min_count=min_count, tolerance=tolerance)
        if attr.describes_person:
            report["person_attributes"].append(entry)
            gaps.extend(_attribute_gaps(entry, min_count))
        else:
            report["context_attributes"].append(entry)
    person = [a for a in data.attributes if a.describes_person]
    report["cross_tables"] = []
    for i, a in enumerate(person):
        for b in person[i + 1 :]:
            if a.scope != b.scope:
                continue
            table = _cross_table(a, b, min_count)
            report["cross_tables"].append(table)
            for cell in table["absent"]:
                gaps.append(
                    _gap("intersection", f"no example with {a.name}={cell[0]} and {b.name}={cell[1]}")
                )
    report["gaps"] = gaps
    return report


def _attribute_entry(data: BalanceInput, attr: Attribute, *, min_count: int, tolerance: float) -> dict:
    given = attr.applies & (attr.codes >= 0)
    counts = np.bincount(attr.codes[given], minlength=len(attr.values))
    entry = {
        "name": attr.name,
        "scope": attr.scope,
        "applicable": int(attr.applies.sum()),
        "labelled": int(given.sum()),
        "unlabelled": int((attr.applies & (attr.codes < 0)).sum()),
        "distribution": distribution(attr.values, counts, min_count=min_count, declared=attr.declared),
    }
    if attr.scope == AttributeSpec.Scope.LABEL:
        per_class = {}
        for k, name in enumerate(data.categories):
            sel = given & (data.label_category == k)
            if sel.any():
                per_class[name] = distribution(
                    attr.values, np.bincount(attr.codes[sel], minlength=len(attr.values)), min_count=min_count
                )
        entry["per_class"] = per_class
    if attr.target:
        entry["target"] = target_deviation(attr.values, counts.tolist(), attr.target, tolerance=tolerance)
    return entry


def _attribute_gaps(entry: dict, min_count: int) -> list[dict]:
    name, dist = entry["name"], entry["distribution"]
    gaps = [_gap("absent", f"{name}={v}: no example", attribute=name, value=v) for v in dist["absent"]]
    gaps += [
        _gap("too_few", f"{name}={v}: {dist['counts'][v]} examples (< {min_count})", attribute=name, value=v)
        for v in dist["too_few"]
    ]
    target = entry.get("target") or {}
    for v in target.get("under_represented", []):
        gaps.append(
            _gap(
                "under_represented",
                f"{name}={v}: {_pct(target['observed'][v])} of examples, target {_pct(target['target'][v])}",
                attribute=name,
                value=v,
            )
        )
    if entry["unlabelled"]:
        gaps.append(
            _gap(
                "unlabelled",
                f"{name}: {entry['unlabelled']} of {entry['applicable']} without a value",
                attribute=name,
            )
        )
    return gaps


def _cross_table(a: Attribute, b: Attribute, min_count: int) -> dict:
    both = a.applies & b.applies & (a.codes >= 0) & (b.codes >= 0)
    grid = np.bincount(
        a.codes[both] * len(b.values) + b.codes[both], minlength=len(a.values) * len(b.values)
    ).reshape(len(a.values), len(b.values))
    return {
        "a": a.name,
        "b": b.name,
        "rows": a.values,
        "columns": b.values,
        "counts": grid.tolist(),
        "absent": [[a.values[i], b.values[j]] for i, j in zip(*np.nonzero(grid == 0), strict=True)],
        "too_few": [
            [a.values[i], b.values[j]]
            for i, j in zip(*np.nonzero((grid > 0) & (grid < min_count)), strict=True)
        ],
    }


def _sizes(data: BalanceInput) -> dict:
    boxes = data.label_boxes
    has = ~np.isnan(boxes).any(axis=1)
    area = boxes[:, 2] * boxes[:, 3]
    bucket = np.full(len(area), -1)
    bucket[has] = np.digitize(area[has], [COCO_SMALL, COCO_LARGE])  # 0 small, 1 medium, 2 large
    names = ["small", "medium", "large"]
    overall = np.bincount(bucket[has], minlength=3)
    per_class = {}
    for k, cat in enumerate(data.categories):
        sel = has & (data.label_category == k)
        if sel.any():
            per_class[cat] = dict(zip(names, np.bincount(bucket[sel], minlength=3).tolist(), strict=True))
    image_area = data.item_area[data.label_item] if len(area) else np.empty(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = area / image_area
    rel = np.bincount(np.digitize(relative[has], RELATIVE_EDGES[1:-1]), minlength=len(RELATIVE_NAMES))
    return {
        "measured": int(has.sum()),
        "coco": dict(zip(names, overall.tolist(), strict=True)),
        "per_class": per_class,
        "share_of_image": dict(zip(RELATIVE_NAMES, rel.tolist(), strict=True)),
        "median_area": _num(np.median(area[has])) if has.any() else None,
    }


def _histogram(values: np.ndarray, cap: int = 20) -> dict:
    """Counts of 0, 1, 2 ... with everything above ``cap`` in one "cap+" bucket."""
    if values.size == 0:
        return {}
    hist = np.bincount(np.minimum(values, cap + 1))
    out = {str(k): int(v) for k, v in enumerate(hist[: cap + 1]) if v}
    if hist.size > cap + 1 and hist[cap + 1]:
        out[f"{cap + 1}+"] = int(hist[cap + 1])
    return out


def _gap(kind: str, text: str, **where) -> dict:
    return {"kind": kind, "text": text, **where}


def _pct(share) -> str:
    return "?" if share is None else f"{share * 100:.1f}%"


def _num(value, digits: int = 6):
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


# --------------------------------------------------------------------------- from the database


def load_balance_input(version) -> BalanceInput:
    """Read a version's images, final labels and their attributes into columns."""
    splits = [s or "unassigned" for s in Item.Split.values]
    split_index = {s: i for i, s in enumerate(Item.Split.values)}
    items = list(
        Item.objects.filter(version=version)
        .order_by("pk")
        .values_list("pk", "split", "width", "height", "attributes")
    )
    item_index = {row[0]: i for i, row in enumerate(items)}
    categories = list(Category.objects.filter(schema__version=version).order_by("source_id", "name"))
    category_index = {c.pk: i for i, c in enumerate(categories)}
    label_item, label_category, geometries, label_attributes, label_kind = [], [], [], [], []
    rows = Label.objects.filter(version=version, is_final=True).values_list(
        "item_id", "category_id", "geometry", "attributes", "geometry_type"
    )
    for item, category, geometry, attributes, kind in rows.iterator(chunk_size=5000):
        label_item.append(item_index[item])
        label_category.append(category_index[category])
        geometries.append(geometry or {})
        label_attributes.append(attributes or {})
        label_kind.append(kind)
    data = BalanceInput(
        splits=splits,
        categories=[c.name for c in categories],
        item_split=np.array([split_index.get(r[1], len(splits) - 1) for r in items], dtype=np.int64),
        item_area=np.array([r[2] * r[3] for r in items], dtype=np.float64),
        label_item=np.array(label_item, dtype=np.int64),
        label_category=np.array(label_category, dtype=np.int64),
        label_boxes=boxes_of(geometries),
    )
    data.label_same_object = same_object_views(data.label_item, data.label_category, label_kind)
    specs = AttributeSpec.objects.filter(schema__version=version).order_by("scope", "name")
    for spec in specs:
        if (
            spec.type not in (AttributeSpec.Type.CHOICE, AttributeSpec.Type.BOOLEAN)
            and not spec.describes_person
        ):
            continue  # free text and numbers describe no group; a person attribute is counted whatever its type
        declared = list(spec.allowed_values) or (
            ["true", "false"] if spec.type == AttributeSpec.Type.BOOLEAN else []
        )
        if spec.scope == AttributeSpec.Scope.ITEM:
            raw = [r[4].get(spec.name) if r[4] else None for r in items]
            applies = np.ones(len(items), dtype=bool)
        else:
            raw = [a.get(spec.name) for a in label_attributes]
            wanted = [
                category_index[c.pk] for c in categories if not spec.categories or c.name in spec.categories
            ]
            # One object, one vote: the second view of an object (its 3D cuboid) repeats its attributes.
            applies = np.isin(data.label_category, wanted) & ~data.label_same_object
        codes, values = encode_values(raw, declared)
        data.attributes.append(
            Attribute(
                name=spec.name,
                scope=spec.scope,
                values=values,
                codes=codes,
                applies=applies,
                declared=bool(declared),
                target=spec.target_distribution or {},
                describes_person=spec.describes_person,
            )
        )
    return data


def annotator_pool(version, agreement: dict | None = None) -> dict:
    """Who labelled the version: labels per annotator and role, training, declared demographics, agreement."""
    rows = (
        Label.objects.filter(version=version)
        .values("annotator", "is_final", "source")
        .annotate(n=Count("id"))
        .order_by()
    )
    per_annotator: dict[int, dict] = {}
    by_source: dict[str, int] = {}
    for row in rows:
        by_source[row["source"]] = by_source.get(row["source"], 0) + row["n"]
        if row["annotator"] is None:
            continue
        entry = per_annotator.setdefault(row["annotator"], {"final": 0, "candidate": 0})
        entry["final" if row["is_final"] else "candidate"] += row["n"]
    agreed = {a["annotator"]: a for a in (agreement or {}).get("per_annotator", [])}
    annotators = []
    roles: dict[str, int] = {}
    trained = qualified = declared = 0
    demographics: dict[str, dict[str, int]] = {}
    for annotator in Annotator.objects.filter(pk__in=per_annotator).order_by("pseudonym"):
        counts = per_annotator[annotator.pk]
        roles[annotator.role] = roles.get(annotator.role, 0) + 1
        trained += bool(annotator.training_records)
        qualified += bool(annotator.qualifications)
        if annotator.demographics:
            declared += 1
            for key, value in annotator.demographics.items():
                bucket = demographics.setdefault(str(key), {})
                bucket[str(value)] = bucket.get(str(value), 0) + 1
        a = agreed.get(annotator.pseudonym, {})
        annotators.append(
            {
                "annotator": annotator.pseudonym,
                "role": annotator.role,
                "final_labels": counts["final"],
                "candidate_labels": counts["candidate"],
                "training_records": len(annotator.training_records),
                "agreement_f1": (a.get("with_others") or {}).get("f1"),
                "mean_cohen_kappa": a.get("mean_cohen_kappa"),
            }
        )
    # Self-declared demographics are shown only as counts, and a group of fewer than three is folded
    # into "other": a count of one next to a pseudonymous pool can single a person out.
    shown = {}
    for key, bucket in demographics.items():
        small = sum(n for n in bucket.values() if n < 3)
        shown[key] = {v: n for v, n in bucket.items() if n >= 3} | ({"other": small} if small else {})
    # Final labels by source and by model: the shares the Croissant RAI fields and the pages report.
    finals_by_source: dict[str, int] = {}
    models: dict[tuple[str, str], dict] = {}
    for row in (
        Label.objects.filter(version=version)
        .values("source", "is_final", "model_name", "model_version")
        .annotate(n=Count("id"))
        .order_by()
    ):
        if row["is_final"]:
            finals_by_source[row["source"]] = finals_by_source.get(row["source"], 0) + row["n"]
        if row["model_name"]:
            key = (row["model_name"], row["model_version"] or "")
            entry = models.setdefault(
                key, {"name": key[0], "version": key[1], "final_labels": 0, "candidate_labels": 0}
            )
            entry["final_labels" if row["is_final"] else "candidate_labels"] += row["n"]
    return {
        "annotators": len(annotators),
        "labels_by_source": by_source,
        "final_labels_by_source": finals_by_source,
        "models": [models[k] for k in sorted(models)],
        "roles": roles,
        "with_training_records": trained,
        "with_qualifications": qualified,
        "declared_demographics": declared,
        "demographics": shown,
        "per_annotator": annotators,
    }


def compute_balance_report(version, *, agreement: dict | None = None, **options) -> dict:
    """The balance report of a version, with its annotator pool."""
    report = balance_report(load_balance_input(version), **options)
    report["annotator_pool"] = annotator_pool(version, agreement)
    return report
