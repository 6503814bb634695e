"""The compact member index (archive.MemberIndex) answers as zipfile's ZipInfo objects did.

The oracle is zipfile itself (its ``infolist()`` and ``read()``) and, for the refusals, the checks
as they were written over ZipInfo objects before the index (copied below, unchanged): random
archives, hostile names included, must get the same problems, in the same order, and an accepted
archive the same names, sizes and bytes.
"""

from __future__ import annotations

import io
import stat
import unicodedata
import warnings
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.formats import archive
from marketplace.formats.archive import ProblemLog, ZipLimits, ZipSource, is_ignored
from marketplace.formats.model import FormatError

# --------------------------------------------------------------------------- the oracle: the checks
# as they were over zipfile's ZipInfo objects (marketplace/formats/archive.py before MemberIndex).


def _old_name_problems(info: zipfile.ZipInfo) -> list[str]:
    raw = info.orig_filename
    name = info.filename
    reasons = []
    if "\x00" in raw:
        reasons.append("name contains a NUL byte")
    elif archive._CONTROL.search(raw):
        reasons.append("name contains a control character")
    if "\\" in raw:
        reasons.append("name contains a backslash")
    if raw.startswith("/") or archive._DRIVE.match(raw):
        reasons.append("absolute path")
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if ".." in parts:
        reasons.append("path climbs out of the archive ('..')")
    elif any(p in ("", ".") for p in parts) and not raw.startswith("/"):
        reasons.append("non-canonical path (empty or '.' component)")
    return reasons


def _old_collision_key(name: str) -> str:
    return unicodedata.normalize("NFC", name.rstrip("/")).casefold()


def _old_check_zip(zf: zipfile.ZipFile, label: str, limits: ZipLimits, problems: ProblemLog) -> None:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        problems.add(
            label,
            f"{len(infos)} entries, more than the {limits.max_entries} allowed",
            code="too_many_entries",
        )
        return
    seen: dict[str, str] = {}
    file_keys: dict[str, str] = {}
    total = 0
    for info in infos:
        name = info.filename
        for reason in _old_name_problems(info):
            problems.add(name, f"unsafe entry name {info.orig_filename!r}: {reason}", code="unsafe_path")
        key = _old_collision_key(name)
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
        if info.flag_bits & (0x1 | 0x40):
            problems.add(name, "encrypted entries are not allowed", code="encrypted")
        if info.compress_type not in archive._ALLOWED_METHODS:
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
    ordered = sorted(infos, key=lambda i: i.header_offset)
    if ordered and ordered[0].header_offset > 0:
        problems.add(
            label, f"{ordered[0].header_offset} bytes of data before the first entry", code="prepended_data"
        )
    end_of_entries = getattr(zf, "start_dir", None)
    for here, after in zip(ordered, ordered[1:] + [None], strict=True):
        data_end = here.header_offset + 30 + here.compress_size
        limit = after.header_offset if after is not None else end_of_entries
        if limit is not None and data_end > limit:
            problems.add(
                here.filename, "entry overlaps another entry or the central directory", code="overlap"
            )


def _old_problems(data: bytes, limits: ZipLimits) -> list:
    problems = ProblemLog()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        _old_check_zip(zf, "archive.zip", limits, problems)
    return list(problems)


# --------------------------------------------------------------------------- random archives

# Names drawn from a small alphabet so that they collide often: by case, by Unicode form (é as one
# code point or two), as a file and a folder, and with the hostile characters the checks refuse.
_PARTS = st.sampled_from(
    ["a", "A", "b", "img", "IMG", "caf\u00e9", "cafe\u0301", "..", ".", "", "x\\y", "n\x00ul", "c\x01", "C:d"]
)
# The empty name and the empty archive crashed the old checks (IndexError, ValueError): tested apart.
_NAMES = st.lists(_PARTS, min_size=1, max_size=3).map("/".join).filter(bool) | st.sampled_from(
    ["__MACOSX/a", "a/.DS_Store", "/abs", "dir/", "a/", "A/b/"]
)
_ENTRY = st.tuples(
    _NAMES,
    st.binary(max_size=40),
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
    st.sampled_from([0, stat.S_IFREG | 0o644, stat.S_IFLNK | 0o777, stat.S_IFIFO | 0o644]),
)


def _build(entries, *, prepend: bytes = b"") -> bytes:
    buf = io.BytesIO()
    buf.write(prepend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
        with zipfile.ZipFile(buf, "w") as zf:
            for name, content, method, mode in entries:
                info = zipfile.ZipInfo(name)
                info.compress_type = method
                info.external_attr = mode << 16
                zf.writestr(info, b"" if name.endswith("/") else content)
    return buf.getvalue()


_SMALL = ZipLimits(max_entries=12, max_total_size=200, max_entry_size=30, ratio_min_size=0, max_ratio=5.0)


def _same_as_zipfile(data: bytes, limits: ZipLimits) -> None:
    expected = _old_problems(data, limits)
    assert ZipSource.check(io.BytesIO(data), limits=limits) == expected
    if expected:
        with pytest.raises(FormatError) as refused:
            ZipSource(io.BytesIO(data), limits=limits)
        assert refused.value.problems == expected
        return
    with zipfile.ZipFile(io.BytesIO(data)) as zf, ZipSource(io.BytesIO(data), limits=limits) as source:
        infos = zf.infolist()
        listed = [i.filename for i in infos if not i.is_dir() and not is_ignored(i.filename)]
        assert source.names() == listed
        probes = [*(i.filename for i in infos), "nope", 7]
        assert source.positions(probes) == [listed.index(n) if n in listed else None for n in probes]
        for info in infos:
            name = info.filename
            if name in listed:
                assert name in source
                assert source.size(name) == info.file_size
                with source.open(name) as stream:
                    assert stream.read() == zf.read(info)
            else:  # a folder, or litter: not a member of the delivery
                assert name not in source
                with pytest.raises(KeyError):
                    source.open(name)
        for stranger in ("nope", "A" if "a" in listed else "a", listed[0] + "x" if listed else "x"):
            if stranger not in listed:
                assert stranger not in source
                with pytest.raises(KeyError):
                    source.size(stranger)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(_ENTRY, min_size=1, max_size=10), prepend=st.sampled_from([b"", b"", b"junk"]))
def test_the_index_refuses_and_reads_exactly_as_zipfiles_own_objects(entries, prepend):
    _same_as_zipfile(_build(entries, prepend=prepend), ZipLimits())
    _same_as_zipfile(_build(entries, prepend=prepend), _SMALL)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(_ENTRY, min_size=1, max_size=10))
def test_the_answers_do_not_depend_on_the_hash_when_every_name_collides(monkeypatch_hash, entries):
    # Every name and key hashes to 0: only the comparison of the names themselves tells them apart.
    _same_as_zipfile(_build(entries), ZipLimits())


@pytest.fixture(scope="module")
def monkeypatch_hash():
    patch = pytest.MonkeyPatch()
    patch.setattr(archive, "_hash", lambda _: 0)
    yield
    patch.undo()


def test_a_clean_archive_of_many_entries_lists_and_finds_every_one():
    entries = [(f"images/{i:06d}.png", str(i).encode(), zipfile.ZIP_STORED, 0) for i in range(3000)]
    data = _build(entries)
    with ZipSource(io.BytesIO(data)) as source:
        assert source.names() == [e[0] for e in entries]
        assert all(e[0] in source for e in entries[::7])
        with source.open("images/002999.png") as stream:
            assert stream.read() == b"2999"
        assert "images/003000.png" not in source


def test_a_lookup_in_a_hostile_archive_is_still_refused():
    # A traversal among ordinary images: the whole archive is refused before any member is found.
    data = _build(
        [("images/a.png", b"a", zipfile.ZIP_STORED, 0), ("../../etc/passwd", b"x", zipfile.ZIP_STORED, 0)]
    )
    with pytest.raises(FormatError) as refused:
        ZipSource(io.BytesIO(data))
    assert [p.code for p in refused.value.problems] == ["unsafe_path"]
    # A symbolic link among the images: refused, so no look-up can ever open it.
    data = _build(
        [("images/a.png", b"a", zipfile.ZIP_STORED, 0), ("images/b.png", b"/etc", 0, stat.S_IFLNK | 0o777)]
    )
    with pytest.raises(FormatError) as refused:
        ZipSource(io.BytesIO(data))
    assert [(p.file, p.code) for p in refused.value.problems] == [("images/b.png", "symlink")]


def test_an_entry_whose_header_lies_is_still_stopped_when_read_through_the_index():
    data = bytearray(_build([("big.bin", b"\0" * 5000, zipfile.ZIP_DEFLATED, 0)]))
    # The central directory declares 100 bytes where 5000 inflate: the reader must stop.
    at = bytes(data).rfind(b"PK\x01\x02")
    data[at + 24 : at + 28] = (100).to_bytes(4, "little")
    with ZipSource(io.BytesIO(bytes(data))) as source:
        assert source.size("big.bin") == 100
        with pytest.raises(FormatError) as stopped, source.open("big.bin") as stream:
            stream.read()
    assert stopped.value.problems[0].code == "zip_bomb"


def test_the_index_holds_no_zipinfo_per_entry():
    entries = [(f"i/{i}.png", b"x", zipfile.ZIP_STORED, 0) for i in range(200)]
    with ZipSource(io.BytesIO(_build(entries))) as source:
        zf = source._zip
        assert isinstance(zf.filelist, archive.MemberIndex)
        assert len(zf.filelist) == 200
        assert zf.NameToInfo == {}


def test_an_empty_archive_opens_with_no_member():
    # The checks over ZipInfo objects raised ValueError here (zip(strict=True) of [] and [None]):
    # an internal error instead of the reader's "no image" or "no annotation file".
    with ZipSource(io.BytesIO(_build([]))) as source:
        assert source.names() == []
        assert "a" not in source


def test_an_entry_with_an_empty_name_is_refused_not_a_crash():
    # The old checks raised IndexError on it (ZipInfo.is_dir of ""); now a located refusal.
    data = _build([("a.png", b"a", zipfile.ZIP_STORED, 0), ("", b"", zipfile.ZIP_STORED, 0)])
    with pytest.raises(FormatError) as refused:
        ZipSource(io.BytesIO(data))
    assert [(p.file, p.code) for p in refused.value.problems] == [("", "unsafe_path")]


def test_the_names_are_a_sequence_over_the_index_not_a_list():
    # A list of 500,000 names held ~50 MB while a caller filtered it; the sequence answers as one.
    entries = [(f"images/{i:04d}.png", b"x", zipfile.ZIP_STORED, 0) for i in range(10)]
    entries.insert(3, ("images/", b"", zipfile.ZIP_STORED, 0))
    expected = [e[0] for e in entries if e[0] != "images/"]
    with ZipSource(io.BytesIO(_build(entries))) as source:
        names = source.names()
        assert isinstance(names, archive.MemberNames) and not isinstance(names, list)
        assert list(names) == list(names) == expected and names == expected and len(names) == 10
        assert names[0] == expected[0] and names[-1] == expected[-1] and names[3] == expected[3]
        assert names[2:5] == expected[2:5] and names[::-4] == expected[::-4]
        assert "images/0004.png" in names and "images/" not in names and "nope" not in names
        with pytest.raises(IndexError):
            names[10]
        assert [n for n in names if n.endswith("7.png")] == ["images/0007.png"]


def test_a_name_given_by_name_at_is_found_again_without_a_search(monkeypatch):
    # Ingest names an image by its position and looks the name up again per label: the names
    # name_at gave lately answer position() from memory, bounded, and agree with the search.
    entries = [(f"images/{i:04d}.png", str(i).encode(), zipfile.ZIP_STORED, 0) for i in range(50)]
    entries.insert(10, ("images/", b"", zipfile.ZIP_STORED, 0o40755))  # a folder: not listed
    monkeypatch.setattr(archive, "_RECENT_NAMES", 8)
    with ZipSource(io.BytesIO(_build(entries))) as source:
        searched = {n: source.position(n) for n in source.names()}
        assert sorted(searched.values()) == list(range(source.count()))
        order = list(range(source.count()))[::-3]
        names = [source.name_at(p) for p in order]
        assert len(source._recent) <= 8
        recent = dict(source._recent)
        monkeypatch.setattr(archive, "_hash", _no_hash)  # a search now fails loudly
        for name, position in recent.items():
            assert source.position(name) == position == searched[name]
        monkeypatch.undo()
        assert [source.position(n) for n in names] == order
        source.name_at(-1)  # numpy's last element: not remembered as position -1
        assert source.position(source.names()[-1]) == source.count() - 1


def _no_hash(_):
    raise AssertionError("searched by hash")
