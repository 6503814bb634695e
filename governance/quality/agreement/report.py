"""A version's agreement report: its labels read into frames, analysed, summarised by section."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from governance.models import Annotator, GuidelineVersion
from governance.quality.agreement.analysis import (
    Analysis,
    Tally,
    analyse,
    annotators_per_item,
    attribute_ratings,
    classification_ratings,
    item_scores,
    tally,
    tally_by,
)
from governance.quality.agreement.geometry import (
    CONSENSUS,
    DEFAULT_THRESHOLD,
    MEASURED_KINDS,
    SIMILARITY,
    LabelFrame,
    compare_geometry,
    items_by_annotator,
    sigmas_source,
)
from governance.quality.agreement.nominal import _num, nominal_agreement
from marketplace.formats import model as fmt
from marketplace.formats.matching import boxes_of
from marketplace.models import AttributeSpec, Category, Item, Label

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
