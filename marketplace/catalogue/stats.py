"""A version's statistics and content hash."""

from __future__ import annotations

import json
from collections import Counter

from django.db.models import Count
from django.utils import timezone

from governance.ledger.content import content_hash_rule_1

from ..models import Category, DatasetVersion, Item, Label


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def compute_version_stats(*, version: DatasetVersion) -> dict:
    """Counts a buyer reads first: items, labels, per split, per class, per kind, annotators."""
    items = Item.objects.filter(version=version)
    labels = Label.objects.filter(version=version)
    final = labels.filter(is_final=True)
    per_split = dict(items.values_list("split").annotate(n=Count("id")).order_by())
    per_class = dict(final.values_list("category__name").annotate(n=Count("id")).order_by("category__name"))
    per_kind = dict(final.values_list("geometry_type").annotate(n=Count("id")).order_by())
    sources = dict(labels.values_list("source").annotate(n=Count("id")).order_by())
    annotators = labels.exclude(annotator=None).values("annotator").distinct().count()
    candidates = labels.filter(is_final=False).count()
    item_count = items.count()
    final_count = final.count()
    stats = {
        "items": item_count,
        "labels": final_count,
        "candidate_labels": candidates,
        "labels_per_item": round(final_count / item_count, 2) if item_count else 0,
        "bytes": sum(items.values_list("size_bytes", flat=True)),
        "splits": {k or "unassigned": v for k, v in per_split.items()},
        "classes": per_class,
        "annotation_kinds": per_kind,
        "sources": sources,
        "annotators": annotators,
        "categories": Category.objects.filter(schema__version=version).count(),
        "computed_at": timezone.now().isoformat(),
    }
    return stats


def compute_content_hash(*, version: DatasetVersion) -> str:
    """Content rule 1: SHA-256 over every item and label of a version, in a stable order, streamed.

    Versions published before content rule 2 (governance.ledger.content, which holds both rules)
    verify under this rule; publication uses rule 2.
    """
    return content_hash_rule_1(version)


def refresh_version_stats(*, version_id: int) -> dict:
    """Recompute and store a version's cached statistics (allowed on released versions)."""
    version = DatasetVersion.objects.get(pk=version_id)
    version.stats = compute_version_stats(version=version)
    version.save(update_fields=["stats"])
    return version.stats


def annotation_kinds(stats: dict) -> list[str]:
    return sorted(Counter(stats.get("annotation_kinds", {})).keys())
