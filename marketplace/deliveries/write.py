"""Writing a validated plan: the image files first, then the rows in one transaction.

Files before rows: every image is in content-addressed storage before the transaction that
refers to it commits, so a committed version never lacks a file. A process killed after the
files and before the commit leaves only unreferenced blobs, which are harmless (the same bytes
are reused by the next run) and removed by ``manage.py sweep_orphan_blobs`` (deliveries.sweeping).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import gc
import hashlib
import json
import logging
import os
import platform
import posixpath
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import NamedTuple

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection, transaction
from django.db.models.base import ModelState
from django.utils import timezone

from governance import ledger
from governance.ledger import canonical
from governance.ledger.chain import COPY_NULL, copy_text, copy_texts
from governance.ledger.copying import copy_behind, copy_rows
from governance.models import Annotator, GuidelineVersion
from marketplace.catalogue import stats as catalogue_stats

from ..formats.keytable import KeyTable
from ..models import (
    AnnotationSchema,
    AttributeSpec,
    Category,
    Dataset,
    DatasetVersion,
    Datasheet,
    Delivery,
    Item,
    Label,
)
from . import lineage
from .archive import open_archive
from .images import MAX_IMAGE_BYTES
from .plan import LabelRow, Plan
from .report import ITEM_BATCH, STORE_THREADS, Report

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- writing


def _copy_datasheet(previous: DatasetVersion | None, version: DatasetVersion) -> None:
    sheet = Datasheet.objects.filter(version=previous).first() if previous else None
    if sheet is None:
        Datasheet.objects.create(version=version)
        return
    values = {
        f.attname: getattr(sheet, f.attname)
        for f in Datasheet._meta.concrete_fields
        if f.attname not in ("id", "version_id", "updated_at")
    }
    Datasheet.objects.create(version=version, **values)


def _annotators(organization_id: int, pseudonyms: set[str]) -> dict[str, Annotator]:
    """Annotator rows of the supplier by pseudonym, created for the ones it does not have yet."""
    existing = {
        a.pseudonym: a
        for a in Annotator.objects.filter(organization_id=organization_id, pseudonym__in=pseudonyms)
    }
    missing = [
        Annotator(organization_id=organization_id, pseudonym=p) for p in sorted(pseudonyms - existing.keys())
    ]
    if missing:
        # ignore_conflicts: a concurrent ingest of the same supplier may create the same pseudonym.
        Annotator.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {
            a.pseudonym: a
            for a in Annotator.objects.filter(organization_id=organization_id, pseudonym__in=pseudonyms)
        }
    return existing


_LABEL_COLUMNS = (
    "uid",
    "version_id",
    "item_id",
    "category_id",
    "geometry_type",
    "geometry",
    "attributes",
    "iscrowd",
    "is_final",
    "annotator_id",
    "guideline_version_id",
    "source",
    "model_name",
    "model_version",
    "made_at",
    "source_ref",
    "source_id",
    "delivery_id",
)


# One encoder for every row: json.dumps with arguments builds a new encoder per call.
_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_ITEM_COLUMNS = (
    "id",
    "version_id",
    "key",
    "storage_key",
    "sha256",
    "size_bytes",
    "width",
    "height",
    "split",
    "synthetic",
    "attributes",
    "pinned",
)


def _write_items(plan: Plan, version: DatasetVersion) -> KeyTable:
    """Insert the spooled items; return their ids by key (a compact KeyTable, not a dict: ~200 bytes
    an image less, which at 500,000 images is 100 MB; 8 bytes an image when the archive numbers them)."""
    return KeyTable(_insert_items(plan, version), numbering=plan.numbering)


def _insert_items(plan: Plan, version: DatasetVersion) -> Iterator[tuple[str, int]]:
    """Insert the spooled items batch by batch; yield each one's (key, id).

    PostgreSQL: COPY, whose rows come back with no ids, so the ids are taken from the table's
    sequence first, one query per batch, and written with the rows. SQLite: bulk_create.
    """
    if connection.vendor != "postgresql":
        for batch in plan.items.batches():
            rows = [Item(version=version, **vars(row)) for row in batch]
            for obj in Item.objects.bulk_create(rows, batch_size=ITEM_BATCH):
                yield obj.key, obj.pk
        return
    table = Item._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        (sequence,) = cursor.fetchone()
        for batch in plan.items.batches():
            cursor.execute("SELECT nextval(%s) FROM generate_series(1, %s)", [sequence, len(batch)])
            lines = []
            written = []
            for (pk,), row in zip(cursor.fetchall(), batch, strict=True):
                written.append((row.key, pk))
                lines.append(
                    "\t".join(
                        (
                            str(pk),
                            str(version.pk),
                            copy_text(row.key),
                            copy_text(row.storage_key),
                            copy_text(row.sha256),
                            str(int(row.size_bytes)),
                            str(int(row.width)),
                            str(int(row.height)),
                            copy_text(row.split),
                            "f",
                            "{}" if row.attributes == {} else copy_text(_to_json(row.attributes)),
                            "f",
                        )
                    )
                    + "\n"
                )
            with cursor.cursor.copy(f"COPY {table} ({', '.join(_ITEM_COLUMNS)}) FROM STDIN") as copy:
                copy.write("".join(lines))
            yield from written


class WrittenLabel(NamedTuple):
    """A spooled label as written: its uid (lineage's choice) and, when plain, its geometry's JSON.

    ``geometry_json`` is ``canonical.plain_json_text(row.geometry)``: the label row's jsonb text and the
    ledger event's payload bytes, encoded once; None when the geometry needs the ledger's normalisation.
    """

    uid: uuid.UUID
    row: LabelRow
    geometry_json: str | None


def _write_labels(
    plan: Plan,
    *,
    version: DatasetVersion,
    delivery: Delivery,
    items: KeyTable,
    categories: dict[str, Category],
    annotators: dict[str, Annotator],
    uids: list | None = None,
) -> Iterator[WrittenLabel]:
    """Insert the spooled labels batch by batch, yielding each written row to the ledger.

    ``uids``: the uid of each spooled row, in order, as lineage decided it (else the row's own).
    No Label instances on PostgreSQL: the rows go from the spool to COPY text, and the ledger builds
    its events from the same rows (``lineage.lineage_events``).
    """
    use_copy = connection.vendor == "postgresql"  # psycopg 3, which has COPY FROM STDIN
    ids = _LabelIds(
        items=items,
        categories={name: c.pk for name, c in categories.items()},
        annotators={name: a.pk for name, a in annotators.items()},
        version=version.pk,
        delivery=delivery.pk,
    )
    n = 0
    for batch in plan.labels.batches_with_positions():
        written = []
        for uid, row, _ in batch:
            if uids is not None:
                uid = uids[n]
            n += 1
            written.append(WrittenLabel(uid, row, canonical.plain_json_text(row.geometry)))
        if use_copy:
            _copy_labels(written, ids, [position for _, _, position in batch])
        else:
            Label.objects.bulk_create([_new_label(w, ids) for w in written], batch_size=500)
        yield from written


@dataclasses.dataclass
class _LabelIds:
    """The primary keys a label row refers to, by the names the spool holds."""

    items: KeyTable
    categories: dict[str, int]
    annotators: dict[str, int]
    version: int
    delivery: int


def _copy_labels(written: list[WrittenLabel], ids: _LabelIds, positions: list[int | None]) -> None:
    """PostgreSQL COPY in its text format: about five times the rows per second of INSERT.

    Lines are written as text (psycopg's per-value adaptation costs as much as the rest of the row).
    ``positions``: each row's image among the checked source's names, as the label pass found it.
    """
    head, tail = f"\t{ids.version}\t", f"\t{ids.delivery}\n"
    lines = []
    item_ids = ids.items.values_at(positions, [w.row.item for w in written])
    for (uid, row, geometry_json), item_id in zip(written, item_ids, strict=True):
        geometry = geometry_json if geometry_json is not None else _to_json(row.geometry)
        attributes = "{}" if row.attributes == {} else _to_json(row.attributes)
        texts = (row.geometry_type, geometry, attributes, row.source, row.model_name, row.model_version)
        kind, geometry, attributes, source, model_name, model_version = copy_texts(texts)
        lines.append(
            # PostgreSQL reads a uuid's 32 hex digits without the hyphens as the same value: a third
            # of str(uid)'s cost (the ledger event turns the uid into its text once more).
            f"{uid.int:032x}"
            + head
            + "\t".join(
                (
                    str(item_id),
                    str(ids.categories[row.category]),
                    kind,
                    geometry,
                    attributes,
                    "t" if row.iscrowd else "f",
                    "t" if row.is_final else "f",
                    str(ids.annotators[row.annotator]) if row.annotator else COPY_NULL,
                    str(row.guideline_version) if row.guideline_version else COPY_NULL,
                    source,
                    model_name,
                    model_version,
                    row.made_at.isoformat() if row.made_at else COPY_NULL,
                    copy_text(row.source_ref),
                    copy_text(row.source_id),
                )
            )
            + tail
        )
    copy_rows(f"COPY {Label._meta.db_table} ({', '.join(_LABEL_COLUMNS)}) FROM STDIN", "".join(lines))


def _new_label(written: WrittenLabel, ids: _LabelIds) -> Label:
    """The Label of a written row, for bulk_create (SQLite), without Model.__init__.

    ``Label(**kwargs)`` costs ~18 us (field by field, descriptor by descriptor): 15 s at train2017's
    860k labels. Every concrete field's attname is set here, so nothing is deferred.
    """
    uid, row, _ = written
    label = Label.__new__(Label)
    label._state = ModelState()
    label.__dict__.update(
        id=None,
        uid=uid,
        version_id=ids.version,
        item_id=ids.items[row.item],
        category_id=ids.categories[row.category],
        geometry_type=row.geometry_type,
        geometry=row.geometry,
        attributes=row.attributes,
        iscrowd=row.iscrowd,
        is_final=row.is_final,
        annotator_id=ids.annotators[row.annotator] if row.annotator else None,
        guideline_version_id=row.guideline_version or None,
        source=row.source,
        model_name=row.model_name,
        model_version=row.model_version,
        made_at=row.made_at,
        source_ref=row.source_ref,
        source_id=row.source_id,
        delivery_id=ids.delivery,
    )
    return label


@contextlib.contextmanager
def fewer_collections(young: int = 100_000) -> Iterator[None]:
    """Run the cyclic garbage collector less often: every ``young`` new containers instead of 700.

    The write transaction allocates a few dicts per label (rows, states, documents) while a batch of
    thousands stays alive, so the default thresholds ran ~1,000 collections at 50k labels, each scanning
    the live batch: 1.4 s of its 3.6 s CPU (bench: 5k images, 50k labels). Nothing it allocates forms
    reference cycles in bulk, so memory stays bounded by ``young`` containers. Process-wide, restored after.
    """
    before = gc.get_threshold()
    gc.set_threshold(young, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def release_freed_memory() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``); False elsewhere.

    The read frees its per-image tables before the write, but glibc keeps freed memory in its heap
    (past a large array freed, it serves arrays of up to that size from the heap, not from mmap), and
    the write's own allocations then pile on top of it: at 500,000 images the write started 36 MB above
    where it did at 50,000. ``malloc_trim(0)`` returns every whole free page, not only the heap's top.
    """
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0) >= 0)


@functools.cache
def _glibc():
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@fewer_collections()
def write_version(
    *, delivery_id: int, plan: Plan, report: Report, before_commit: Callable[[], object] | None = None
) -> tuple[DatasetVersion, bool]:
    """The one transaction: version, datasheet, schema, items, labels, ledger events.

    Returns the version and whether this call wrote it (False: a concurrent run of the same
    delivery committed first). ``before_commit`` runs inside the transaction after the last row,
    before the delivery is marked ingested (``StoreAlongside.wait``: the files, stored meanwhile).
    """
    with transaction.atomic():
        # Lock the dataset: two deliveries of one dataset must not both take number N + 1.
        dataset = Dataset.objects.select_for_update().get(
            pk=Delivery.objects.values("dataset_id").get(pk=delivery_id)["dataset_id"]
        )
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.version_id is not None:
            return delivery.version, False  # another run got here first
        previous = dataset.versions.order_by("-number").first()
        notes = f"Delivery {delivery.pk}" + (f" ({delivery.original_name})" if delivery.original_name else "")
        schema_description = (
            AnnotationSchema.objects.filter(version=previous).values_list("description", flat=True).first()
            or ""
        )
        if (
            previous is not None
            and previous.status == DatasetVersion.Status.DRAFT
            and not Item.objects.filter(version=previous).exists()
        ):
            # A supplier prepares a release as an empty draft (its datasheet and schema: see
            # workspace.start_draft); the delivery fills that draft rather than leaving it behind
            # and taking the next number. Its schema is rebuilt from the merged plan.
            version, number = previous, previous.number
            AnnotationSchema.objects.filter(version=version).delete()
            if not Datasheet.objects.filter(version=version).exists():
                Datasheet.objects.create(version=version)
            if not version.release_notes:
                version.release_notes = notes
                version.save(update_fields=["release_notes"])
        else:
            number = previous.number + 1 if previous else 1
            version = DatasetVersion.objects.create(dataset=dataset, number=number, release_notes=notes)
            _copy_datasheet(previous, version)
        schema = AnnotationSchema.objects.create(version=version, description=schema_description)
        categories = {
            c.name: c
            for c in Category.objects.bulk_create(
                [Category(schema=schema, **dataclasses.asdict(spec)) for spec in plan.categories.values()]
            )
        }
        AttributeSpec.objects.bulk_create(
            [AttributeSpec(schema=schema, **spec) for spec in plan.attribute_specs]
        )
        annotators = _annotators(dataset.supplier_id, plan.annotators)
        guidelines = GuidelineVersion.objects.in_bulk(set(plan.guideline_ids.values()))

        items = _write_items(plan, version)

        # Lineage: the labels of the version this one replaces keep their uids in it (see lineage.py).
        replaced = (
            previous
            if version is not previous
            else (dataset.versions.filter(number__lt=number).order_by("-number").first())
        )
        matched = lineage.match_delivery(
            labels=plan.labels, previous=replaced, version=version, options=delivery.matching
        )
        labels = _write_labels(
            plan,
            version=version,
            delivery=delivery,
            items=items,
            categories=categories,
            annotators=annotators,
            uids=matched.uids,
        )
        actor = f"org:{dataset.supplier.slug}"
        # The labels' and events' COPY statements run in a helper thread while the next batch is built,
        # their foreign keys checked per statement there: client and server work at the same time.
        with copy_behind(immediate_constraints=True):
            ledger.append_events(
                dataset=dataset,
                events=lineage.lineage_events(
                    labels,
                    matched,
                    delivery_id=delivery.pk,
                    version_number=number,
                    actor=actor,
                    guideline_tags={pk: g.tag for pk, g in guidelines.items()},
                ),
            )
        if guidelines:
            version.guideline_versions.set(guidelines.values())
        version.stats = catalogue_stats.compute_version_stats(version=version)
        version.save(update_fields=["stats"])

        delivery.version = version
        delivery.format = plan.format
        delivery.status = Delivery.Status.INGESTED
        delivery.progress = 100
        delivery.report = _report_body(plan=plan, report=report, stage="done", version=number)
        delivery.report["lineage"] = matched.section()
        delivery.finished_at = timezone.now()
        if before_commit is not None:
            before_commit()  # the files are stored before this commit, or it does not happen
        # The files are stored (StoreAlongside): this commit completes the delivery.
        delivery.save(update_fields=["version", "format", "status", "progress", "report", "finished_at"])
    return version, True


def _report_body(
    *, plan: Plan | None, report: Report, stage: str, version: int | None = None, format: str = ""
) -> dict:
    body = {
        "stage": stage,
        "format": plan.format if plan else format,
        "counts": plan.counts if plan else {},
        "provenance": plan.provenance if plan else {},
        **report.as_dict(),
    }
    if version is not None:
        body["version"] = version
    return body


# --------------------------------------------------------------------------- the files


class ChangedContentError(RuntimeError):
    """An archive entry no longer hashes to the key its check gave it (the archive changed)."""


def _expected_sha256(storage_key: str) -> str:
    return posixpath.basename(storage_key).split(".")[0]


def _read_checked(source, key: str, storage_key: str, lock: threading.Lock) -> bytes:
    """The entry's bytes, refused unless they hash to the key: never store a file under a hash it does not have."""
    # One reader at a time: zipfile counts the open entries of an archive without a lock.
    with lock, source.open(key) as stream:
        data = stream.read(MAX_IMAGE_BYTES + 1)
    if hashlib.sha256(data).hexdigest() != _expected_sha256(storage_key):
        raise ChangedContentError(key)
    return data


def _put_blob(source, key: str, storage_key: str, lock: threading.Lock) -> None:
    """The generic path (object storage): one entry through the storage API, unless its key is there."""
    if default_storage.exists(storage_key):
        return  # content-addressed: the same bytes are already there, no need to read them again
    data = _read_checked(source, key, storage_key, lock)
    saved = default_storage.save(storage_key, ContentFile(data))
    if saved != storage_key:  # a concurrent writer won the race; keep one copy
        default_storage.delete(saved)


class _LocalBlobWriter:
    """The fast path for a plain local FileSystemStorage: a file appears under its key complete or not at all.

    Each entry streams from the archive into a temporary file in the key's own folder while it is
    hashed; only when the hash matches the key is the file linked under its final name (``os.link``:
    atomic, and it never replaces a blob a concurrent writer stored first). A process killed mid-write
    leaves a ``.*.part`` file, never a partial file under a key (which ``exists`` would then accept
    forever, as it would after ``storage.save`` was killed); the orphan-blob sweep removes it. As
    Django's FileSystemStorage: no fsync, the file mode from FILE_UPLOAD_PERMISSIONS (else 0o666 less
    the umask), folders with FILE_UPLOAD_DIRECTORY_PERMISSIONS. Safe to call from several threads.
    """

    def __init__(self, storage, source):
        self.storage = storage
        self.source = source
        self.lock = threading.Lock()  # opening and closing the archive's entries; the umask
        self.folders = MadeFolders()

    @staticmethod
    def applies_to(storage) -> bool:
        # Exactly Django's class: a subclass may name, place or post-process files its own way.
        return storage.__class__ is FileSystemStorage

    def put(self, key: str, storage_key: str) -> None:
        final = self.storage.path(storage_key)  # refuses a key that would leave the storage's root
        if os.path.exists(final):
            return  # content-addressed: the same bytes are already there, no need to read them again
        folder = os.path.dirname(final)
        self._make_folder(folder, storage_key)
        partial = os.path.join(folder, f".{os.path.basename(final)}.{secrets.token_hex(6)}.part")
        try:
            self._write_checked(key, storage_key, partial)
            try:
                os.link(partial, final)
            except FileExistsError:
                pass  # a concurrent writer stored the same bytes first
            except OSError:  # a file system without hard links: an atomic rename will do
                os.replace(partial, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)

    def _write_checked(self, key: str, storage_key: str, partial: str) -> None:
        digest, written = hashlib.sha256(), 0
        # O_EXCL and 0o666 as Django's FileSystemStorage._save: the umask applies as it does there.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as out:
            with self.lock:  # zipfile counts an archive's open entries without a lock of its own
                stream = self.source.open(key)
            try:
                while chunk := stream.read(1024 * 1024):  # zipfile locks each read itself
                    written += len(chunk)
                    if written > MAX_IMAGE_BYTES:
                        raise ChangedContentError(key)
                    digest.update(chunk)
                    out.write(chunk)
            finally:
                with self.lock:
                    stream.close()
        if digest.hexdigest() != _expected_sha256(storage_key):
            raise ChangedContentError(key)
        if self.storage.file_permissions_mode is not None:
            os.chmod(partial, self.storage.file_permissions_mode)

    def _make_folder(self, folder: str, storage_key: str) -> None:
        if self.folders.made(storage_key, folder):
            return
        mode = self.storage.directory_permissions_mode
        if mode is None:
            os.makedirs(folder, exist_ok=True)
        else:  # as FileSystemStorage._save; the umask is the process's, so one thread at a time
            with self.lock:
                old_umask = os.umask(0o777 & ~mode)
                try:
                    os.makedirs(folder, mode, exist_ok=True)
                finally:
                    os.umask(old_umask)
        self.folders.add(storage_key, folder)


class MadeFolders:
    """The folders made so far in one storage, given a file's storage key and its folder.

    A blob's folder is one of 65,536 (``blobs/ab/cd/``, blobs.blob_key): a bitmap of 64 KB holds them,
    where a set of their paths held ~150 bytes a folder, 10 MB by the end of a 500,000-image delivery.
    Any other folder goes to a set, as before. (Two threads may both make one folder: harmless,
    ``makedirs`` is told it may exist.)
    """

    _BLOB = re.compile(r"blobs/([0-9a-f]{2})/([0-9a-f]{2})/[^/]+\Z")

    def __init__(self):
        self._bits = bytearray(1 << 16)
        self._other: set[str] = set()

    def _slot(self, storage_key: str) -> int | None:
        match = self._BLOB.match(storage_key)
        return int(match[1] + match[2], 16) if match else None

    def made(self, storage_key: str, folder: str) -> bool:
        """Was ``folder``, the folder of this key, made already?"""
        slot = self._slot(storage_key)
        return bool(self._bits[slot]) if slot is not None else folder in self._other

    def add(self, storage_key: str, folder: str) -> None:
        """Remember that ``folder``, the folder of this key, is made."""
        slot = self._slot(storage_key)
        if slot is not None:
            self._bits[slot] = 1
        else:
            self._other.add(folder)


def _copy_files(delivery: Delivery, pairs: Iterator[tuple[str, str]], source=None) -> int:
    """Copy each (archive member, storage key) from the delivery's archive into storage, once per key.

    Idempotent: a file already in storage (from this run, an earlier version or another dataset
    with the same image) is neither read nor written again. Returns how many distinct keys were seen.
    ``source``: the delivery's archive, already open (the check's); else it is opened here.
    """
    try:
        with contextlib.nullcontext(source) if source is not None else open_archive(delivery) as source:
            if _LocalBlobWriter.applies_to(default_storage):
                return _store_local(source, pairs)
            return _store_generic(source, pairs)
    except ChangedContentError as changed:
        # The archive changed under us: never store a file under a hash it does not have.
        raise RuntimeError(
            f"{changed} in delivery {delivery.pk} no longer matches its checked content"
        ) from None


class DistinctPairs:
    """(entry, storage key) pairs whose storage keys are known not to repeat (a plan without duplicate
    images): storing them keeps no set of every key seen (~150 bytes an image)."""

    def __init__(self, pairs: Iterator[tuple[str, str]]):
        self.pairs = pairs

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)


def _store_local(source, pairs: Iterator[tuple[str, str]]) -> int:
    return _store_each(pairs, _LocalBlobWriter(default_storage, source).put)


def _store_generic(source, pairs: Iterator[tuple[str, str]]) -> int:
    lock = threading.Lock()
    return _store_each(pairs, lambda key, storage_key: _put_blob(source, key, storage_key, lock))


def _store_each(pairs: Iterator[tuple[str, str]], put: Callable[[str, str], None]) -> int:
    """``put`` each (entry, key) once per key, in a few threads; return how many distinct keys there were.

    Storing is latency-bound (an S3 HEAD and PUT; a local mkdir and create, which on a busy disk
    wait on the journal) and a delivery has thousands of files, so a few threads overlap the waits.
    :class:`DistinctPairs` are stored without a set of the keys seen.
    """
    distinct = isinstance(pairs, DistinctPairs)
    done: set[str] = set()
    stored = 0
    with ThreadPoolExecutor(max_workers=STORE_THREADS) as pool:
        pending: set[Future] = set()
        for key, storage_key in pairs:
            if not distinct:
                if storage_key in done:
                    continue
                done.add(storage_key)
            stored += 1
            pending.add(pool.submit(put, key, storage_key))
            if len(pending) >= 4 * STORE_THREADS:  # bound what waits in memory
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
        for future in pending:
            future.result()
    return stored


class StoreAlongside:
    """Store the plan's images in a thread while the write transaction runs; ``wait()`` before its commit.

    Files before rows still holds: :func:`write_version` calls ``wait()`` inside its transaction, just
    before the commit, so no row that names a file commits before the file is stored, and a storing
    error rolls the rows back. The overlap pays because the two use different parts of the machine:
    the write waits on the database server most of its time, storing on the kernel creating files (at
    50,000 images, storing took ~25 s and the write ~65 s, one after the other). The thread touches
    the archive and storage only, never the database (its delivery is read here, in the caller's).
    """

    def __init__(self, *, delivery_id: int, plan: Plan, source=None):
        self.delivery = Delivery.objects.get(pk=delivery_id)
        self.source = source  # the archive the plan was checked from, open until wait() (or opened again)
        self.stored: int | None = None
        self.error: BaseException | None = None
        pairs = ((row.key, row.storage_key) for batch in plan.items.batches_apart() for row in batch)
        if plan.counts.get("duplicate_images") == 0:  # every content distinct: every storage key too
            pairs = DistinctPairs(pairs)
        self.thread = threading.Thread(target=self._run, args=(pairs,), name="store-images", daemon=True)
        self.thread.start()

    def _run(self, pairs) -> None:
        try:
            self.stored = _copy_files(self.delivery, pairs, self.source)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread, re-raised there
            self.error = error

    def wait(self) -> int:
        """Block until every file is stored; raise what storing raised."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.stored or 0


def store_delivery_files(*, delivery_id: int) -> None:
    """Finish a delivery whose rows were committed before its files were stored; mark it ingested.

    Only deliveries written by an older release (which copied the files after the commit) can be
    in that state; :func:`write_version` now commits rows only after the files are stored (:class:`StoreAlongside`).
    """
    delivery = Delivery.objects.select_related("version").get(pk=delivery_id)
    if delivery.version_id is None or delivery.status == Delivery.Status.INGESTED:
        return
    rows = (
        Item.objects.filter(version_id=delivery.version_id).values_list("key", "storage_key").order_by("key")
    )
    _copy_files(delivery, rows.iterator(chunk_size=2000))
    report = dict(delivery.report or {})
    report["stage"] = "done"
    Delivery.objects.filter(pk=delivery_id).update(
        status=Delivery.Status.INGESTED, progress=100, report=report, finished_at=timezone.now()
    )
