"""Read a delivery's files safely: a checked zip archive or a directory, and capped JSON.

A supplier's zip is hostile until proven otherwise. :class:`ZipSource` refuses, before a
single byte is extracted, every archive with:

- a name that is absolute (``/x``, ``C:x``), climbs out (``..``), is not canonical (``.``
  or empty components), holds a backslash (Windows tools treat it as a separator, so
  ``..\\evil`` is a traversal there), a NUL byte or another control character;
- a symlink or any other non-regular file (the Unix mode in ``external_attr``);
- two entries with the same name, compared after Unicode NFC normalisation and case
  folding (they collide on macOS and Windows file systems), or a name that is both a file
  and a directory;
- encrypted entries, or a compression method other than stored, deflate, bzip2 or LZMA;
- more entries than ``max_entries`` (the end record is read before the central directory
  is parsed), a declared total uncompressed size above ``max_total_size``, an entry above
  ``max_entry_size``, or a compression ratio above ``max_ratio`` for entries larger than
  ``ratio_min_size``;
- overlapping entries (the "better zip bomb" reuses one compressed kernel for every entry),
  data before the first entry or after the end record (polyglot files).

Headers lie, so :meth:`ZipSource.open` also returns a stream that counts the bytes it
actually inflates and raises :class:`~marketplace.formats.model.FormatError` as soon as an
entry yields more than its declared size (or the per-entry cap).

``__MACOSX/`` resource forks and ``.DS_Store`` files are checked like everything else but
left out of :meth:`ZipSource.names`.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import io
import json
import lzma
import os
import re
import stat
import struct
import threading
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import strict_json
from .model import FormatError, Problem

# Readers stop recording problems here: a broken million-label file must not produce a
# million-row report (or hold one in memory).
MAX_PROBLEMS = 1000

GiB = 1 << 30
MiB = 1 << 20

_ALLOWED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_ENCRYPTED = 0x1
_STRONG_ENCRYPTION = 0x40
_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_LOCAL_HEADER_SIZE = 30
_CHUNK = 64 * 1024
_SLACK = _CHUNK + 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


class ProblemLog(list):
    """A list of problems that stops growing at ``limit``; its last slot then says so."""

    def __init__(self, limit: int = MAX_PROBLEMS):
        super().__init__()
        self.limit = limit
        self.dropped = 0

    def add(
        self,
        file: str,
        message: str,
        *,
        line: int | None = None,
        pointer: str | None = None,
        code: str = "invalid",
    ) -> None:
        """Record one problem, or count it once the log is full."""
        if len(self) < self.limit - 1:
            self.append(Problem(file=file, message=message, line=line, pointer=pointer, code=code))
        elif len(self) == self.limit - 1:
            self.append(
                Problem(
                    file=file,
                    message=f"too many problems: only the first {self.limit - 1} are listed",
                    code="too_many_problems",
                )
            )
        else:
            self.dropped += 1

    def extend_problems(self, problems: list[Problem]) -> None:
        """Record problems found elsewhere, through the same cap."""
        for p in problems:
            self.add(p.file, p.message, line=p.line, pointer=p.pointer, code=p.code)


def is_ignored(name: str) -> bool:
    """Finder and resource-fork litter that macOS puts in zips: not part of a delivery."""
    parts = name.rstrip("/").split("/")
    return parts[0] == "__MACOSX" or parts[-1] == ".DS_Store"


@dataclass(frozen=True)
class ZipLimits:
    """How much a zip may hold. The defaults fit a large image dataset, not a bomb."""

    max_entries: int = 100_000
    max_total_size: int = 20 * GiB
    max_entry_size: int = 4 * GiB
    # Images and labels compress 1.1:1 to ~20:1; zeros compress ~1000:1. Small entries are
    # exempt because a tiny JSON or an empty mask legitimately compresses very well.
    max_ratio: float = 200.0
    ratio_min_size: int = 1 * MiB


def _name_problems(raw: str, name: str) -> list[str]:
    # raw: orig_filename, which keeps what zipfile cuts at a NUL ("evil.sh\0.jpg" reads as "evil.sh").
    reasons = []
    if "\x00" in raw:
        reasons.append("name contains a NUL byte")
    elif _CONTROL.search(raw):
        reasons.append("name contains a control character")
    if "\\" in raw:
        reasons.append("name contains a backslash")
    if raw.startswith("/") or _DRIVE.match(raw):
        reasons.append("absolute path")
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if ".." in parts:
        reasons.append("path climbs out of the archive ('..')")
    elif any(p in ("", ".") for p in parts) and not raw.startswith("/"):
        reasons.append("non-canonical path (empty or '.' component)")
    return reasons


def _collision_key(name: str) -> str:
    return unicodedata.normalize("NFC", name.rstrip("/")).casefold()


def _read_end_record(fp: BinaryIO, label: str, problems: ProblemLog) -> int | None:
    """Check the end of the file and return the entry count the end record declares."""
    fp.seek(0, os.SEEK_END)
    size = fp.tell()
    tail_len = min(size, (1 << 16) + _EOCD_SIZE)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    pos = tail.rfind(_EOCD)
    if pos < 0 or pos + _EOCD_SIZE > len(tail):
        problems.add(label, "not a zip archive (no end of central directory record)", code="not_a_zip")
        return None
    (entries, comment_len) = struct.unpack("<10xH8xH", tail[pos : pos + _EOCD_SIZE])
    trailing = len(tail) - (pos + _EOCD_SIZE + comment_len)
    if trailing > 0:
        problems.add(label, f"{trailing} bytes of trailing data after the archive", code="trailing_data")
    if entries == 0xFFFF:
        # Zip64: the real count is in the zip64 end record that the locator points to.
        loc = size - tail_len + pos - 20
        if loc >= 0:
            fp.seek(loc)
            locator = fp.read(20)
            if locator[:4] == _ZIP64_LOCATOR:
                # After the signature: disk (4 bytes), the zip64 end record's offset (8), disks (4).
                (offset,) = struct.unpack("<4xQ4x", locator[4:])
                fp.seek(offset)
                record = fp.read(56)
                if record[:4] == _ZIP64_EOCD and len(record) == 56:
                    (entries,) = struct.unpack("<Q", record[32:40])
    return entries


class MemberIndex:
    """A zip's central directory held compactly: the names in one bytes blob, the numbers in arrays.

    zipfile keeps a ``ZipInfo`` object per entry, twice reachable (its list and its name map): about
    0.5 KB an entry, 25 MB for 50,000 images, held by every open ``ZipSource`` (the check's, the
    image store's, each image-check worker's). This index holds ~44 bytes an entry plus the name.
    It is filled by zipfile's own parser (:class:`_IndexingZipFile` hands it each ``ZipInfo`` as it is
    read, then drops it), so names, zip64 sizes and offsets are exactly zipfile's. It keeps them for
    the checks only: an open :class:`ZipSource` then releases them (:meth:`release`)
    and reads a listed entry back from the file (:class:`_Directory`).
    """

    def __init__(self, directory_size: int = 2**32):
        # Offsets into a central directory below 4 GiB (and into its names, fewer bytes) in 4 bytes.
        # "I": 4 bytes ("L" is 8 on 64-bit Linux).
        within = "I" if directory_size < 2**32 else "Q"
        self._names = bytearray()  # orig_filename of each entry, UTF-8, one after the other
        self._ends = array.array(within)  # where each name ends in _names
        self.header_offset = array.array("Q")
        self.compress_size = array.array("Q")
        self.file_size = array.array("Q")
        self.external_attr = array.array("I")  # a 32-bit field
        self.flag_bits = array.array("H")
        self.compress_type = array.array("H")
        # Where each entry's record starts in the central directory: what a ZipSource keeps after the
        # checks, to read a listed entry's name and numbers back from the file (see _Directory).
        self.record = array.array(within)
        self._released: int | None = None
        # Not kept: the entry's DOS time (read back only to check a password, and encrypted entries
        # are refused), its CRC (checked by zipfile as an entry is read, from the record read back),
        # its extra field and comment (zipfile has applied the zip64 extra already).

    def append(self, info: zipfile.ZipInfo, record: int = 0) -> None:
        """Keep one entry, and where its record starts in the central directory."""
        self.record.append(record)
        self._names += info.orig_filename.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._names))
        self.header_offset.append(info.header_offset)
        self.compress_size.append(info.compress_size)
        self.file_size.append(info.file_size)
        self.external_attr.append(info.external_attr)
        self.flag_bits.append(info.flag_bits)
        self.compress_type.append(info.compress_type)

    def __len__(self) -> int:
        return len(self._ends) if self._released is None else self._released

    def release(self) -> None:
        """Drop every entry's name and numbers (about 100 bytes an entry), keeping only the count.

        Called once the checks are done and the open archive has what it keeps (``_Directory``).
        """
        count = len(self)
        for field in ("_ends", "header_offset", "compress_size", "file_size", "record"):
            setattr(self, field, array.array("Q"))
        for field in ("external_attr",):
            setattr(self, field, array.array("I"))
        for field in ("flag_bits", "compress_type"):
            setattr(self, field, array.array("H"))
        self._names = bytearray()
        self._released = count

    def orig_filename(self, i: int) -> str:
        """The name as stored (a NUL and what follows it included)."""
        start = self._ends[i - 1] if i else 0
        return self._names[start : self._ends[i]].decode("utf-8", "surrogatepass")

    def filename(self, i: int) -> str:
        """The name as zipfile gives it (``ZipInfo.filename``): cut at a NUL, ``os.sep`` as ``/``."""
        name = self.orig_filename(i)
        nul = name.find("\x00")
        if nul >= 0:
            name = name[:nul]
        if os.sep != "/" and os.sep in name:
            name = name.replace(os.sep, "/")
        return name

    def is_dir(self, i: int) -> bool:
        return self.filename(i).endswith("/")


class _NoNames(dict):
    """zipfile's name map, left empty: the names are in the MemberIndex."""

    def __setitem__(self, key, value) -> None:
        pass


class _IndexingZipFile(zipfile.ZipFile):
    """A ZipFile whose central directory goes into a :class:`MemberIndex` instead of ZipInfo objects.

    ``_RealGetContents`` is zipfile's own (CPython 3.11), with one change: the central directory is
    read a block at a time (:class:`_Window`) instead of whole into memory (about 70 bytes an entry,
    35 MB at 500,000 entries, held while the archive opened). Each record is parsed by
    :func:`_parse_record`, zipfile's loop body (every check it makes, the same errors); ``filelist`` is
    the index and ``NameToInfo`` stays empty, so entries are opened with ``open(info)``, never by name.
    """

    def _RealGetContents(self):  # noqa: N802 - zipfile's name
        self.NameToInfo = _NoNames()
        fp = self.fp
        try:
            endrec = zipfile._EndRecData(fp)
        except OSError:
            raise zipfile.BadZipFile("File is not a zip file") from None
        if not endrec:
            raise zipfile.BadZipFile("File is not a zip file")
        size_cd = endrec[zipfile._ECD_SIZE]
        self.filelist = MemberIndex(size_cd)  # type: ignore[assignment]
        offset_cd = endrec[zipfile._ECD_OFFSET]
        self._comment = endrec[zipfile._ECD_COMMENT]
        # "concat" is zero, unless zip was concatenated to another file
        concat = endrec[zipfile._ECD_LOCATION] - size_cd - offset_cd
        if endrec[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
            concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
        self.start_dir = offset_cd + concat
        if self.start_dir < 0:
            raise zipfile.BadZipFile("Bad offset for central directory")
        self.size_cd, self.concat = size_cd, concat
        window = _Window(fp, self.start_dir, size_cd)
        total = 0
        while total < size_cd:
            info, length = _parse_record(window.read, self.metadata_encoding, concat)
            self.filelist.append(info, total)
            total += length


class _Window:
    """``io.BytesIO(fp.read(size))`` at ``start``, as zipfile reads the central directory, a block at a time."""

    _BLOCK = MiB

    def __init__(self, fp: BinaryIO, start: int, size: int):
        self._fp, self._next, self._left, self._block = fp, start, size, self._BLOCK
        self._buffer, self._at = b"", 0

    def read(self, n: int) -> bytes:
        while len(self._buffer) - self._at < n and self._left > 0:
            self._fp.seek(self._next)
            data = self._fp.read(min(self._block, self._left))
            if not data:
                self._left = 0  # the file ends before the directory does: reads come up short
                break
            self._next += len(data)
            self._left -= len(data)
            self._buffer = self._buffer[self._at :] + data
            self._at = 0
        out = self._buffer[self._at : self._at + n]
        self._at += len(out)
        return out


def _parse_record(read, metadata_encoding: str | None, concat: int) -> tuple[zipfile.ZipInfo, int]:
    """One central directory record, as zipfile's ``_RealGetContents`` (CPython 3.11) parses it in its
    loop: the same ZipInfo, the same errors. Returns the entry and the record's length."""
    centdir = read(zipfile.sizeCentralDir)
    if len(centdir) != zipfile.sizeCentralDir:
        raise zipfile.BadZipFile("Truncated central directory")
    centdir = struct.unpack(zipfile.structCentralDir, centdir)
    if centdir[zipfile._CD_SIGNATURE] != zipfile.stringCentralDir:
        raise zipfile.BadZipFile("Bad magic number for central directory")
    filename = read(centdir[zipfile._CD_FILENAME_LENGTH])
    flags = centdir[zipfile._CD_FLAG_BITS]
    if flags & zipfile._MASK_UTF_FILENAME:
        filename = filename.decode("utf-8")
    else:
        filename = filename.decode(metadata_encoding or "cp437")
    x = zipfile.ZipInfo(filename)
    x.extra = read(centdir[zipfile._CD_EXTRA_FIELD_LENGTH])
    x.comment = read(centdir[zipfile._CD_COMMENT_LENGTH])
    x.header_offset = centdir[zipfile._CD_LOCAL_HEADER_OFFSET]
    (
        x.create_version,
        x.create_system,
        x.extract_version,
        x.reserved,
        x.flag_bits,
        x.compress_type,
        t,
        d,
        x.CRC,
        x.compress_size,
        x.file_size,
    ) = centdir[1:12]
    if x.extract_version > zipfile.MAX_EXTRACT_VERSION:
        raise NotImplementedError("zip file version %.1f" % (x.extract_version / 10))
    x.volume, x.internal_attr, x.external_attr = centdir[15:18]
    x._raw_time = t
    x.date_time = ((d >> 9) + 1980, (d >> 5) & 0xF, d & 0x1F, t >> 11, (t >> 5) & 0x3F, (t & 0x1F) * 2)
    x._decodeExtra()
    x.header_offset = x.header_offset + concat
    length = (
        zipfile.sizeCentralDir
        + centdir[zipfile._CD_FILENAME_LENGTH]
        + centdir[zipfile._CD_EXTRA_FIELD_LENGTH]
        + centdir[zipfile._CD_COMMENT_LENGTH]
    )
    return x, length


class _Directory:
    """The central directory of an open, checked archive, read back from the file by record offset.

    An open archive keeps only where each listed entry's record starts (4 bytes an entry below 4 GiB of
    directory) and reads its name and numbers again when asked: a held index of names and numbers was
    about 100 bytes an entry, 50 MB at 500,000 images, for the whole ingest. A directory of up to
    ``_CACHED`` bytes (8 MiB, about 80,000 entries) is kept whole once read: labels ask for images in
    no particular order, and with 1 MiB of 64 KB blocks kept a 50,000-image delivery read a block again
    for most of its 500,000 labels (993,258 reads, ~30 s of its ingest). A larger one keeps a few
    blocks (``_BLOCKS``), for walks in order (``filename(walk=True)``: the names, one after the other);
    an entry looked up out of order whose block is not kept is read alone (its record, one ``pread``):
    keeping 8 MiB of a 35 MB directory held that much more at ten times the images and still read a
    64 KB block again for three look-ups in four.
    """

    _BLOCK = 64 * 1024
    _BLOCKS = 16  # at the least
    _CACHED = 8 * 2**20
    _NAMES = 1024
    _NAME_GUESS = 256  # a record read alone: its fixed part and this much of its name, in one read

    def __init__(self, zf: zipfile.ZipFile):
        self._zip = zf
        self._start, self._size = zf.start_dir, zf.size_cd  # type: ignore[attr-defined]
        self._concat, self._encoding = zf.concat, zf.metadata_encoding  # type: ignore[attr-defined]
        self._blocks: dict[int, bytes] = {}
        self._whole = self._size <= self._CACHED
        self._kept = max(self._BLOCKS, -(-self._size // self._BLOCK)) if self._whole else self._BLOCKS
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()
        self._last: dict[int, int] = {}  # thread -> the block its last look-up out of the kept ones was in
        # A file of the OS (a path opened by zipfile, a temporary file) is read with pread; any other
        # file object (BytesIO, a wrapper whose descriptor is not its bytes) by seek and read, locked.
        self._fd: int | None = None
        if isinstance(zf.fp, (io.FileIO, io.BufferedReader, io.BufferedRandom)):
            with contextlib.suppress(OSError):  # io.UnsupportedOperation: a buffer over BytesIO
                self._fd = zf.fp.fileno()

    def _block(self, number: int) -> bytes:
        block = self._blocks.get(number)  # (one dict look-up: atomic; the lock guards eviction)
        if block is not None:
            return block
        start = number * self._BLOCK
        block = self._read(start, self._BLOCK)
        with self._lock:
            if len(self._blocks) >= self._kept:
                del self._blocks[next(iter(self._blocks))]
            self._blocks[number] = block
        return block

    def _read(self, offset: int, n: int) -> bytes:
        """``n`` bytes of the directory from ``offset`` (fewer at its end), read from the file, not kept."""
        n = max(0, min(n, self._size - offset))
        zf = self._zip
        if zf.fp is None:
            raise ValueError("the archive is closed")
        if self._fd is not None:
            # pread moves no file position: zipfile's entry readers seek the same file object.
            return os.pread(self._fd, n, self._start + offset)
        with zf._lock:  # zipfile's own: its entry readers seek the same file object under it
            zf.fp.seek(self._start + offset)
            return zf.fp.read(n)

    def _walking(self, number: int) -> bool:
        """Does this thread's look-up in block ``number`` follow its previous one (the same block or the
        next)? Then the look-ups walk the directory after all (the image store opens the entries in
        archive order): the block is read and kept, not each record alone."""
        thread = threading.get_ident()
        last = self._last.get(thread, -2)
        self._last[thread] = number
        return 0 <= number - last <= 1

    def _bytes(self, offset: int, n: int, *, walk: bool = True) -> bytes:
        first, last = offset // self._BLOCK, (offset + n - 1) // self._BLOCK
        if not (walk or self._whole):
            blocks = self._blocks
            kept = first in blocks and (first == last or all(b in blocks for b in range(first + 1, last + 1)))
            if not kept and not self._walking(first):
                return self._read(offset, n)
        at = offset - first * self._BLOCK
        if first == last:
            return self._block(first)[at : at + n]
        return b"".join(self._block(b) for b in range(first, last + 1))[at : at + n]

    def info(self, record: int) -> zipfile.ZipInfo:
        """The entry whose record starts at ``record``, parsed as when the archive was opened."""
        header = self._bytes(record, zipfile.sizeCentralDir, walk=False)
        length = zipfile.sizeCentralDir + sum(struct.unpack_from("<HHH", header, 28))
        data = io.BytesIO(self._bytes(record, length, walk=False))
        info, _ = _parse_record(data.read, self._encoding, self._concat)
        return info

    def filename(self, record: int, *, walk: bool = False) -> str:
        """``info(record).filename`` without the rest of the entry (the hot path: a name per label).

        The names read last are remembered (``_NAMES``, ~100 bytes each): a delivery's labels come
        image by image, so most ask for the name the label before asked for. ``walk``: the caller
        goes through the records in order (the blocks are read and kept).
        """
        names = self._names
        name = names.get(record)
        if name is None:
            name = self._read_filename(record, walk)
            if len(names) >= self._NAMES:
                names.clear()
            names[record] = name
        return name

    def _read_filename(self, record: int, walk: bool) -> str:
        number, at = divmod(record, self._BLOCK)
        block = self._blocks.get(number)
        if block is None:
            if not (walk or self._whole or self._walking(number)):
                return self._read_filename_alone(record)
            block = self._block(number)
        start = at + zipfile.sizeCentralDir
        if start <= len(block):
            end = start + (block[at + 28] | block[at + 29] << 8)
            flags = block[at + 8] | block[at + 9] << 8
            raw = (
                block[start:end]
                if end <= len(block)
                else self._bytes(record + zipfile.sizeCentralDir, end - start, walk=walk)
            )
        else:  # the record's header runs into the next block
            header = self._bytes(record, zipfile.sizeCentralDir, walk=walk)
            flags = header[8] | header[9] << 8
            raw = self._bytes(record + zipfile.sizeCentralDir, header[28] | header[29] << 8, walk=walk)
        return self._decode_name(raw, flags)

    def _read_filename_alone(self, record: int) -> str:
        """The name of one record, read from the file with the record (no block read or kept)."""
        fixed = zipfile.sizeCentralDir
        data = self._read(record, fixed + self._NAME_GUESS)
        length = data[28] | data[29] << 8
        if fixed + length > len(data):
            data = self._read(record, fixed + length)
        return self._decode_name(data[fixed : fixed + length], data[8] | data[9] << 8)

    def _decode_name(self, raw: bytes, flags: int) -> str:
        if raw.isascii() and self._encoding is None:
            # The usual name, in ASCII: the same text in UTF-8 and cp437, decoded without cp437's
            # Python-level codec (~0.4 us a name; a name is read back per label, twice).
            name = raw.decode("ascii")
        elif flags & zipfile._MASK_UTF_FILENAME:
            name = raw.decode("utf-8")
        else:
            name = raw.decode(self._encoding or "cp437")
        if "\x00" in name:
            name = name[: name.find("\x00")]
        if os.sep != "/" and os.sep in name:
            name = name.replace(os.sep, "/")
        return name


# Names and keys are found by a 64-bit hash first, then compared: Python's own, stable within the
# process (each process builds its own index). A name here, so that a test can make every hash collide.
_hash = hash
# ZipSource remembers this many names it gave (name_at) or found (position), ~100 bytes each, for position().
_RECENT_NAMES = 4096


def _hash_array(values, count: int) -> np.ndarray:
    """``count`` hashes (Python's ``hash``: 64-bit, stable within the process) as an int64 array."""
    return np.fromiter(values, dtype=np.int64, count=count)


def _narrow(positions: np.ndarray) -> np.ndarray:
    """Entry numbers as 4 bytes each, not numpy's 8, when they fit (an archive's entry count does)."""
    return positions.astype(np.uint32) if positions.size < 2**32 else positions


def _first_of_each(candidates: np.ndarray, key_of) -> dict[int, int]:
    """For the entries in ``candidates`` (whose key hashes repeat), the first entry with the same key.

    Hashes are compared first, then the keys themselves: only entries whose hash repeats (the
    duplicates, and rare hash collisions) are ever compared by key.
    """
    first: dict[int, int] = {}
    by_key: dict[str, int] = {}
    for i in sorted(candidates.tolist()):
        k = key_of(i)
        first[i] = by_key.setdefault(k, i)
    return first


def _repeated(hashes: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices (into ``hashes``) whose hash occurs more than once among the ``mask``ed entries, ascending.

    One sorted copy of the hashes, not an argsort and its gathers: ~10 bytes an entry at the
    archive's opening instead of ~35 (500,000 entries: 5 MB, not 17).
    """
    ordered = hashes[mask] if mask is not None else hashes.copy()
    if ordered.size < 2:
        return np.empty(0, dtype=np.int64)
    ordered.sort()
    same = ordered[1:] == ordered[:-1]
    repeated = np.unique(ordered[1:][same])
    del ordered, same
    if not repeated.size:
        return np.empty(0, dtype=np.int64)
    hit = np.isin(hashes, repeated)
    if mask is not None:
        hit &= mask
    return np.flatnonzero(hit)


def _blocks(positions: np.ndarray, size: int = 4096) -> Iterator[int]:
    """The numbers of an array as Python ints, a block at a time: ``tolist()`` of 500,000 of them held
    ~20 MB of int objects at once."""
    for start in range(0, positions.size, size):
        yield from positions[start : start + size].tolist()


def _check_zip(zf: zipfile.ZipFile, label: str, limits: ZipLimits, problems: ProblemLog) -> None:
    index: MemberIndex = zf.filelist  # type: ignore[assignment]
    n = len(index)
    if n > limits.max_entries:
        problems.add(
            label,
            f"{n} entries, more than the {limits.max_entries} allowed",
            code="too_many_entries",
        )
        return
    name_of = index.filename

    # Collision keys as 64-bit hashes (Python's, stable within the process); equal hashes are
    # compared by key, so the answers are those of a dict of keys.
    keys = _hash_array((_hash(_collision_key(name_of(i))) for i in range(n)), n)
    dirs = np.fromiter((name_of(i).endswith("/") for i in range(n)), dtype=bool, count=n)

    def key_of(i: int) -> str:
        return _collision_key(name_of(i))

    first_seen = _first_of_each(_repeated(keys), key_of)  # key -> first entry, any kind
    first_file = _first_of_each(_repeated(keys, ~dirs), key_of)  # among regular files
    total = 0
    for i in range(n):
        name = name_of(i)
        orig = index.orig_filename(i)
        for reason in _name_problems(orig, name):
            problems.add(name, f"unsafe entry name {orig!r}: {reason}", code="unsafe_path")
        first = first_seen.get(i, i)
        if first != i:
            problems.add(
                name, f"duplicate entry: {name!r} collides with {name_of(first)!r}", code="duplicate_name"
            )
        mode = index.external_attr[i] >> 16
        if stat.S_ISLNK(mode):
            problems.add(name, "symbolic link entries are not allowed", code="symlink")
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            problems.add(
                name, "special file entries (device, fifo, socket) are not allowed", code="special_file"
            )
        if index.flag_bits[i] & (_ENCRYPTED | _STRONG_ENCRYPTION):
            problems.add(name, "encrypted entries are not allowed", code="encrypted")
        compress_type = index.compress_type[i]
        if compress_type not in _ALLOWED_METHODS:
            problems.add(
                name, f"unsupported compression method {compress_type}", code="unsupported_compression"
            )
        if dirs[i]:
            continue
        file_size = index.file_size[i]
        total += file_size
        if file_size > limits.max_entry_size:
            problems.add(
                name,
                f"declares {file_size} bytes, more than the {limits.max_entry_size} allowed per file",
                code="too_large",
            )
        if file_size > limits.ratio_min_size:
            ratio = file_size / max(index.compress_size[i], 1)
            if ratio > limits.max_ratio:
                problems.add(
                    name,
                    f"compression ratio {ratio:.0f}:1 is above the {limits.max_ratio:.0f}:1 allowed",
                    code="compression_ratio",
                )
    if total > limits.max_total_size:
        problems.add(
            label,
            f"declared uncompressed size {total} bytes is above the {limits.max_total_size} allowed",
            code="too_large",
        )
    _check_files_under_files(keys, dirs, first_file, name_of, key_of, problems)
    _check_layout(index, zf, label, problems)


def _check_files_under_files(keys, dirs, first_file, name_of, key_of, problems: ProblemLog) -> None:
    """A regular file whose path continues under another regular file's name ("a" and "a/b")."""
    files = _narrow(np.flatnonzero(~dirs))
    order = np.argsort(keys[files], kind="stable")
    sorted_files = _narrow(files[order])
    del order
    sorted_keys = keys[sorted_files]

    def file_with_key(key: str) -> int | None:
        """The first regular file whose collision key is ``key``, if any."""
        h = _hash(key)
        at = int(np.searchsorted(sorted_keys, h, side="left"))
        while at < sorted_keys.size and sorted_keys[at] == h:
            i = int(sorted_files[at])
            if key_of(i) == key:
                return first_file.get(i, i)
            at += 1
        return None

    for i in _blocks(files):
        if first_file.get(i, i) != i:
            continue  # one report per key, for its first file (a dict of keys, as before)
        key = key_of(i)
        parent = key.rpartition("/")[0]
        while parent:
            j = file_with_key(parent)
            if j is not None:
                problems.add(
                    name_of(i), f"{name_of(j)!r} is both a file and a directory", code="duplicate_name"
                )
                break
            parent = parent.rpartition("/")[0]


def _check_layout(index: MemberIndex, zf: zipfile.ZipFile, label: str, problems: ProblemLog) -> None:
    """Entries must not overlap, and nothing may hide before the first one."""
    n = len(index)
    if not n:
        return
    offsets = np.frombuffer(index.header_offset, dtype=np.uint64)
    ordered = np.argsort(offsets, kind="stable")
    first = int(offsets[ordered[0]])
    if first > 0:
        problems.add(label, f"{first} bytes of data before the first entry", code="prepended_data")
    end_of_entries = getattr(zf, "start_dir", None)
    # A lower bound on where each entry's data ends: the fixed local header plus the compressed
    # data. Any entry starting before that shares bytes with this one. (Python integers: the
    # sizes come from the archive and may be anything up to 2**64 - 1.)
    for k in range(n):
        here = int(ordered[k])
        data_end = index.header_offset[here] + _LOCAL_HEADER_SIZE + index.compress_size[here]
        limit = index.header_offset[int(ordered[k + 1])] if k + 1 < n else end_of_entries
        if limit is not None and data_end > limit:
            problems.add(
                index.filename(here), "entry overlaps another entry or the central directory", code="overlap"
            )


class _CountingEntry(io.RawIOBase):
    """An entry's inflated bytes, refusing to go past what its header declared."""

    def __init__(self, inner: BinaryIO, name: str, declared: int, cap: int):
        self._inner = inner
        self._name = name
        self._declared = declared
        self._cap = cap
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._inner.seekable()

    def readinto(self, buffer) -> int:
        # Never ask for more than _CHUNK: zipfile was told the entry is _SLACK bytes longer
        # than declared, so a lie is caught here before zipfile reaches its end (and its CRC).
        try:
            data = self._inner.read(min(len(buffer), _CHUNK))
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise FormatError(
                [Problem(file=self._name, message=f"corrupt entry: {exc}", code="corrupt")]
            ) from None
        n = len(data)
        self._pos += n
        if self._pos > self._declared:
            raise FormatError(
                [
                    Problem(
                        file=self._name,
                        message=f"inflates to more than its declared {self._declared} bytes (zip bomb?)",
                        code="zip_bomb",
                    )
                ]
            )
        if self._pos > self._cap:
            raise FormatError(
                [Problem(file=self._name, message=f"larger than {self._cap} bytes", code="too_large")]
            )
        buffer[:n] = data
        return n

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # zipfile computes SEEK_END from the size we handed it (declared + slack), so resolve
        # it here against the declared size.
        if whence == io.SEEK_END:
            offset, whence = self._declared + offset, io.SEEK_SET
        elif whence == io.SEEK_CUR:
            offset, whence = self._pos + offset, io.SEEK_SET
        target = max(0, min(offset, self._declared))
        self._pos = self._inner.seek(target, io.SEEK_SET)
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


class ZipSource:
    """A :class:`~marketplace.formats.model.Source` over a zip that passed every check."""

    def __init__(
        self,
        file: str | os.PathLike | BinaryIO,
        *,
        limits: ZipLimits | None = None,
        name: str | None = None,
    ):
        self.limits = limits or ZipLimits()
        self.label = name or (Path(file).name if isinstance(file, (str, os.PathLike)) else "archive.zip")
        problems, self._zip = self._inspect(file, self.limits, self.label)
        if problems:
            if self._zip is not None:
                self._zip.close()
            raise FormatError(problems)
        index: MemberIndex = self._zip.filelist  # type: ignore[assignment]
        # The listed members (regular files, no litter), in archive order, by where their records start
        # in the central directory, and their names' hashes sorted for look-ups: a name is found by its
        # hash, then compared. Everything else about an entry is read back from the file when asked
        # (_Directory), and the index lets go of its names and numbers.
        listed = np.fromiter(
            (not (index.is_dir(i) or is_ignored(index.filename(i))) for i in range(len(index))),
            dtype=bool,
            count=len(index),
        )
        entries = _narrow(np.flatnonzero(listed))
        del listed
        hashes = _hash_array((_hash(index.filename(i)) for i in _blocks(entries)), entries.size)
        kept = np.uint32 if index.record.typecode == "I" else np.uint64
        records = np.frombuffer(index.record, dtype=kept)[entries] if entries.size else entries
        self._records = records.astype(np.uint32, copy=False) if self._zip.size_cd < 2**32 else records  # type: ignore[attr-defined]
        del entries, records
        index.release()  # before the sort: its temporaries and the index were held at once
        self._order = _narrow(np.argsort(hashes, kind="stable"))
        self._hashes = hashes[self._order]
        del hashes
        self._directory = _Directory(self._zip)
        # The names name_at gave lately -> their positions: a reader names an image by its position
        # and ingest looks the name up again per label (a hash, a numpy search and a name read back
        # and compared, each time). Listed names are unique (a duplicate is refused above), so
        # position(name_at(p)) is p. Bounded: cleared when full.
        self._recent: dict[str, int] = {}

    @classmethod
    def check(
        cls, file: str | os.PathLike | BinaryIO, *, limits: ZipLimits | None = None, name: str | None = None
    ) -> list[Problem]:
        """Every reason this archive would be refused (empty if it is acceptable)."""
        label = name or (Path(file).name if isinstance(file, (str, os.PathLike)) else "archive.zip")
        problems, zf = cls._inspect(file, limits or ZipLimits(), label)
        if zf is not None:
            zf.close()
        return list(problems)

    @staticmethod
    def _inspect(file, limits: ZipLimits, label: str) -> tuple[ProblemLog, zipfile.ZipFile | None]:
        problems = ProblemLog()
        if isinstance(file, (str, os.PathLike)):
            with open(file, "rb") as fp:
                declared = _read_end_record(fp, label, problems)
        else:
            declared = _read_end_record(file, label, problems)
            file.seek(0)
        if declared is None:
            return problems, None
        if declared > limits.max_entries:
            # Refuse before zipfile parses (and holds) a huge central directory.
            problems.add(
                label,
                f"{declared} entries, more than the {limits.max_entries} allowed",
                code="too_many_entries",
            )
            return problems, None
        try:
            zf = _IndexingZipFile(file)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            problems.add(label, f"not a readable zip archive: {exc}", code="not_a_zip")
            return problems, None
        except OverflowError:  # an entry placed before the file's start: the index holds no negative offset
            problems.add(
                label,
                "not a readable zip archive: an entry starts before the archive's first byte",
                code="not_a_zip",
            )
            return problems, None
        _check_zip(zf, label, limits, problems)
        return problems, zf

    def names(self) -> MemberNames:
        """The regular files of the archive, in archive order (directories and litter left out).

        A read-only sequence decoded from the index as it is walked, not a list: a list of 500,000
        names held ~50 MB while a caller filtered it (the format's detection, the readers, counts).
        """
        return MemberNames(self)

    def _find(self, name: str) -> int:
        """Where a listed member's record starts, by name; KeyError if the archive lists no such file."""
        position = self.position(name)
        if position is None:
            raise KeyError(name)
        return int(self._records[position])

    def _name_of(self, position: int) -> str:
        return self._directory.filename(int(self._records[position]))

    def position(self, name: str) -> int | None:
        """Where ``name`` is in :meth:`names` (None if it is not there): ingest keys its per-image
        tables by this number instead of holding every name a second time."""
        if type(name) is str:
            recent = self._recent.get(name)
            if recent is not None:
                return recent
        if isinstance(name, str):
            h = _hash(name)
            hashes = self._hashes
            # The array's own method: np.searchsorted's dispatch cost twice the search (~1.3 us a call).
            at = int(hashes.searchsorted(h, side="left"))
            while at < hashes.size and hashes[at] == h:
                position = int(self._order[at])
                if self._name_of(position) == name:
                    if type(name) is str:
                        # Asked again soon, as a rule: the COCO reader asks for an image's name a few
                        # times in a row (its file, its first declaration, its tables).
                        self._remember(name, position)
                    return position
                at += 1
        return None

    def positions(self, names: list[str]) -> list[int | None]:
        """``[self.position(n) for n in names]``, the hashes looked up in one numpy call."""
        if not names or not self._hashes.size:
            return [self.position(n) for n in names]
        wanted = _hash_array((_hash(n) if isinstance(n, str) else 0 for n in names), len(names))
        at = np.minimum(np.searchsorted(self._hashes, wanted, side="left"), self._hashes.size - 1)
        hit = (self._hashes[at] == wanted).tolist()
        candidates = self._order[at].tolist()
        recent = self._recent
        out = []
        for name, ok, position in zip(names, hit, candidates, strict=True):
            if ok and (recent.get(name) == position or self._name_of(position) == name):
                out.append(position)
            else:
                out.append(self.position(name))  # a collision, or not a listed name
        return out

    def name_at(self, position: int) -> str:
        """``names()[position]``, without the list."""
        name = self._name_of(position)
        if position >= 0:  # (a negative index is no position)
            self._remember(name, int(position))
        return name

    def _remember(self, name: str, position: int) -> None:
        """Keep ``name``'s position for position(): the last answers, at most _RECENT_NAMES of them."""
        recent = self._recent
        if len(recent) >= _RECENT_NAMES:
            recent.clear()
        recent[name] = position

    def count(self) -> int:
        """``len(names())``."""
        return int(self._records.size)

    def __contains__(self, name: object) -> bool:
        """Is ``name`` one of :meth:`names` (without building that list)?"""
        try:
            self._find(name)  # type: ignore[arg-type]
        except KeyError:
            return False
        return True

    def size(self, name: str) -> int:
        """The uncompressed size the archive declares for an entry."""
        return self._directory.info(self._find(name)).file_size

    def open(self, name: str) -> BinaryIO:
        """A stream over one entry that raises FormatError if it inflates past its declared size."""
        probe = self._directory.info(self._find(name))
        declared = probe.file_size
        # Hand zipfile an entry that allows more than declared: zipfile itself stops at the
        # declared size, so without this a lie shows up only as a CRC error at the end.
        probe.file_size = declared + _SLACK
        inner = self._zip.open(probe)
        raw = _CountingEntry(inner, name, declared, self.limits.max_entry_size)
        return io.BufferedReader(raw, buffer_size=_CHUNK)  # type: ignore[return-value]

    def close(self) -> None:
        """Release the archive (a file object passed in stays open: it belongs to the caller)."""
        self._zip.close()

    def __enter__(self) -> ZipSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MemberNames(Sequence):
    """:meth:`ZipSource.names` as a sequence over the archive's index: each name decoded when reached."""

    def __init__(self, source: ZipSource):
        self._source = source

    def __len__(self) -> int:
        return self._source.count()

    def __getitem__(self, at):
        if isinstance(at, slice):
            return [self._source.name_at(i) for i in range(*at.indices(len(self)))]
        if not -len(self) <= at < len(self):
            raise IndexError(at)
        return self._source.name_at(at % len(self))

    def __iter__(self) -> Iterator[str]:
        name_of, records = self._source._directory.filename, self._source._records
        for record in _blocks(records):
            yield name_of(record, walk=True)

    def __contains__(self, name: object) -> bool:
        return name in self._source

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, MemberNames)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment] - mutable-looking, like a list

    def __repr__(self) -> str:
        return f"MemberNames({len(self)} names)"


class DirectorySource:
    """A :class:`~marketplace.formats.model.Source` over a directory tree (tests, local tools).

    Symlinks and special files are refused like in a zip: a link inside a delivery could
    point anywhere on the server.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        problems = ProblemLog()
        names = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            rel_dir = Path(dirpath).relative_to(self.root)
            for d in list(dirnames):
                if (Path(dirpath) / d).is_symlink():
                    problems.add((rel_dir / d).as_posix(), "symbolic links are not allowed", code="symlink")
                    dirnames.remove(d)
            for f in filenames:
                path = Path(dirpath) / f
                rel = (rel_dir / f).as_posix()
                if path.is_symlink():
                    problems.add(rel, "symbolic links are not allowed", code="symlink")
                elif not stat.S_ISREG(path.lstat().st_mode):
                    problems.add(rel, "special files are not allowed", code="special_file")
                elif not is_ignored(rel):
                    names.append(rel)
        if problems:
            raise FormatError(problems)
        self._names = sorted(names)
        self._set = set(self._names)

    def names(self) -> list[str]:
        """Every regular file, as a POSIX path relative to the root, sorted."""
        return list(self._names)

    def __contains__(self, name: object) -> bool:
        """Is ``name`` one of :meth:`names`?"""
        return name in self._set

    def position(self, name: str) -> int | None:
        """Where ``name`` is in :meth:`names` (None if it is not there), as ZipSource.position."""
        if name not in self._set:
            return None
        return bisect.bisect_left(self._names, name)

    def name_at(self, position: int) -> str:
        return self._names[position]

    def count(self) -> int:
        return len(self._names)

    def open(self, name: str) -> BinaryIO:
        """Open one listed file for reading."""
        if name not in self._set:
            raise KeyError(name)
        return open(self.root / name, "rb")  # noqa: SIM115

    def size(self, name: str) -> int:
        """The size in bytes of one listed file."""
        if name not in self._set:
            raise KeyError(name)
        return (self.root / name).stat().st_size


# Bracket bytes move the nesting level; everything else (outside strings) does not.
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_SCAN_CHUNK = 8 * MiB


def _json_depth(data: bytes, chunk: int = _SCAN_CHUNK) -> int:
    """Deepest nesting of arrays and objects, ignoring brackets inside strings.

    Vectorised with numpy a chunk at a time (a regex over every string of a 500 MB COCO file
    costs more than parsing it). Exact for valid JSON; for invalid JSON any answer will do,
    since the parser refuses it next.
    """
    scan = JsonDepthScan()
    for start in range(0, len(data), chunk):
        scan.feed(data[start : start + chunk])
    return scan.deepest


class JsonOutline:
    """The top level of a JSON text, its nested values cut out: built by a ``JsonDepthScan`` as it goes.

    ``skeleton`` is the text at depth 0 and 1 with each array or object nested below the top level
    replaced by ``[i]``, where ``spans[i]`` is that value's ``(start, end, opening byte)`` in the
    text (``end`` exclusive); so ``json.loads(skeleton)`` gives the top level's keys in order, their
    repeats and their scalar values. The bytes of the values whose key is in ``capture`` are kept in
    ``captured`` (by span). Exact for valid JSON only (the string test is the depth scan's quote
    parity): the caller checks the syntax elsewhere. Past ``MAX_SPANS`` values or ``MAX_SKELETON``
    bytes of top level (a top-level array of a million numbers) it gives up: ``skeleton`` is None.
    """

    MAX_SPANS = 10_000
    MAX_SKELETON = 16 * MiB

    def __init__(self, capture: frozenset[str] = frozenset()):
        self.capture = capture
        self.skeleton: bytearray | None = bytearray()
        self.spans: list[tuple[int, int, int]] = []
        self.captured: dict[int, bytearray] = {}
        self._offset = 0
        self._open: tuple[int, int] | None = None  # (start, opening byte) of the value being read

    def feed(self, data: bytes, where: np.ndarray, moves: np.ndarray, levels: np.ndarray) -> None:
        """One piece, with the depth scan's bracket positions, moves (0 inside strings) and levels."""
        if self.skeleton is None:
            return
        if self._open is not None and levels.size and int(levels.min()) >= 2:
            edges = where[:0]  # all of it inside one value (most pieces of a COCO file: the annotations)
        else:
            real = moves != 0
            moves, levels = moves[real], levels[real]
            # A nested value opens where the level goes from 1 to 2 and ends where it comes back
            # to 1; the two alternate, since the level moves by one at a time.
            edges = where[real][((moves == 1) & (levels == 2)) | ((moves == -1) & (levels == 1))]
        if len(self.spans) + edges.size // 2 > self.MAX_SPANS:
            self.skeleton = None
            return
        skeleton, cut = self.skeleton, 0
        for p in edges.tolist():
            if self._open is None:
                skeleton += data[cut:p]
                index = len(self.spans)
                if self.capture and self._key() in self.capture:
                    self.captured[index] = bytearray()
                skeleton += b"[%d]" % index
                self._open = (self._offset + p, data[p])
                self.spans.append((self._offset + p, -1, data[p]))
                cut = p
            else:
                index = len(self.spans) - 1
                self.spans[index] = (self._open[0], self._offset + p + 1, self._open[1])
                if index in self.captured:
                    self.captured[index] += data[cut : p + 1]
                self._open = None
                cut = p + 1
        if self._open is None:
            skeleton += data[cut:]
        elif len(self.spans) - 1 in self.captured:
            self.captured[len(self.spans) - 1] += data[cut:]
        self._offset += len(data)
        if len(skeleton) > self.MAX_SKELETON:
            self.skeleton = None

    def _key(self) -> str | None:
        """The key before the value about to open: the skeleton ends with ``"key" :``."""
        s = self.skeleton
        end = _skip_back(s, len(s), b" \t\n\r")
        if end == 0 or s[end - 1] != ord(":"):
            return None
        end = _skip_back(s, end - 1, b" \t\n\r")
        if end == 0 or s[end - 1] != ord('"'):
            return None
        start = end - 1
        while True:  # back to the quote that opens the key: one not escaped by a backslash
            start = s.rfind(b'"', 0, start)
            if start < 0:
                return None
            if (start - _skip_back(s, start, b"\\")) % 2 == 0:
                break
        try:
            return json.loads(s[start:end].decode("utf-8"))
        except ValueError:
            return None


def _skip_back(s: bytearray, end: int, chars: bytes) -> int:
    """Where the run of ``chars`` that ends at ``end`` starts."""
    while end > 0 and s[end - 1] in chars:
        end -= 1
    return end


class JsonDepthScan:
    """``_json_depth`` fed piece by piece (a stream read in chunks): the same answer, flat memory.

    Given an ``outline`` (a :class:`JsonOutline`), it also cuts the top level out on the way.
    """

    def __init__(self, outline: JsonOutline | None = None):
        self.depth = self.deepest = 0
        self.in_string = 0  # parity of the unescaped quotes seen so far
        self.carry = 0  # length of the backslash run that ends the previous chunk
        self.outline = outline

    def feed(self, data: bytes) -> int:
        """Scan the next piece; return the deepest nesting so far."""
        if not data:
            return self.deepest
        a = np.frombuffer(data, dtype=np.uint8)
        depth, deepest, in_string, carry = self.depth, self.deepest, self.in_string, self.carry
        backslash = a == _BACKSLASH
        quotes = np.flatnonzero(a == _QUOTE)
        if quotes.size:
            after_backslash = np.where(quotes > 0, backslash[np.maximum(quotes - 1, 0)], carry > 0)
            if after_backslash.any():
                # A quote after an odd-length run of backslashes is escaped.
                cand = quotes[after_backslash]
                run_starts = np.flatnonzero(np.diff(backslash.view(np.int8), prepend=np.int8(0)) == 1)
                run_starts = np.concatenate(([0], run_starts))
                first = run_starts[np.maximum(np.searchsorted(run_starts, cand - 1, side="right") - 1, 0)]
                run = cand - first + np.where(first == 0, carry, 0)
                keep = np.ones(quotes.size, dtype=bool)
                keep[np.flatnonzero(after_backslash)[run % 2 == 1]] = False
                quotes = quotes[keep]
        if backslash[-1]:
            plain = np.flatnonzero(~backslash)
            last = int(plain[-1]) if plain.size else -1
            carry = len(a) - 1 - last + (carry if last == -1 else 0)
        else:
            carry = 0
        steps = _STEP[a]
        where = np.flatnonzero(steps)
        if where.size:
            inside = (np.searchsorted(quotes, where) + in_string) & 1
            moves = steps[where].astype(np.int32)
            moves[inside == 1] = 0
            levels = np.cumsum(moves) + depth
            deepest = max(deepest, int(levels.max()))
            depth = int(levels[-1])
            if self.outline is not None:
                self.outline.feed(data, where, moves, levels)
        elif self.outline is not None:
            self.outline.feed(data, where, where, where)
        in_string = (in_string + quotes.size) & 1
        self.depth, self.deepest, self.in_string, self.carry = depth, deepest, in_string, carry
        return deepest


def safe_load_json(stream: BinaryIO, *, max_bytes: int, max_depth: int, name: str = "") -> object:
    """Parse JSON from a stream, refusing more than ``max_bytes`` or nesting deeper than ``max_depth``.

    Raises FormatError; a syntax error is reported with its line (``Problem.line``) and the
    message starts with ``line:column``.
    """
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FormatError(
            [Problem(file=name, message=f"JSON larger than {max_bytes} bytes", code="too_large")]
        )
    # Checked before parsing: the json module recurses per level, so a file of a million
    # '[' would otherwise exhaust the stack (or, with a raised limit, the memory).
    depth = _json_depth(data)
    if depth > max_depth:
        raise FormatError(
            [
                Problem(
                    file=name,
                    message=f"JSON nested {depth} levels deep, more than {max_depth}",
                    code="too_deep",
                )
            ]
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(
            [Problem(file=name, message=f"JSON is not UTF-8 (byte {exc.start})", code="invalid_json")]
        ) from None
    flags = strict_json.scan(data)
    del data  # the decoded text is the only copy json needs
    try:
        return strict_json.loads(text, flags)
    except strict_json.StrictJSONError as exc:
        raise FormatError([Problem(file=name, message=str(exc), code="invalid_json")]) from None
    except json.JSONDecodeError as exc:
        raise FormatError(
            [
                Problem(
                    file=name,
                    line=exc.lineno,
                    message=f"invalid JSON at {exc.lineno}:{exc.colno}: {exc.msg}",
                    code="invalid_json",
                )
            ]
        ) from None
    except RecursionError:
        raise FormatError([Problem(file=name, message="JSON nested too deeply", code="too_deep")]) from None
