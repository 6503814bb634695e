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

import copy
import io
import json
import lzma
import os
import re
import stat
import struct
import unicodedata
import zipfile
import zlib
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


def _name_problems(info: zipfile.ZipInfo) -> list[str]:
    # orig_filename keeps what zipfile cuts at a NUL ("evil.sh\0.jpg" reads as "evil.sh").
    raw = info.orig_filename
    name = info.filename
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


def _check_zip(zf: zipfile.ZipFile, label: str, limits: ZipLimits, problems: ProblemLog) -> None:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        problems.add(
            label,
            f"{len(infos)} entries, more than the {limits.max_entries} allowed",
            code="too_many_entries",
        )
        return
    seen: dict[str, str] = {}
    file_keys: dict[str, str] = {}  # collision key -> name, for regular files
    total = 0
    for info in infos:
        name = info.filename
        for reason in _name_problems(info):
            problems.add(name, f"unsafe entry name {info.orig_filename!r}: {reason}", code="unsafe_path")
        key = _collision_key(name)
        if key in seen:
            problems.add(
                name, f"duplicate entry: {name!r} collides with {seen[key]!r}", code="duplicate_name"
            )
        else:
            seen[key] = name
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            problems.add(name, "symbolic link entries are not allowed", code="symlink")
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            problems.add(
                name, "special file entries (device, fifo, socket) are not allowed", code="special_file"
            )
        if info.flag_bits & (_ENCRYPTED | _STRONG_ENCRYPTION):
            problems.add(name, "encrypted entries are not allowed", code="encrypted")
        if info.compress_type not in _ALLOWED_METHODS:
            problems.add(
                name, f"unsupported compression method {info.compress_type}", code="unsupported_compression"
            )
        if info.is_dir():
            continue
        file_keys.setdefault(key, name)
        total += info.file_size
        if info.file_size > limits.max_entry_size:
            problems.add(
                name,
                f"declares {info.file_size} bytes, more than the {limits.max_entry_size} allowed per file",
                code="too_large",
            )
        if info.file_size > limits.ratio_min_size:
            ratio = info.file_size / max(info.compress_size, 1)
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
    for key, name in file_keys.items():
        parent = key.rpartition("/")[0]
        while parent:
            if parent in file_keys:
                problems.add(
                    name, f"{file_keys[parent]!r} is both a file and a directory", code="duplicate_name"
                )
                break
            parent = parent.rpartition("/")[0]
    _check_layout(infos, zf, label, problems)


def _check_layout(
    infos: list[zipfile.ZipInfo], zf: zipfile.ZipFile, label: str, problems: ProblemLog
) -> None:
    """Entries must not overlap, and nothing may hide before the first one."""
    ordered = sorted(infos, key=lambda i: i.header_offset)
    if ordered and ordered[0].header_offset > 0:
        problems.add(
            label, f"{ordered[0].header_offset} bytes of data before the first entry", code="prepended_data"
        )
    end_of_entries = getattr(zf, "start_dir", None)
    for here, after in zip(ordered, ordered[1:] + [None], strict=True):
        # A lower bound on where this entry's data ends: the fixed local header plus the
        # compressed data. Any entry starting before that shares bytes with this one.
        data_end = here.header_offset + _LOCAL_HEADER_SIZE + here.compress_size
        limit = after.header_offset if after is not None else end_of_entries
        if limit is not None and data_end > limit:
            problems.add(
                here.filename, "entry overlaps another entry or the central directory", code="overlap"
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
        self._infos = {
            i.filename: i for i in self._zip.infolist() if not i.is_dir() and not is_ignored(i.filename)
        }

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
            zf = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            problems.add(label, f"not a readable zip archive: {exc}", code="not_a_zip")
            return problems, None
        _check_zip(zf, label, limits, problems)
        return problems, zf

    def names(self) -> list[str]:
        """The regular files of the archive, in archive order (directories and litter left out)."""
        return list(self._infos)

    def size(self, name: str) -> int:
        """The uncompressed size the archive declares for an entry."""
        return self._infos[name].file_size

    def open(self, name: str) -> BinaryIO:
        """A stream over one entry that raises FormatError if it inflates past its declared size."""
        info = self._infos[name]
        declared = info.file_size
        # Hand zipfile a copy that allows more than declared: zipfile itself stops at the
        # declared size, so without this a lie shows up only as a CRC error at the end.
        probe = copy.copy(info)
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
