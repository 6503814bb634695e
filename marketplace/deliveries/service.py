"""Supplier deliveries: an uploaded archive becomes a new draft version, or a report and nothing else.

The flow of :func:`ingest_delivery`, and why it is cut where it is:

1. **Claim** the delivery (short transaction): an ingested delivery returns its version and
   nothing runs again; a failed one returns its report.
2. **Open and check** the archive (:class:`~marketplace.formats.archive.ZipSource`: traversal,
   symlinks, bombs ...), detect the format, run the codec, read ``provenance.jsonl``.
3. **Check every image** (Pillow, allowed formats only, pixel limit kept, decompression-bomb
   warning as an error, decoded to its last byte, size compared with what the labels declare) and
   **every label** (item, category, geometry against the real image size, annotator
   pseudonym, guideline tag). Validated rows are spooled to a temporary file, so neither a
   million labels nor the images sit in memory. Progress is written to the Delivery row in
   short transactions all along, so the supplier's page can show it.
4. **Files before rows**: the images are copied from the archive into content-addressed storage
   (each copy idempotent: a blob already there is not written again), in a thread while step 5
   writes the rows; the transaction commits only after the last file is stored.
5. **One transaction** writes the version, datasheet, schema, items, labels and their ledger
   events and marks the delivery ingested -- or, when step 2 or 3 found an error, nothing is
   stored or written and the delivery is marked failed with its report. A process killed before
   the commit leaves unreferenced blobs only (harmless; ``manage.py sweep_orphan_blobs`` removes
   them) and the delivery pending/validating, which ``manage.py sweep_stuck_deliveries`` re-queues;
   a committed version never lacks a file.

A delivery is a **full snapshot**: the new version holds exactly the delivery's items and
labels, nothing is carried forward from the previous version except its datasheet and its
schema (categories keep their ids; the delivery's new categories are added).
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re

from django.conf import settings
from django.db import transaction
from django.db.utils import InterfaceError, OperationalError
from django.utils import timezone

from ..errors import DomainError, ErrorCode
from ..formats import model as fmt
from ..models import (
    Dataset,
    Delivery,
)
from . import lineage
from .archive import open_archive
from .plan import Plan, parse_defaults, validate_delivery
from .report import DeliveryFailed, IngestResult, Progress, Report
from .write import (
    StoreAlongside,
    _report_body,
    fewer_collections,
    release_freed_memory,
    store_delivery_files,
    write_version,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the service


def delivery_result(delivery: Delivery, *, created: bool = False) -> IngestResult:
    """The outcome recorded on a delivery, as an IngestResult."""
    report = delivery.report or {}
    return IngestResult(
        delivery_id=delivery.pk,
        status=delivery.status,
        version_number=delivery.version.number if delivery.version_id else None,
        counts=report.get("counts", {}),
        problems=report.get("problems", []),
        created=created,
    )


def _claim(delivery_id: int) -> tuple[Delivery, bool]:
    """Mark the delivery as being validated; False when there is nothing to do."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("dataset", "version")
            .get(pk=delivery_id)
        )
        if delivery.status in (Delivery.Status.INGESTED, Delivery.Status.FAILED):
            return delivery, False
        if delivery.version_id is not None:
            return delivery, False  # written; only the files remain
        delivery.status = Delivery.Status.VALIDATING
        delivery.progress = 0
        delivery.report = {"stage": "opening the archive"}
        delivery.finished_at = None
        delivery.touched_at = timezone.now()
        delivery.save(update_fields=["status", "progress", "report", "finished_at", "touched_at"])
    return delivery, True


def _fail(delivery_id: int, report: Report, plan: Plan | None = None, format: str = "") -> None:
    Delivery.objects.filter(pk=delivery_id).update(
        status=Delivery.Status.FAILED,
        progress=100,
        report=_report_body(plan=plan, report=report, stage="failed", format=format),
        finished_at=timezone.now(),
    )


def ingest_delivery(*, delivery_id: int) -> IngestResult:
    """Validate a delivery and write it as the dataset's next draft version, all or nothing."""
    delivery, claimed = _claim(delivery_id)
    if not claimed:
        if delivery.version_id is not None and delivery.status != Delivery.Status.INGESTED:
            store_delivery_files(delivery_id=delivery_id)  # finish what a crashed run left
            delivery.refresh_from_db()
        return delivery_result(delivery)

    report = Report()
    plan: Plan | None = None
    created = False
    progress = Progress(delivery_id)
    try:
        # Reading and checking allocates a few containers per label too (rows, problems, spool
        # tuples): the garbage collector's default thresholds scanned the live batch ~1,000 times
        # at 50k labels, a quarter of this phase's CPU (2.7 -> 2.0 s on the 5k/50k bench).
        # The archive stays open for the write: the image store reads its files from the index the
        # check built (opening it again held a second index, ~100 bytes an entry, and zipfile's copy
        # of the central directory while it was read).
        with open_archive(delivery) as source:
            with fewer_collections():
                plan = validate_delivery(source=source, delivery=delivery, report=report, progress=progress)
            if report.has_errors:
                raise DeliveryFailed
            release_freed_memory()
            counts = {k: plan.counts[k] for k in ("items", "labels")}
            progress.set(80, stage="storing images and writing", force=True, **counts)
            # Files before rows: the images are stored in a thread while the rows are written, and the
            # transaction commits only once every file is stored (write_version calls store.wait()).
            store = StoreAlongside(delivery_id=delivery_id, plan=plan, source=source)
            try:
                _, created = write_version(
                    delivery_id=delivery_id, plan=plan, report=report, before_commit=store.wait
                )
            finally:
                store.thread.join()  # a failed write still lets the thread finish before the plan closes
    except fmt.FormatError as exc:
        report.extend(exc.problems)
        _fail(delivery_id, report, plan)
    except DeliveryFailed:
        _fail(delivery_id, report, plan)
    except (OperationalError, InterfaceError):
        # The database went away: leave the delivery pending so the task's retry starts it again.
        with contextlib.suppress(OperationalError, InterfaceError):
            Delivery.objects.filter(pk=delivery_id).update(status=Delivery.Status.PENDING, progress=0)
        raise
    except Exception as exc:
        log.exception("ingest of delivery %s failed", delivery_id)
        report.error("", f"internal error while ingesting: {type(exc).__name__}", code="internal_error")
        _fail(delivery_id, report, plan)
    finally:
        if plan is not None:
            plan.close()
    delivery = Delivery.objects.select_related("version").get(pk=delivery_id)
    return delivery_result(delivery, created=created)


# --------------------------------------------------------------------------- creating deliveries


def create_delivery(
    *,
    dataset: Dataset,
    archive,
    format: str = Delivery.Format.AUTO,
    defaults: dict | None = None,
    uploaded_by=None,
    original_name: str = "",
    matching: dict | None = None,
) -> Delivery:
    """Store an uploaded archive as a pending delivery of a dataset (the task ingests it).

    ``matching``: lineage options (``{"enabled": false}`` for a new generation, ``"thresholds"``).
    """
    if format not in Delivery.Format.values:
        raise DomainError(f"format must be one of {', '.join(Delivery.Format.values)}", code="invalid_format")
    size = getattr(archive, "size", None)
    if size is not None and size > settings.DELIVERY_MAX_BYTES:
        raise DomainError(
            f"the archive is {size} bytes, more than the {settings.DELIVERY_MAX_BYTES} allowed",
            code="too_large",
            status_code=413,
        )
    _, problems = parse_defaults(defaults)
    if problems:
        raise DomainError("defaults: " + "; ".join(p.message for p in problems), code="invalid_defaults")
    try:
        matching = lineage.parse_options(matching)
    except ValueError as error:
        raise DomainError(f"matching: {error}", code=ErrorCode.INVALID_MATCHING) from None
    name = original_name or posixpath.basename(getattr(archive, "name", "") or "delivery.zip")
    delivery = Delivery(
        dataset=dataset,
        format=format,
        defaults=defaults or {},
        matching=matching,
        uploaded_by=uploaded_by,
        original_name=name[:300],
    )
    delivery.archive.save(_safe_archive_name(name), archive, save=False)
    delivery.save()
    return delivery


def _safe_archive_name(name: str) -> str:
    stem = (
        re.sub(r"[^A-Za-z0-9._-]+", "-", posixpath.splitext(posixpath.basename(name))[0]).strip("-.")
        or "delivery"
    )
    return f"{stem[:80]}.zip"
