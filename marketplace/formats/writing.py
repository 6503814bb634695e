"""What every export writer shares: where files go, what the format could not hold, file names.

No Django here, like the readers. A writer takes a :class:`Sink` (a zip being written, or a
directory) and streams records into it; the sink hashes every file as it is written, so the
export's ``MANIFEST.sha256`` costs no second pass over the archive.

Images go into an export at ``images/<split>/<name>`` (COCO and YOLO; VOC has its own
``JPEGImages/``), where ``<name>`` is the item key without a leading ``images/<split>/`` or
``images/`` (``images/train/a.jpg`` -> ``images/train/a.jpg``, ``cam1/a.jpg`` in val ->
``images/val/cam1/a.jpg``). Items without a split go to the folder ``default``, datumaro's
name for "no subset".
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import posixpath
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from .model import ItemRecord, LabelRecord

# Zip entries get this timestamp, so the same export gives byte-identical archives (and sha256).
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
DEFAULT_SPLIT_FOLDER = "default"
COPY_CHUNK = 1024 * 1024
WRITE_BUFFER = (
    1024 * 1024
)  # bytes gathered before a file's data is hashed and deflated (off the caller's thread)
# Deflate level 1: label text still shrinks 4-5x, at a third of the CPU time of the default 6.
COMPRESS_LEVEL = 1
# Already-compressed files are stored as they are: deflating a JPEG costs time and saves nothing.
STORED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".zip", ".gz", ".tif", ".tiff", ".bmp")

Record = tuple[ItemRecord, list[LabelRecord]]


class Sink(Protocol):
    """Where a writer puts files; names are POSIX paths relative to the export's root."""

    def open(self, name: str) -> BinaryIO: ...

    def write(self, name: str, data: bytes) -> None: ...

    def copy_from(self, name: str, stream: BinaryIO) -> None: ...


@dataclass
class WrittenFile:
    name: str
    sha256: str
    size: int


class _HashingWriter:
    """A write-only stream that hashes and counts what passes through it.

    Small writes (a row, an annotation) are gathered into WRITE_BUFFER bytes, and each full buffer is
    hashed, deflated and written by a helper thread while the caller builds the next rows: hashlib,
    zlib (and the zip's CRC) release the GIL on such buffers, so on a second core compression costs
    no wall time. One buffer in flight at a time, in order; a file smaller than the buffer never
    starts the thread. An error in the thread is raised by the next write or by close().
    """

    def __init__(self, inner: BinaryIO, on_close):
        self._inner = inner
        self._digest = hashlib.sha256()
        self._size = 0
        self._on_close = on_close
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None
        self.closed = False

    def write(self, data: bytes) -> int:
        self._pending.append(data)
        self._pending_size += len(data)
        self._size += len(data)
        if self._pending_size >= WRITE_BUFFER:
            chunk = b"".join(self._pending)
            self._pending, self._pending_size = [], 0
            self._wait()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-deflate")
            self._in_flight = self._pool.submit(self._consume, chunk)
        return len(data)

    def _consume(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self._inner.write(chunk)

    def _wait(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._wait()
            if self._pending:
                self._consume(b"".join(self._pending))
                self._pending = []
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        self._inner.close()
        self._on_close(self._digest.hexdigest(), self._size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DeflatedFile:
    """A file's bytes deflated as they are written, exactly as a zip entry holds them, in a temporary file.

    For a file whose bytes are ready before its turn in the archive (the labels' content rows, built
    by the database; provenance.csv, row by row): a helper thread deflates it meanwhile, on the other
    core, and ``Sink.copy_deflated`` copies the result in its place. The same bytes as the sink's own
    writer: zipfile's compressor (``zlib.compressobj(level, DEFLATED, -15)``) at COMPRESS_LEVEL, whose
    output does not depend on how the input is cut into writes (deflate decides with a full lookahead
    until the final flush), with the CRC-32, size and SHA-256 the entry and the manifest need.
    """

    def __init__(self):
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -15)
        self._digest = hashlib.sha256()
        self.crc = 0
        self.size = 0
        self.compressed_size = 0
        self.sha256 = ""
        self.finished = False

    def write(self, data: bytes) -> None:
        self._digest.update(data)
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self._put(self._compressor.compress(data))

    def _put(self, compressed: bytes) -> None:
        if compressed:
            self.file.write(compressed)
            self.compressed_size += len(compressed)

    def finish(self) -> DeflatedFile:
        if not self.finished:
            self._put(self._compressor.flush())
            self.sha256 = self._digest.hexdigest()
            self.finished = True
        return self

    def chunks(self) -> Iterator[bytes]:
        """The deflated bytes, from the start."""
        self.file.seek(0)
        while chunk := self.file.read(COPY_CHUNK):
            yield chunk

    def close(self) -> None:
        self.file.close()


class DeflatingSpool:
    """Text (a ``csv.writer``'s rows) or bytes written a little at a time into a DeflatedFile by a thread.

    The writes are gathered into WRITE_BUFFER characters or bytes; each batch is joined (and encoded)
    here and deflated in the thread (zlib, crc32 and hashlib release the GIL) while the caller goes
    on; one batch in flight at a time, in order.
    """

    def __init__(self, *, text: bool = True):
        self.text = text
        self.deflated = DeflatedFile()
        self._pending: list = []
        self._pending_size = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-spool")
        self._in_flight: Future | None = None

    def write(self, data: str | bytes) -> int:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= WRITE_BUFFER:
            self._submit()
        return len(data)

    def _submit(self) -> None:
        data = "".join(self._pending).encode("utf-8") if self.text else b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        self._wait()
        self._in_flight = self._pool.submit(self.deflated.write, data)

    def _wait(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()

    def finish(self) -> DeflatedFile:
        if self._pending:
            self._submit()
        self._wait()
        return self.deflated.finish()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.deflated.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Drained:
    """A compressor with nothing left to flush: the entry's bytes were deflated beforehand."""

    def flush(self) -> bytes:
        return b""


# Folders with one file per item: listed in the manifest, never held in memory one by one.
PER_ITEM_FOLDERS = (
    "images/",
    "labels/",
    "Annotations/",
    "JPEGImages/",
    "SegmentationClass/",
    "SegmentationObject/",
)


class _BaseSink:
    """Bookkeeping shared by the sinks: unique names, and the sha256 of every file written.

    Every file's "<sha256>  <name>" line goes to a temporary manifest on disk; only the files
    outside the per-item folders (the label files of COCO, data.yaml, the documents) are kept
    in ``files`` for the Croissant metadata, so memory does not grow with the item count.
    """

    def __init__(self):
        self.files: list[WrittenFile] = []
        self._names: set[int] = set()  # hashes: a name costs ~40 bytes, not ~150
        self._manifest = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close_manifest()
        self.count = 0

    def _claim(self, name: str) -> None:
        key = hash(name)
        if key in self._names or name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"cannot write {name!r} twice or outside the export")
        self._names.add(key)

    def _done(self, name: str):
        def record(sha: str, size: int) -> None:
            self._manifest.write(f"{sha}  {name}\n".encode())
            self.count += 1
            if not name.startswith(PER_ITEM_FOLDERS):
                self.files.append(WrittenFile(name, sha, size))

        return record

    def write_manifest(self, name: str = "MANIFEST.sha256") -> None:
        """Write the sha256sum-style manifest of every file so far (not itself) under ``name``."""
        self._manifest.seek(0)
        with self.open(name) as out:
            shutil.copyfileobj(self._manifest, out, COPY_CHUNK)

    def close_manifest(self) -> None:
        self._manifest.close()

    def write(self, name: str, data: bytes) -> None:
        with self.open(name) as out:
            out.write(data)

    def copy_from(self, name: str, stream: BinaryIO) -> None:
        with self.open(name) as out:
            shutil.copyfileobj(stream, out, COPY_CHUNK)

    def copy_deflated(self, name: str, deflated: DeflatedFile) -> None:
        """Write a file given deflated (a DeflatedFile, finished): inflated here; a zip copies it as is."""
        inflate = zlib.decompressobj(-15)
        with self.open(name) as out:
            for chunk in deflated.chunks():
                out.write(inflate.decompress(chunk))
            out.write(inflate.flush())

    def __contains__(self, name: str) -> bool:
        return hash(name) in self._names


class _SpilledEntries:
    """``ZipFile.filelist`` kept on disk: the central directory of a big export, out of memory.

    zipfile keeps every entry's ZipInfo (about 400 bytes) until it writes the central directory
    at the end: half a million files would hold 200 MB. Here each ZipInfo is pickled to a
    temporary file as its entry closes and read back, in order, when the directory is written.
    """

    def __init__(self):
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._count = 0

    def append(self, info: zipfile.ZipInfo) -> None:
        self._file.seek(0, os.SEEK_END)
        pickle.dump(info, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        self._file.seek(0)
        for _ in range(self._count):
            yield pickle.load(self._file)  # noqa: S301 - our own temporary file, written above

    def close(self) -> None:
        self._file.close()


class _NoIndex(dict):
    """``ZipFile.NameToInfo`` that remembers nothing: the sink itself refuses duplicate names."""

    def __setitem__(self, key, value) -> None:
        pass


class ZipSink(_BaseSink):
    """Writes entries into a zip, one at a time, streaming (zip64 on, so no size limit).

    Memory stays flat however many files the archive holds: the central directory waits on
    disk (:class:`_SpilledEntries`), and names are remembered as hashes (_BaseSink).
    """

    def __init__(self, fileobj: BinaryIO | str | os.PathLike):
        super().__init__()
        self.zip = zipfile.ZipFile(fileobj, "w", allowZip64=True)
        # zipfile has no hook for this; filelist and NameToInfo are the attributes it appends to.
        self._entries = _SpilledEntries()
        self.zip.filelist = self._entries  # type: ignore[assignment]
        self.zip.NameToInfo = _NoIndex()

    def open(self, name: str) -> BinaryIO:
        self._claim(name)
        inner = self.zip.open(self._info(name), "w", force_zip64=True)
        return _HashingWriter(inner, self._done(name))  # type: ignore[return-value]

    def copy_deflated(self, name: str, deflated: DeflatedFile) -> None:
        """The entry ``open(name)`` would write with the DeflatedFile's bytes, its deflated data copied as is.

        zipfile has no way in for data already compressed: its entry writer is given the deflated bytes
        straight to the archive's file, then told the counts it would have kept (size, CRC-32,
        compressed size) and a compressor with nothing left, so that closing it writes the same header
        and directory entry. (CPython 3.11's ``_ZipWriteFile``; ``tests/marketplace/
        test_export_deflated.py`` compares the archives byte for byte.)
        """
        info = self._info(name)
        if info.compress_type != zipfile.ZIP_DEFLATED or not deflated.finished:
            super().copy_deflated(name, deflated)
            return
        self._claim(name)
        entry = self.zip.open(info, "w", force_zip64=True)
        try:
            for chunk in deflated.chunks():
                entry._fileobj.write(chunk)
            entry._compressor = _Drained()
            entry._file_size, entry._crc = deflated.size, deflated.crc
            entry._compress_size = deflated.compressed_size
        finally:
            entry.close()
        self._done(name)(deflated.sha256, deflated.size)

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
        info.external_attr = 0o644 << 16
        stored = name.lower().endswith(STORED_SUFFIXES)
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        # ZipInfo takes its level from a private attribute before Python 3.13 (compress_level after).
        setattr(
            info, "compress_level" if hasattr(info, "compress_level") else "_compresslevel", COMPRESS_LEVEL
        )
        return info

    def close(self) -> None:
        try:
            self.zip.close()
        finally:
            self._entries.close()
            self.close_manifest()


class DirectorySink(_BaseSink):
    """Writes files under a directory (the CLI's ``--out DIR`` and the tests)."""

    def __init__(self, root: str | os.PathLike):
        super().__init__()
        self.root = Path(root)

    def open(self, name: str) -> BinaryIO:
        self._claim(name)
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return _HashingWriter(open(path, "wb"), self._done(name))  # type: ignore[return-value]  # noqa: SIM115

    def close(self) -> None:
        self.close_manifest()


# --------------------------------------------------------------------------- notes


@dataclass
class Notes:
    """What the format could not hold, or held differently, counted: the export's notes.

    One note per (code, kind, category), its count growing; the first detail wins. Codes:
    ``dropped`` (not in the export at all), ``converted`` (in the export as something else,
    e.g. a polygon as its box), ``clipped`` (moved to fit the image or the format's range),
    ``info`` (how to read the export, e.g. the YOLO class index mapping).
    """

    _notes: dict[tuple, dict] = field(default_factory=dict)

    def add(self, code: str, detail: str, *, kind: str = "", category: str = "", count: int = 1) -> None:
        key = (code, kind, category, detail if code == "info" else "")
        note = self._notes.get(key)
        if note is None:
            note = {"code": code, "detail": detail, "count": 0}
            if kind:
                note["kind"] = kind
            if category:
                note["category"] = category
            self._notes[key] = note
        note["count"] += count

    def as_list(self) -> list[dict]:
        return [dict(n) for n in self._notes.values()]

    def __bool__(self) -> bool:
        return bool(self._notes)


# --------------------------------------------------------------------------- names


def split_folder(split: str) -> str:
    return split or DEFAULT_SPLIT_FOLDER


def relative_image_name(key: str, split: str) -> str:
    """The item key without the ``images/<split>/`` (or ``images/``) prefix it usually has."""
    for prefix in (f"images/{split}/" if split else None, "images/"):
        if prefix and key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix) :]
    return key


class NameAllocator:
    """Unique names per folder: a second ``a.jpg`` becomes ``a-2.jpg``.

    It remembers the hash of every name it gave (about 40 bytes each). Two different names
    with one 64-bit hash would only rename the second, harmlessly.
    """

    def __init__(self):
        self._used: set[int] = set()

    def allocate(self, wanted: str) -> str:
        name = wanted
        stem, ext = posixpath.splitext(wanted)
        n = 2
        while hash(name.casefold()) in self._used:
            name = f"{stem}-{n}{ext}"
            n += 1
        self._used.add(hash(name.casefold()))
        return name


@contextmanager
def opened_image(image_source, item: ItemRecord) -> Iterator[BinaryIO | None]:
    """The item's image stream from the caller's ``image_source(item)``, closed afterwards."""
    if image_source is None:
        yield None
        return
    stream = image_source(item)
    try:
        yield stream
    finally:
        stream.close()


def fmt_number(value: float) -> str:
    """Six decimals, never an exponent (readers like datumaro refuse ``1e-05``); for values >= 0."""
    return f"{value:.6f}"


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def provenance_line(reference: str, label: LabelRecord) -> str:
    """One ``provenance.jsonl`` record, the sidecar our ingest reads back, for one label.

    VOC and YOLO cannot say who made a label; the sidecar keyed by the label's place in the
    export (``Annotations/a.xml#2``, ``labels/train/a.txt:3``) carries it through a round trip.
    """
    p = label.provenance
    record: dict = {"label": reference}
    if p.annotator:
        record["annotator"] = p.annotator
    if p.made_at is not None:
        record["created_at"] = p.made_at.isoformat()
    if p.guideline_version:
        record["guideline_version"] = p.guideline_version
    record["source"] = p.source
    if p.model_name:
        record["model_name"] = p.model_name
    if p.model_version:
        record["model_version"] = p.model_version
    return _ENCODE(record)
