"""Exports: a version rendered in a format, as one archive in storage, and its downloads.

The flow, and why it is cut where it is:

1. :func:`request_export` (web request, short transaction) checks the user may export the
   version, normalises the options and finds or creates the one Export row for (version,
   format, options): a finished export of a released version is reused as it is, with no new
   work. The task is enqueued with ``transaction.on_commit``, never before the row exists.
2. :func:`run_export` (Celery task) streams items and labels from the database in chunks of
   items, through the format's writer (``marketplace.formats.*_writer``), into a zip in a
   temporary file; progress is written to the row as it goes. Only then is the file copied to
   storage -- outside any transaction, because an upload to S3 can take minutes -- and the row
   marked ready with its size, sha256 and notes. Re-running it is safe: a ready export returns
   at once, anything else is built again (the archive is byte-identical: fixed zip timestamps
   and a stable order).
3. :func:`download_url_for` gives a link to our download view, signed with the user's id and
   the export's id and valid for ``DOWNLOAD_URL_TTL`` seconds. The view checks the link, the
   user and the right to export again (an entitlement may have ended), records the download
   (:func:`record_download`, with a ledger event) and then streams the file, or redirects to a
   presigned S3 URL when storage is S3. So every download is recorded, whatever the storage.

An export archive holds the labels in the format's layout, the images when asked
(``include_images``, streamed from storage), ``datasheet.md``, ``LICENSE.txt``,
``provenance.csv`` (one row per label: uid, annotator, made_at, guideline version, source,
model), ``content/*.jsonl`` and ``evidence/version_published.json`` (the canonical content and its
signed publication, for ``verify_offline.py --archive``), ``croissant.json`` and ``MANIFEST.sha256``
(sha256sum format, every other file).
What the format cannot hold is in the export's ``notes``, with counts, never silently dropped.
The ``croissant`` format is the version's Croissant JSON-LD alone.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.utils import InterfaceError, OperationalError
from django.utils import timezone

from .. import visibility
from ..catalogue.stats import canonical_json
from ..errors import DomainError
from ..formats.yolo_writer import TASKS as YOLO_TASKS
from ..models import (
    Category,
    DatasetVersion,
    Export,
)
from .packaging import _sha256_of, build_archive, export_file_name
from .records import FORMATS, SPLITS

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- options


def _invalid(detail: str) -> DomainError:
    return DomainError(detail, code="invalid_options", status_code=400)


def normalise_options(*, version: DatasetVersion, format: str, options: dict | None) -> dict:
    """Check the options and fill the defaults, so equal requests hash equally.

    ``splits`` (list of train, val, test, unassigned; empty: all), ``categories`` (class
    names; empty: all), ``include_images`` (default true), ``candidates`` (every annotator's
    candidate labels too; default false: final labels only), and for YOLO ``yolo_task``
    (auto, detect, segment or pose; auto picks pose with keypoints, segment with polygons or
    masks, else detect).
    """
    if format not in FORMATS:
        raise DomainError(
            f"format must be one of {', '.join(FORMATS)}", code="invalid_format", status_code=400
        )
    options = dict(options or {})
    known = {"splits", "categories", "include_images", "candidates", "yolo_task"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise _invalid(f"unknown options: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    splits = options.get("splits") or []
    if not (isinstance(splits, list) and all(isinstance(s, str) for s in splits)):
        raise _invalid("splits must be a list of split names")
    bad = sorted(set(splits) - set(SPLITS))
    if bad:
        raise _invalid(f"unknown splits {bad}: use {', '.join(SPLITS)}")
    categories = options.get("categories") or []
    if not (isinstance(categories, list) and all(isinstance(c, str) for c in categories)):
        raise _invalid("categories must be a list of category names")
    if categories:
        names = set(Category.objects.filter(schema__version=version).values_list("name", flat=True))
        missing = sorted(set(categories) - names)
        if missing:
            raise _invalid(f"no categories {missing} in this version")
    flags = {}
    for flag, default in (("include_images", True), ("candidates", False)):
        value = options.get(flag, default)
        if not isinstance(value, bool):
            raise _invalid(f"{flag} must be true or false")
        flags[flag] = value
    normalised = {"splits": sorted(set(splits)), "categories": sorted(set(categories)), **flags}
    if format == Export.Format.YOLO:
        task = options.get("yolo_task", "auto")
        if task not in ("auto", *YOLO_TASKS):
            raise _invalid(f"yolo_task must be auto, {', '.join(YOLO_TASKS)}")
        normalised["yolo_task"] = task
    elif "yolo_task" in options:
        raise _invalid("yolo_task applies to the yolo format only")
    if format == Export.Format.CROISSANT:
        # Metadata only: no option changes what is written.
        normalised = {}
    return normalised


def options_hash(options: dict) -> str:
    return hashlib.sha256(canonical_json(options).encode()).hexdigest()


# --------------------------------------------------------------------------- requesting


def request_export(
    *,
    version: DatasetVersion,
    user,
    format: str,
    options: dict | None = None,
    enqueue: Callable[[int], None],
) -> Export:
    """The export of this version in this format with these options: reused if done, else queued.

    ``enqueue(export_id)`` is called inside the transaction when the export must be (re)built;
    the caller's task module passes one that queues the build with ``transaction.on_commit``.
    """
    visibility.require_export(user, version)
    normalised = normalise_options(version=version, format=format, options=options)
    visibility.require_export_of(user, version, include_images=bool(normalised.get("include_images")))
    digest = options_hash(normalised)
    # A finished file that went missing from storage is rebuilt. Checked before the transaction:
    # on S3 it is a network round trip, and the row lock below should not wait for one.
    existing = Export.objects.filter(version=version, format=format, options_hash=digest).first()
    lost = None
    if existing is not None and existing.status == Export.Status.READY and not _stored(existing):
        lost = existing.file.name
    with transaction.atomic():
        export, created = Export.objects.get_or_create(
            version=version,
            format=format,
            options_hash=digest,
            defaults={"options": normalised, "requested_by": user},
        )
        if created:
            enqueue(export.pk)
            return export
        export = Export.objects.select_for_update().get(pk=export.pk)
        stale = version.status == DatasetVersion.Status.DRAFT  # a draft may have changed since
        missing = export.status == Export.Status.READY and lost is not None and export.file.name == lost
        if export.status == Export.Status.FAILED or (
            export.status == Export.Status.READY and (stale or missing)
        ):
            export.status = Export.Status.PENDING
            export.progress = 0
            export.error = ""
            export.requested_by = user
            export.save(update_fields=["status", "progress", "error", "requested_by"])
            enqueue(export.pk)
    return export


def _stored(export: Export) -> bool:
    return bool(export.file.name) and export.file.storage.exists(export.file.name)


def run_export(*, export_id: int) -> Export:
    """Build an export's archive and store it; a ready export is returned as it is."""
    export = Export.objects.select_related("version__dataset__supplier").get(pk=export_id)
    if export.status == Export.Status.READY:
        return export
    Export.objects.filter(pk=export_id).exclude(status=Export.Status.READY).update(
        status=Export.Status.RUNNING, progress=0, error=""
    )
    stored_name = None
    try:
        with tempfile.TemporaryFile() as tmp:
            result = build_archive(
                version=export.version,
                format=export.format,
                options=export.options,
                fileobj=tmp,
                export_id=export_id,
            )
            sha, size = _sha256_of(tmp)
            # Outside any transaction on purpose: the upload can take minutes on S3.
            stored_name = default_storage.save(export_file_name(export), File(tmp, name="export"))
        finished = (
            Export.objects.filter(pk=export_id)
            .exclude(status=Export.Status.READY)
            .update(
                status=Export.Status.READY,
                file=stored_name,
                size_bytes=size,
                sha256=sha,
                notes=result.notes,
                progress=100,
                error="",
                finished_at=timezone.now(),
            )
        )
        if not finished:  # a concurrent run got there first: keep its file, drop ours
            default_storage.delete(stored_name)
        elif export.file.name and export.file.name != stored_name:
            default_storage.delete(export.file.name)  # the file of a draft's earlier, now stale, run
    except (OperationalError, InterfaceError):
        # The database went away: leave the export pending so the task's retry starts over.
        Export.objects.filter(pk=export_id).exclude(status=Export.Status.READY).update(
            status=Export.Status.PENDING, progress=0
        )
        raise
    except Exception as exc:
        log.exception("export %s failed", export_id)
        if stored_name:
            default_storage.delete(stored_name)
        Export.objects.filter(pk=export_id).exclude(status=Export.Status.READY).update(
            status=Export.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
    return Export.objects.get(pk=export_id)
