"""What changed between two versions of a dataset, and the changelog buyers read."""

from __future__ import annotations

from django.core.cache import cache
from django.db.models import Count, Exists, JSONField, OuterRef, Q
from django.db.models.functions import Cast, Coalesce

from ..models import (
    Category,
    DatasetVersion,
    Delivery,
    Item,
    Label,
)

# --------------------------------------------------------------------------- diff


def _counts(qs, **aggregates) -> dict:
    return {k: v or 0 for k, v in qs.aggregate(**aggregates).items()}


def diff_versions(*, old: DatasetVersion, new: DatasetVersion, examples: int = 10) -> dict:
    """What changed from ``old`` to ``new``: items by key, final labels by uid, classes, guidelines.

    Every count is an aggregate query; nothing loops over labels in Python, so the cost is a few
    indexed scans whatever the size of the versions. A label is *changed* when its uid is in both
    versions and its item, class, geometry kind, geometry, attributes or crowd flag differ;
    *relabelled* counts the kept labels whose guideline version changed.
    """
    label_totals, classes, label_examples = _label_diff(old=old, new=new, examples=examples)
    old_cats = set(Category.objects.filter(schema__version=old).values_list("name", flat=True))
    new_cats = set(Category.objects.filter(schema__version=new).values_list("name", flat=True))
    old_gv, new_gv = _guideline_rows(old), _guideline_rows(new)
    return {
        "dataset": new.dataset.slug,
        "from": old.number,
        "to": new.number,
        "items": _item_diff(old=old, new=new),
        "labels": label_totals,
        "candidate_labels": {
            "before": Label.objects.filter(version=old, is_final=False).count(),
            "after": Label.objects.filter(version=new, is_final=False).count(),
        },
        "classes": classes,
        "categories": {"added": sorted(new_cats - old_cats), "removed": sorted(old_cats - new_cats)},
        "guideline_versions": {
            "added": [new_gv[k] for k in new_gv if k not in old_gv],
            "removed": [old_gv[k] for k in old_gv if k not in new_gv],
            "kept": [new_gv[k] for k in new_gv if k in old_gv],
        },
        "examples": label_examples,
        # How the delivery that made ``new`` matched its labels to ``old``'s, when it did.
        "lineage": _lineage_between(old=old, new=new),
    }


def _lineage_between(*, old: DatasetVersion, new: DatasetVersion) -> dict | None:
    """The lineage section of the delivery that made ``new``, when it matched against ``old``.

    The diff, the changelog and the dataset page show it beside their uid-based counts, which it
    explains (how each kept label was found; see deliveries/lineage.py). None when ``new`` came
    from elsewhere, or its delivery matched against another version than ``old``.
    """
    report = (
        Delivery.objects.filter(version=new, status__in=("ingested", "validating"))
        .order_by("-pk")
        .values_list("report", flat=True)
        .first()
    )
    section = (report or {}).get("lineage")
    if not section or section.get("previous_version") != old.number:
        return None
    return {k: section.get(k) for k in ("enabled", "previous_version", "counts", "thresholds", "source_ids")}


def _item_diff(*, old: DatasetVersion, new: DatasetVersion) -> dict:
    """Items matched by key: added, removed, changed (content, split, size or attributes), unchanged."""
    same_key = Item.objects.filter(version=old, key=OuterRef("key"))
    same_item = same_key.filter(
        sha256=OuterRef("sha256"),
        split=OuterRef("split"),
        width=OuterRef("width"),
        height=OuterRef("height"),
        synthetic=OuterRef("synthetic"),
        attributes=OuterRef("attributes"),
    )
    item_new = _counts(
        Item.objects.filter(version=new),
        after=Count("id"),
        kept=Count("id", filter=Q(Exists(same_key))),
        unchanged=Count("id", filter=Q(Exists(same_item))),
    )
    item_before = Item.objects.filter(version=old).count()
    return {
        "before": item_before,
        "after": item_new["after"],
        "added": item_new["after"] - item_new["kept"],
        "removed": item_before - item_new["kept"],
        "changed": item_new["kept"] - item_new["unchanged"],
        "unchanged": item_new["unchanged"],
    }


def _label_diff(*, old: DatasetVersion, new: DatasetVersion, examples: int) -> tuple[dict, list[dict], dict]:
    """Final labels matched by uid: totals, the same per class, and a few examples of each change."""
    old_labels = Label.objects.filter(version=old, is_final=True)
    new_labels = Label.objects.filter(version=new, is_final=True)
    same_uid = old_labels.filter(uid=OuterRef("uid"))
    # A geometry is PostgreSQL json (no equality: see TextJSONField): compared as jsonb, by value.
    same_label = same_uid.annotate(geometry_value=Cast("geometry", JSONField())).filter(
        item__key=OuterRef("item__key"),
        category__name=OuterRef("category__name"),
        geometry_type=OuterRef("geometry_type"),
        geometry_value=Cast(OuterRef("geometry"), JSONField()),
        attributes=OuterRef("attributes"),
        iscrowd=OuterRef("iscrowd"),
    )
    # Coalesce: two labels without a guideline version kept it (NULL = NULL is not true in SQL).
    same_guideline = same_uid.annotate(gv=Coalesce("guideline_version_id", 0)).filter(
        gv=Coalesce(OuterRef("guideline_version_id"), 0)
    )
    in_new = new_labels.filter(uid=OuterRef("uid"))
    kept, identical, relabelled = Q(Exists(same_uid)), Q(Exists(same_label)), Q(Exists(same_guideline))

    per_new = {
        row["category__name"]: row
        for row in new_labels.values("category__name")
        .annotate(
            after=Count("id"),
            added=Count("id", filter=~kept),
            changed=Count("id", filter=kept & ~identical),
            relabelled=Count("id", filter=kept & ~relabelled),
        )
        .order_by()
    }
    per_old = {
        row["category__name"]: row
        for row in old_labels.values("category__name")
        .annotate(before=Count("id"), removed=Count("id", filter=~Q(Exists(in_new))))
        .order_by()
    }
    classes = []
    for name in sorted(set(per_new) | set(per_old)):
        n, o = per_new.get(name, {}), per_old.get(name, {})
        classes.append(
            {
                "name": name,
                "before": o.get("before", 0),
                "after": n.get("after", 0),
                "delta": n.get("after", 0) - o.get("before", 0),
                "added": n.get("added", 0),
                "removed": o.get("removed", 0),
                "changed": n.get("changed", 0),
            }
        )
    label_totals = {
        "before": sum(c["before"] for c in classes),
        "after": sum(c["after"] for c in classes),
        "added": sum(c["added"] for c in classes),
        "removed": sum(c["removed"] for c in classes),
        "changed": sum(c["changed"] for c in classes),
        "relabelled": sum(row["relabelled"] for row in per_new.values()),
    }
    label_totals["unchanged"] = label_totals["after"] - label_totals["added"] - label_totals["changed"]
    label_examples = {
        "added": _label_examples(new_labels.filter(~kept), examples),
        "removed": _label_examples(old_labels.filter(~Q(Exists(in_new))), examples),
        "changed": _label_examples(new_labels.filter(kept & ~identical), examples),
    }
    return label_totals, classes, label_examples


def _guideline_rows(version: DatasetVersion) -> dict[int, dict]:
    return {
        gv.pk: {"guideline": gv.guideline.title, "tag": gv.tag, "sha256": gv.sha256}
        for gv in version.guideline_versions.select_related("guideline").order_by("guideline__title", "tag")
    }


def _label_examples(qs, examples: int) -> list[dict]:
    return [
        {"uid": str(uid), "item": key, "category": cat}
        for uid, key, cat in qs.order_by("item__key", "uid").values_list(
            "uid", "item__key", "category__name"
        )[:examples]
    ]


def cached_diff(*, old: DatasetVersion, new: DatasetVersion) -> dict:
    """:func:`diff_versions`, cached when both versions are released: their content can no longer change."""
    if old.status == DatasetVersion.Status.DRAFT or new.status == DatasetVersion.Status.DRAFT:
        return diff_versions(old=old, new=new)
    # The content hashes make the key safe even where a test database hands out the same ids again.
    key = f"workspace:diff:v2:{old.pk}:{old.content_hash}:{new.pk}:{new.content_hash}"
    result = cache.get(key)
    if result is None:
        result = diff_versions(old=old, new=new)
        cache.set(key, result, timeout=None)
    return result


def changelog(versions: list[DatasetVersion]) -> list[dict]:
    """One entry per released version, newest first, with its diff against the release before it."""
    released = sorted(
        (v for v in versions if v.status != DatasetVersion.Status.DRAFT), key=lambda v: v.number
    )
    entries = []
    for previous, version in zip([None, *released], released, strict=False):
        entries.append(
            {
                "version": version,
                "previous": previous,
                "diff": cached_diff(old=previous, new=version) if previous is not None else None,
            }
        )
    return entries[::-1]
