"""An open archive reads its entries back from the file's central directory instead of holding them.

The oracle is zipfile: the directory read a block at a time at opening (``_Window``) and each record
read back later (``_Directory``) must give zipfile's own ZipInfo, field by field, and its own errors,
whatever the block size (records and names cut across blocks).
"""

from __future__ import annotations

import gc
import io
import random
import struct
import tracemalloc
import warnings
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.formats import archive
from marketplace.formats.archive import ZipLimits, ZipSource

_FIELDS = (
    "filename",
    "orig_filename",
    "header_offset",
    "compress_size",
    "file_size",
    "CRC",
    "flag_bits",
    "compress_type",
    "external_attr",
    "internal_attr",
    "extra",
    "comment",
    "date_time",
    "create_system",
    "create_version",
    "extract_version",
    "volume",
)

_NAME = st.text(
    alphabet=st.sampled_from(["a", "b", "/", ".", "é", "\u00e9", "ß", "\u2603", "\x00", "\\"]),
    min_size=1,
    max_size=12,
)
_ENTRY = st.tuples(
    _NAME,
    st.binary(max_size=30),
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
    st.binary(max_size=12),  # the entry's comment
    st.binary(max_size=8),  # an extra field's payload (tag 0xCAFE)
    st.booleans(),  # the name's UTF-8 flag cleared afterwards: read as cp437
)


def _build(entries) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content, method, comment, extra, _ in entries:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 2, 3, 4, 6))
            info.compress_type = method
            info.comment = comment
            info.extra = struct.pack("<HH", 0xCAFE, len(extra)) + extra
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
                zf.writestr(info, content)
    data = bytearray(buf.getvalue())
    # Clear the UTF-8 flag of the chosen records in the central directory: their names are cp437 then.
    start = bytes(data).rfind(b"PK\x05\x06")
    (offset,) = struct.unpack_from("<I", data, start + 16)
    at = offset
    for *_, as_cp437 in entries:
        if data[at : at + 4] != b"PK\x01\x02":
            break
        if as_cp437:
            data[at + 9] &= ~0x08  # bit 11 of the flags
        at += 46 + sum(struct.unpack_from("<HHH", data, at + 28))
    return bytes(data)


class _Recording(zipfile.ZipFile):
    """zipfile, keeping the entries it parsed in a list of the caller's (kept when it raises)."""

    def __init__(self, file, read: list):
        self._read = read
        super().__init__(file)

    def _RealGetContents(self):  # noqa: N802 - zipfile's name
        self.filelist = self._read
        super()._RealGetContents()


def _outcome(make):
    try:
        return make(), None
    except Exception as error:  # noqa: BLE001 - the error is the answer compared
        return None, (type(error), str(error))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(_ENTRY, max_size=8),
    block=st.sampled_from([7, 46, 64, 100, archive.MiB]),
    cached=st.sampled_from([0, 100, archive.MiB]),  # 0: every look-up out of order reads its record alone
    guess=st.sampled_from([0, 3, 256]),
)
def test_every_entry_read_back_is_zipfiles_own(entries, block, cached, guess):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(archive._Window, "_BLOCK", block)
        patch.setattr(archive._Directory, "_BLOCK", block)
        patch.setattr(archive._Directory, "_BLOCKS", 1)
        patch.setattr(archive._Directory, "_CACHED", cached)
        patch.setattr(archive._Directory, "_NAME_GUESS", guess)
        patch.setattr(archive._Directory, "_NAMES", 3)  # the names remembered: cleared often
        _same_entries_as_zipfile(_build(entries))


def _same_entries_as_zipfile(data: bytes) -> None:
    expected, error = _outcome(lambda: zipfile.ZipFile(io.BytesIO(data)).infolist())
    ours, our_error = _outcome(lambda: archive._IndexingZipFile(io.BytesIO(data)))
    assert our_error == error
    if error:
        return
    index = ours.filelist
    directory = archive._Directory(ours)
    assert len(index) == len(expected)
    for i, info in enumerate(expected):
        assert index.orig_filename(i) == info.orig_filename and index.filename(i) == info.filename
        again = directory.info(index.record[i])
        assert {f: getattr(again, f) for f in _FIELDS} == {f: getattr(info, f) for f in _FIELDS}
        assert directory.filename(index.record[i]) == info.filename
    for i in [*range(len(expected)), *reversed(range(len(expected)))]:  # remembered or read again
        assert directory.filename(index.record[i]) == expected[i].filename


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(_ENTRY, min_size=1, max_size=4),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=3),
    block=st.sampled_from([7, 64, archive.MiB]),
)
def test_a_damaged_directory_is_refused_with_zipfiles_own_error(entries, flips, block):
    # Bytes of the central directory and end record changed at random: zipfile and the streamed
    # reading must accept the same archives, with the same entries, and refuse the others the same way.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(archive._Window, "_BLOCK", block)
        _same_outcome_as_zipfile(entries, flips)


def _same_outcome_as_zipfile(entries, flips) -> None:
    data = bytearray(_build(entries))
    start = struct.unpack_from("<I", data, bytes(data).rfind(b"PK\x05\x06") + 16)[0]
    for at, value in flips:
        data[start + at % (len(data) - start)] = value
    data = bytes(data)
    read: list[zipfile.ZipInfo] = []  # what zipfile parsed, up to its error if it refuses
    expected, error = _outcome(lambda: _Recording(io.BytesIO(data), read).infolist())
    ours, our_error = _outcome(lambda: archive._IndexingZipFile(io.BytesIO(data)))
    if any(i.header_offset < 0 for i in read):
        # zipfile takes an entry before the file's start; the index's unsigned numbers never did (an
        # OverflowError at that entry, which ZipSource refuses as a damaged archive).
        assert our_error[0] is OverflowError
        return
    assert our_error == error
    if not error:
        assert [ours.filelist.orig_filename(i) for i in range(len(expected))] == [
            i.orig_filename for i in expected
        ]
        assert list(ours.filelist.header_offset) == [i.header_offset for i in expected]


def test_an_open_archive_holds_a_few_bytes_an_entry_not_its_names():
    # 500,000 images held ~100 bytes an entry (names and numbers) for the whole ingest: 50 MB.
    count = 20_000
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            zf.writestr(f"images/train2017/{i:012d}.png", b"x")
    data = buf.getvalue()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        source = ZipSource(io.BytesIO(data), limits=ZipLimits(max_entries=count))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / count < 24
    # ... and still answers as before.
    assert source.count() == count
    assert source.name_at(12_345) == "images/train2017/000000012345.png"
    assert source.position("images/train2017/000000019999.png") == 19_999
    with source.open("images/train2017/000000000007.png") as stream:
        assert stream.read() == b"x"


def test_opening_an_archive_peaks_well_below_its_whole_directory_and_index(monkeypatch):
    # The opening read the whole central directory into memory, then checked names with an argsort
    # and its gathers per pass and lists of every entry number: ~165 bytes an entry at its peak.
    monkeypatch.setattr(archive._Window, "_BLOCK", 64 * 1024)
    count = 20_000
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            zf.writestr(f"images/train2017/{i:012d}.png", b"x")
    data = buf.getvalue()
    ZipSource(io.BytesIO(data[:0] + data), limits=ZipLimits(max_entries=count)).close()  # imports done
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ZipSource(io.BytesIO(data), limits=ZipLimits(max_entries=count)).close()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    # Then (session 7) ~125 here: the index's CRCs and 8-byte record and name offsets, and the sort of
    # the listed names' hashes while the index was still held.
    assert peak / count < 118


def test_names_asked_for_in_any_order_read_each_block_of_the_directory_once(monkeypatch):
    # Labels ask for their images in no particular order. With 1 MiB of the directory kept, a
    # 50,000-image delivery read a 64 KB block from the file again for most of its 500,000 labels.
    count = 40_000  # a directory of about 3 MB
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            zf.writestr(f"images/train2017/{i:012d}.png", b"x")
    reads = []
    real = archive._Directory._block

    def counted(self, number):
        if number not in self._blocks:
            reads.append(number)
        return real(self, number)

    monkeypatch.setattr(archive._Directory, "_block", counted)
    with archive.ZipSource(io.BytesIO(buf.getvalue())) as source:
        for position in random.Random(13).sample(range(count), count):
            assert source.name_at(position) == f"images/train2017/{position:012d}.png"

    assert reads and len(reads) == len(set(reads))


@pytest.mark.parametrize("on_disk", [True, False])
def test_a_directory_larger_than_the_cache_is_read_record_by_record_out_of_order(
    monkeypatch, tmp_path, on_disk
):
    # Ten times the images: 8 MiB of a 35 MB directory was kept in 64 KB blocks for the whole ingest
    # (8 MiB more than at the size) and labels asking in no order still read a block for
    # three look-ups in four. Past the cache, a look-up out of order reads its record alone.
    monkeypatch.setattr(archive._Directory, "_BLOCK", 1024)
    monkeypatch.setattr(archive._Directory, "_BLOCKS", 2)
    monkeypatch.setattr(archive._Directory, "_CACHED", 8 * 1024)
    count = 2_000  # a directory of about 150 KB
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(count):
            zf.writestr(f"images/train2017/{i:012d}.png", f"image {i}")
    if on_disk:  # read with pread
        (tmp_path / "a.zip").write_bytes(buf.getvalue())
        source = archive.ZipSource(tmp_path / "a.zip")
    else:  # seek and read
        source = archive.ZipSource(io.BytesIO(buf.getvalue()))
    directory = source._directory
    with source:
        assert list(source.names()) == [f"images/train2017/{i:012d}.png" for i in range(count)]
        for position in random.Random(13).sample(range(count), count):
            name = f"images/train2017/{position:012d}.png"
            assert source.name_at(position) == name
            assert source.position(name) == position
            assert source.size(name) == len(f"image {position}")
            with source.open(name) as stream:
                assert stream.read() == f"image {position}".encode()
            assert len(directory._blocks) <= 2  # the walk's blocks at most, never the look-ups'


def test_entries_opened_in_archive_order_past_the_cache_read_the_directory_by_blocks(monkeypatch, tmp_path):
    # The image store opens the entries one after the other: a record read alone for each (two reads
    # an image) would cost more than the blocks that hold them.
    monkeypatch.setattr(archive._Directory, "_BLOCK", 1024)
    monkeypatch.setattr(archive._Directory, "_BLOCKS", 2)
    monkeypatch.setattr(archive._Directory, "_CACHED", 8 * 1024)
    count = 2_000
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        for i in range(count):
            zf.writestr(f"images/train2017/{i:012d}.png", f"image {i}")
    reads = []
    real = archive._Directory._read

    def counted(self, offset, n):
        reads.append(n)
        return real(self, offset, n)

    with archive.ZipSource(tmp_path / "a.zip") as source:
        monkeypatch.setattr(archive._Directory, "_read", counted)
        for position in range(count):
            name = source.name_at(position)
            with source.open(name) as stream:
                assert stream.read() == f"image {position}".encode()
    assert len(reads) < count // 10  # ~150 blocks of 1 KB, not 4,000 records
