"""Datasets and versions: statistics, content hashes and the version lifecycle."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from governance import ledger

from .models import Category, Dataset, DatasetVersion, Item, Label


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
    """SHA-256 over every item and label of a version, in a stable order, streamed from the database."""
    digest = hashlib.sha256()
    for key, sha, split, w, h in (
        Item.objects.filter(version=version)
        .order_by("key")
        .values_list("key", "sha256", "split", "width", "height")
    ).iterator(chunk_size=2000):
        digest.update(canonical_json(["item", key, sha, split, w, h]).encode())
        digest.update(b"\n")
    rows = (
        Label.objects.filter(version=version)
        .order_by("uid")
        .values_list(
            "uid", "item__key", "category__name", "geometry_type", "geometry", "attributes", "is_final"
        )
    )
    for row in rows.iterator(chunk_size=2000):
        digest.update(canonical_json(["label", *row]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def refresh_version_stats(*, version_id: int) -> dict:
    """Recompute and store a version's cached statistics (allowed on released versions)."""
    version = DatasetVersion.objects.get(pk=version_id)
    version.stats = compute_version_stats(version=version)
    version.save(update_fields=["stats"])
    return version.stats


@transaction.atomic
def publish_version(
    *, version: DatasetVersion, release_notes: str = "", at=None, require_publishable: bool = False
) -> DatasetVersion:
    """Freeze a draft: hash its content, cache its statistics, list the dataset."""
    # Lock the row: two concurrent publishes of one draft must not both pass the status check.
    version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
    if version.status != DatasetVersion.Status.DRAFT:
        raise ValueError(f"{version} is already {version.status}")
    # --- workspace: a supplier's release needs its datasheet, an offer and an ingested delivery
    # (marketplace.workspace.check_publishable). Checked under the row lock, so the answer holds.
    # Off by default: the demo and test fixtures seed versions without deliveries.
    if require_publishable:
        from .workspace import ensure_publishable

        ensure_publishable(version)
    # --- end workspace
    version.content_hash = compute_content_hash(version=version)
    version.stats = compute_version_stats(version=version)
    version.release_notes = release_notes or version.release_notes
    version.status = DatasetVersion.Status.PUBLISHED
    version.published_at = at or timezone.now()
    version.save()
    Dataset.objects.filter(pk=version.dataset_id, status=Dataset.Status.DRAFT).update(
        status=Dataset.Status.LISTED
    )
    # --- governance ledger: the publication is an event, and the tree head signed over it (and every
    # event before it) is what auditors verify labels against. Same transaction: no release without it.
    ledger.record_dataset_event(
        dataset=version.dataset,
        action="version_published",
        actor=f"org:{version.dataset.supplier.slug}",
        payload={"content_hash": version.content_hash, "release_notes": version.release_notes},
        version_number=version.number,
        occurred_at=version.published_at,
    )
    # A release dated in the past (the demo's history) is signed at its own date.
    ledger.sign_tree_head(dataset=version.dataset, version=version, at=at)
    # --- end governance ledger
    # --- governance quality reports (stats, agreement, balance, compliance): started after the
    # commit, so the worker sees the published rows; robust, so a failing report never fails a
    # release that is already committed (the reports can be recomputed at any time).
    transaction.on_commit(lambda: _start_quality_reports(version.pk), robust=True)
    # --- end governance quality reports
    return version


def _start_quality_reports(version_id: int) -> None:
    from governance.tasks import compute_quality_reports  # governance.reports imports this module

    compute_quality_reports.delay(version_id)


def annotation_kinds(stats: dict) -> list[str]:
    return sorted(Counter(stats.get("annotation_kinds", {})).keys())
