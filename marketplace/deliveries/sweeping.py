"""Sweepers for what a killed process leaves behind: unreferenced blobs and stuck deliveries.

- **Orphan blobs.** Images are stored before the rows that refer to them commit (files before
  rows, deliveries.write), so a process killed in between, or a write that rolled back, leaves
  blobs no Item refers to; a failed publication leaves its content files (catalogue.content_files)
  with no ContentPartFile row the same way. They are harmless (the next run reuses the same bytes)
  and removed here once older than ``BLOB_ORPHAN_GRACE_SECONDS``, which must exceed the longest
  ingest or publication: a blob younger than that may belong to a run that has not committed yet.
  While any delivery is in flight the sweep does nothing (an ingest that started before the sweep
  may be about to reuse an old orphan); each key is re-checked against the rows just before it is
  deleted.
- **Stuck deliveries.** A delivery still ``pending``/``validating`` with no sign of life
  (``touched_at``, else ``created_at``) for ``DELIVERY_STUCK_AFTER`` seconds lost its task: it is
  re-queued once, and failed with the reason ``stuck`` if it is stuck again.

Run by Celery beat (``sweep-orphan-blobs``, ``sweep-stuck-deliveries``) or ``manage.py
sweep_orphan_blobs`` / ``sweep_stuck_deliveries``; re-running either is harmless.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..models import ContentPartFile, Delivery, Item
from .report import Report

log = logging.getLogger(__name__)

BLOB_ROOT = "blobs"
IN_FLIGHT = (Delivery.Status.PENDING, Delivery.Status.VALIDATING)


def _blob_names(storage, root: str = BLOB_ROOT) -> Iterator[str]:
    """Every file under ``blobs/`` (two levels of folders, as blobs.blob_key lays them out)."""
    if not storage.exists(root):
        return
    dirs, files = storage.listdir(root)
    for name in files:
        yield posixpath.join(root, name)
    for folder in dirs:
        yield from _blob_names(storage, posixpath.join(root, folder))


def _referenced(name: str) -> bool:
    """Whether an Item's image or a published version's content file (catalogue.content_files) is there."""
    return (
        Item.objects.filter(storage_key=name).exists()
        or ContentPartFile.objects.filter(storage_key=name).exists()
    )


def sweep_orphan_blobs(*, grace_seconds: int | None = None, now=None, storage=None) -> dict:
    """Delete blobs no Item refers to and older than the grace period; return what was done."""
    storage = storage or default_storage
    now = now or timezone.now()
    grace = settings.BLOB_ORPHAN_GRACE_SECONDS if grace_seconds is None else grace_seconds
    cutoff = now - timedelta(seconds=grace)
    in_flight = Delivery.objects.filter(status__in=IN_FLIGHT).count()
    if in_flight:
        log.info("orphan blob sweep skipped: %s deliveries in flight", in_flight)
        return {"skipped": True, "in_flight": in_flight, "deleted": 0, "kept": 0}
    deleted = kept = 0
    for name in _blob_names(storage):
        if _referenced(name):
            kept += 1
            continue
        if storage.get_modified_time(name) > cutoff:
            kept += 1  # may belong to a run that has not committed yet
            continue
        if _referenced(name):  # referenced meanwhile
            kept += 1
            continue
        storage.delete(name)
        deleted += 1
        log.info("orphan blob %s deleted", name)
    return {"skipped": False, "in_flight": 0, "deleted": deleted, "kept": kept}


def sweep_stuck_deliveries(
    *, enqueue: Callable[[int], None], now=None, stuck_after: int | None = None
) -> dict:
    """Re-queue deliveries stuck in pending/validating (once), then fail them with a reason."""
    now = now or timezone.now()
    after = settings.DELIVERY_STUCK_AFTER if stuck_after is None else stuck_after
    cutoff = now - timedelta(seconds=after)
    stuck = (
        Delivery.objects.filter(status__in=IN_FLIGHT)
        .annotate(last_seen=Coalesce("touched_at", "created_at"))
        .filter(Q(last_seen__lt=cutoff))
        .values_list("pk", flat=True)
    )
    requeued, failed = [], []
    for pk in list(stuck):
        with transaction.atomic():
            delivery = Delivery.objects.select_for_update().get(pk=pk)
            last_seen = delivery.touched_at or delivery.created_at
            if delivery.status not in IN_FLIGHT or last_seen >= cutoff:
                continue  # it moved since the query
            report = dict(delivery.report or {})
            if report.get("requeued_at"):
                refusal = Report()
                refusal.error(
                    "",
                    f"no progress for {after} seconds, twice: the ingest was given up. "
                    "Upload the delivery again; if it happens again, contact support.",
                    code="stuck",
                )
                report.update(stage="failed", **refusal.as_dict())
                delivery.status = Delivery.Status.FAILED
                delivery.progress = 100
                delivery.finished_at = now
                delivery.report = report
                delivery.save(update_fields=["status", "progress", "finished_at", "report"])
                failed.append(pk)
                log.warning("delivery %s stuck again after a re-queue: failed", pk)
            else:
                report["requeued_at"] = now.isoformat()
                delivery.status = Delivery.Status.PENDING
                delivery.progress = 0
                delivery.touched_at = now
                delivery.report = report
                delivery.save(update_fields=["status", "progress", "touched_at", "report"])
                transaction.on_commit(lambda pk=pk: enqueue(pk))
                requeued.append(pk)
                log.warning("delivery %s stuck: re-queued", pk)
    return {"requeued": requeued, "failed": failed}
