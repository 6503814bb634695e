"""A corpus of hostile archives and JSON files, each refused with a located problem."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import time
import warnings
import zipfile

import pytest
from PIL import Image

from marketplace.formats.archive import DirectorySource, ZipLimits, ZipSource, safe_load_json
from marketplace.formats.model import FormatError

from .builders import image_bytes, zip_bytes

CENTRAL = b"PK\x01\x02"
EOCD = b"PK\x05\x06"


def _central_records(data: bytes):
    """(offset, name) of every central directory record."""
    at = data.find(CENTRAL)
    while at >= 0:
        (name_len,) = struct.unpack_from("<H", data, at + 28)
        yield at, bytes(data[at + 46 : at + 46 + name_len]).decode()
        at = data.find(CENTRAL, at + 4)


def _patch_central(data: bytes, name: str, *, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    for at, entry in _central_records(data):
        if entry == name:
            struct.pack_into(fmt, out, at + offset, value)
    return bytes(out)


def _zip_info(name: str, **attrs) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def _zip_with_infos(*entries: tuple[zipfile.ZipInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w") as zf:
            for info, content in entries:
                zf.writestr(info, content)
    return buf.getvalue()


def _problems(data: bytes, **limits) -> list:
    return ZipSource.check(
        io.BytesIO(data), limits=ZipLimits(**limits) if limits else None, name="upload.zip"
    )


def _codes(problems) -> set[str]:
    return {p.code for p in problems}


# -- acceptable archives ------------------------------------------------------------------


def test_it_lists_the_files_of_a_plain_delivery_without_macos_litter():
    data = zip_bytes(
        {
            "images/a.jpg": image_bytes(20, 10),
            "labels/a.txt": "0 0.5 0.5 0.1 0.1\n",
            "__MACOSX/images/._a.jpg": b"resource fork",
            "images/.DS_Store": b"finder",
        }
    )

    with ZipSource(io.BytesIO(data)) as source:
        assert source.names() == ["images/a.jpg", "labels/a.txt"]
        assert source.open("labels/a.txt").read() == b"0 0.5 0.5 0.1 0.1\n"


def test_an_opened_entry_is_seekable_so_pillow_reads_only_the_header():
    source = ZipSource(io.BytesIO(zip_bytes({"images/a.png": image_bytes(33, 21, "PNG")})))

    with source.open("images/a.png") as stream, Image.open(stream, formats=["PNG"]) as img:
        assert img.size == (33, 21)


def test_a_small_entry_that_compresses_very_well_is_not_a_ratio_problem():
    assert _problems(zip_bytes({"empty_mask.txt": b"0" * 500_000})) == []


def test_it_reads_a_zip_given_by_path(tmp_path):
    path = tmp_path / "delivery.zip"
    path.write_bytes(zip_bytes({"a.txt": "hello"}))

    with ZipSource(path) as source:
        assert source.names() == ["a.txt"]
        assert source.size("a.txt") == 5


# -- hostile names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../evil.sh",
        "images/../../evil.sh",
        "/etc/passwd",
        "C:/Windows/evil.dll",
        "..\\..\\evil.sh",
        "images\\a.jpg",
    ],
)
def test_it_refuses_entries_whose_name_could_escape_the_extraction_folder(name):
    data = _zip_with_infos((_zip_info("ok.txt"), b"ok"), (_zip_info(name), b"evil"))

    problems = _problems(data)

    assert [p.code for p in problems] == ["unsafe_path"]
    assert problems[0].file == name


def test_it_refuses_a_name_hidden_behind_a_nul_byte():
    # zipfile cuts names at NUL when writing, so write a placeholder and patch the bytes.
    data = zip_bytes({"evil.sh#.jpg": "#!/bin/sh"}).replace(b"evil.sh#.jpg", b"evil.sh\x00.jpg")

    problems = _problems(data)

    assert _codes(problems) == {"unsafe_path"}
    assert "NUL" in problems[0].message


def test_it_refuses_symlink_entries():
    link = _zip_info("images/a.jpg", create_system=3, external_attr=(stat.S_IFLNK | 0o777) << 16)

    problems = _problems(_zip_with_infos((link, b"/etc/passwd")))

    assert [(p.file, p.code) for p in problems] == [("images/a.jpg", "symlink")]


def test_it_refuses_duplicate_names_exact_case_insensitive_and_unicode_equivalent():
    data = _zip_with_infos(
        (_zip_info("a.jpg"), b"1"),
        (_zip_info("a.jpg"), b"2"),
        (_zip_info("B.JPG"), b"3"),
        (_zip_info("b.jpg"), b"4"),
        (_zip_info("caf\u00e9.jpg"), b"5"),
        (_zip_info("cafe\u0301.jpg"), b"6"),
    )

    problems = _problems(data)

    assert [(p.file, p.code) for p in problems if p.code == "duplicate_name"] == [
        ("a.jpg", "duplicate_name"),
        ("b.jpg", "duplicate_name"),
        ("cafe\u0301.jpg", "duplicate_name"),
    ]


def test_it_refuses_a_name_that_is_both_a_file_and_a_folder():
    problems = _problems(zip_bytes({"Images": b"file", "images/a.jpg": b"x"}))

    assert [(p.file, p.code) for p in problems] == [("images/a.jpg", "duplicate_name")]
    assert "'Images' is both a file and a directory" in problems[0].message


def test_it_refuses_encrypted_entries():
    # zipfile cannot encrypt; set the "encrypted" flag bit the way an encrypting tool would.
    data = _patch_central(
        zip_bytes({"secret.txt": "not really encrypted"}), "secret.txt", offset=8, fmt="<H", value=1
    )

    problems = _problems(data)

    assert [(p.file, p.code) for p in problems] == [("secret.txt", "encrypted")]


# -- bombs and sizes ----------------------------------------------------------------------


def test_it_refuses_too_many_entries_before_parsing_the_central_directory():
    data = zip_bytes({f"{i}.txt": "x" for i in range(11)})

    problems = _problems(data, max_entries=10)

    assert [(p.file, p.code) for p in problems] == [("upload.zip", "too_many_entries")]


def test_it_counts_the_real_entries_when_the_end_record_understates_them():
    data = bytearray(zip_bytes({f"{i}.txt": "x" for i in range(11)}))
    eocd = data.rfind(EOCD)
    struct.pack_into("<HH", data, eocd + 8, 1, 1)

    problems = _problems(bytes(data), max_entries=10)

    assert _codes(problems) == {"too_many_entries"}


def test_it_refuses_a_declared_total_size_above_the_cap():
    data = zip_bytes({"a.bin": os.urandom(600), "b.bin": os.urandom(600)})

    problems = _problems(data, max_total_size=1000)

    assert [(p.file, p.code) for p in problems] == [("upload.zip", "too_large")]


def test_it_refuses_an_entry_whose_compression_ratio_is_a_bomb():
    problems = _problems(zip_bytes({"zeros.bin": b"\0" * (4 << 20)}))

    assert [(p.file, p.code) for p in problems] == [("zeros.bin", "compression_ratio")]


def test_it_stops_reading_an_entry_that_inflates_past_its_lying_header():
    # 8 MiB of zeros that the central directory claims is 1000 bytes: every static check
    # passes (small declared size, no ratio), so only counting while reading catches it.
    data = zip_bytes({"labels/a.txt": b"\0" * (8 << 20)})
    lying = _patch_central(data, "labels/a.txt", offset=24, fmt="<I", value=1000)
    source = ZipSource(io.BytesIO(lying))
    assert source.size("labels/a.txt") == 1000

    started = time.monotonic()
    with pytest.raises(FormatError) as caught:
        source.open("labels/a.txt").read()

    assert [(p.file, p.code) for p in caught.value.problems] == [("labels/a.txt", "zip_bomb")]
    assert time.monotonic() - started < 2


def test_it_refuses_overlapping_entries_that_share_one_compressed_kernel():
    data = zip_bytes({"a.txt": b"a" * 100, "b.txt": b"b" * 100})
    overlapping = _patch_central(data, "b.txt", offset=42, fmt="<I", value=0)

    problems = _problems(overlapping)

    assert "overlap" in _codes(problems)


def test_it_refuses_data_before_or_after_the_archive():
    data = zip_bytes({"a.txt": "hello"})

    assert _codes(_problems(data + b"trailing payload")) == {"trailing_data"}
    assert _codes(_problems(b"MZ executable stub" + data)) == {"prepended_data"}


def test_it_refuses_a_file_that_is_not_a_zip():
    with pytest.raises(FormatError) as caught:
        ZipSource(io.BytesIO(b"just some text"), name="notes.zip")

    assert [(p.file, p.code) for p in caught.value.problems] == [("notes.zip", "not_a_zip")]


def test_it_lists_every_problem_of_a_hostile_archive_not_only_the_first():
    link = _zip_info("link", create_system=3, external_attr=(stat.S_IFLNK | 0o777) << 16)
    data = _zip_with_infos(
        (_zip_info("../evil"), b"x"),
        (_zip_info("/abs"), b"x"),
        (link, b"/etc"),
        (_zip_info("dup"), b"1"),
        (_zip_info("DUP"), b"2"),
    )

    with pytest.raises(FormatError) as caught:
        ZipSource(io.BytesIO(data))

    assert [p.code for p in caught.value.problems] == [
        "unsafe_path",
        "unsafe_path",
        "symlink",
        "duplicate_name",
    ]


# -- directories --------------------------------------------------------------------------


def test_a_directory_source_lists_relative_posix_paths_and_refuses_symlinks(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / ".DS_Store").write_bytes(b"finder")

    source = DirectorySource(tmp_path)
    assert source.names() == ["images/a.jpg"]
    assert source.open("images/a.jpg").read() == b"jpeg"
    with pytest.raises(KeyError):
        source.open("../etc/passwd")

    (tmp_path / "images" / "b.jpg").symlink_to("/etc/passwd")
    with pytest.raises(FormatError) as caught:
        DirectorySource(tmp_path)
    assert [(p.file, p.code) for p in caught.value.problems] == [("images/b.jpg", "symlink")]


# -- JSON ---------------------------------------------------------------------------------


def test_safe_load_json_parses_ordinary_json_and_ignores_brackets_inside_strings():
    text = '{"images": [{"file_name": "[[[[[[[[\\"{{{{.jpg"}]}'

    assert safe_load_json(io.BytesIO(text.encode()), max_bytes=1000, max_depth=3) == {
        "images": [{"file_name": '[[[[[[[["{{{{.jpg'}]
    }


def test_safe_load_json_counts_depth_correctly_after_escaped_backslashes():
    # The string ends in an escaped backslash, so its closing quote is real and the
    # brackets after it count: depth 4.
    text = b'{"a": "x\\\\", "b": [[[]]], "c": "\\"]]]]"}'

    assert safe_load_json(io.BytesIO(text), max_bytes=1000, max_depth=4)["b"] == [[[]]]
    with pytest.raises(FormatError):
        safe_load_json(io.BytesIO(text), max_bytes=1000, max_depth=3)


def test_safe_load_json_refuses_deep_nesting_before_the_parser_recurses():
    deep = b"[" * 200_000 + b"]" * 200_000

    with pytest.raises(FormatError) as caught:
        safe_load_json(io.BytesIO(deep), max_bytes=1 << 20, max_depth=64, name="deep.json")

    assert [(p.file, p.code) for p in caught.value.problems] == [("deep.json", "too_deep")]


def test_safe_load_json_refuses_a_file_above_the_size_cap_without_reading_it_all():
    class Endless(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            buffer[:] = b" " * len(buffer)
            return len(buffer)

    with pytest.raises(FormatError) as caught:
        safe_load_json(io.BufferedReader(Endless()), max_bytes=1 << 20, max_depth=64, name="huge.json")

    assert [p.code for p in caught.value.problems] == ["too_large"]


def test_safe_load_json_reports_a_syntax_error_as_line_and_column():
    text = json.dumps({"images": [], "annotations": []}, indent=2).replace(
        '"annotations"', '"annotations" oops'
    )

    with pytest.raises(FormatError) as caught:
        safe_load_json(io.BytesIO(text.encode()), max_bytes=10_000, max_depth=8, name="instances.json")

    problem = caught.value.problems[0]
    assert (problem.file, problem.line, problem.code) == ("instances.json", 3, "invalid_json")
    assert problem.message.startswith("invalid JSON at 3:17:")


def test_it_reads_the_entry_count_of_a_zip64_archive(monkeypatch):
    # More than 65,535 entries (COCO train2017 has 118,287 images) put the count in the zip64
    # end record; zipfile writes one for fewer entries when its limit is lowered.
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    data = bytearray(zip_bytes({f"images/{i}.jpg": b"x" for i in range(5)}))
    monkeypatch.undo()
    assert b"PK\x06\x06" in data  # the zip64 end of central directory record
    # ... and, as writers do past 65,535 entries, the classic end record says 0xFFFF.
    struct.pack_into("<HH", data, data.rfind(EOCD) + 8, 0xFFFF, 0xFFFF)
    data = bytes(data)

    assert ZipSource.check(io.BytesIO(data)) == []
    assert [p.code for p in ZipSource.check(io.BytesIO(data), limits=ZipLimits(max_entries=4))] == [
        "too_many_entries"
    ]


def test_it_refuses_an_entry_said_to_start_before_the_archive_as_a_damaged_zip():
    # The end record puts the central directory 100 bytes further than it is: zipfile then places the
    # first entry 100 bytes before the file's start. The index's unsigned numbers raised OverflowError,
    # which ended the ingest as an internal error instead of a refusal naming the file.
    data = bytearray(zip_bytes({"a.txt": "hello"}))
    end = bytes(data).rfind(b"PK\x05\x06")
    offset = struct.unpack_from("<I", data, end + 16)[0]
    struct.pack_into("<I", data, end + 16, offset + 100)
    with pytest.raises(FormatError) as caught:
        ZipSource(io.BytesIO(bytes(data)), name="delivery.zip")

    assert [(p.file, p.code) for p in caught.value.problems] == [("delivery.zip", "not_a_zip")]


def test_it_refuses_an_entry_needing_a_later_zip_version_as_not_a_zip():
    # zipfile's own parsing (copied into the directory reader) raises NotImplementedError for it.
    data = bytearray(zip_bytes({"a.txt": "hello"}))
    central = bytes(data).find(b"PK\x01\x02")
    struct.pack_into("<B", data, central + 6, 99)  # version needed to extract: 9.9
    with pytest.raises(FormatError) as caught:
        ZipSource(io.BytesIO(bytes(data)), name="delivery.zip")

    assert [(p.file, p.code) for p in caught.value.problems] == [("delivery.zip", "not_a_zip")]
