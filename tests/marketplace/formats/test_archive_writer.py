"""The zip sink: streamed entries, every file in the manifest, byte-identical archives."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from marketplace.formats import writing
from marketplace.formats.archive import ZipSource
from marketplace.formats.writing import ZipSink


def build(count: int) -> bytes:
    out = io.BytesIO()
    sink = ZipSink(out)
    for i in range(count):
        sink.write(f"labels/train/{i:05d}.txt", f"0 0.5 0.5 0.1 {i}\n".encode())
    sink.write("data.yaml", b"names: {0: car}\n")
    sink.write_manifest()
    sink.close()
    return out.getvalue()


def test_many_entries_stream_into_a_valid_zip_whose_manifest_lists_each_one():
    data = build(5000)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        manifest = zf.read("MANIFEST.sha256").decode().splitlines()
        assert len(names) == 5002 and len(manifest) == 5001
        for line in manifest[:50] + manifest[-2:]:
            sha, name = line.split("  ", 1)
            assert hashlib.sha256(zf.read(name)).hexdigest() == sha
    # Our own hostile-zip checks accept it (no overlap, no trailing data, sane names).
    assert ZipSource.check(io.BytesIO(data)) == []


def test_the_same_content_gives_the_same_bytes():
    assert hashlib.sha256(build(300)).digest() == hashlib.sha256(build(300)).digest()


def test_only_the_documents_are_kept_in_memory_for_the_croissant_listing():
    sink = ZipSink(io.BytesIO())
    sink.write("images/train/a.jpg", b"\xff\xd8")
    sink.write("annotations/instances_train.json", b"{}")
    sink.write("LICENSE.txt", b"terms")
    assert [f.name for f in sink.files] == ["annotations/instances_train.json", "LICENSE.txt"]
    assert sink.count == 3
    sink.close()


def test_a_file_written_in_many_small_pieces_is_deflated_whole_and_hashed_right():
    # Rows of a few dozen bytes, several WRITE_BUFFERs of them: the helper thread deflates full buffers
    # in order while rows are still being written; the entry and its manifest line are the bytes written.
    rows = [f'{{"row":{i},"text":"{"x" * (i % 50)}"}}\n'.encode() for i in range(120_000)]
    expected = b"".join(rows)
    assert len(expected) > 3 * writing.WRITE_BUFFER
    out = io.BytesIO()
    sink = ZipSink(out)
    with sink.open("content/labels.jsonl") as stream:
        for row in rows:
            stream.write(row)
    sink.write("small.txt", b"one write, below the buffer")
    sink.write_manifest()
    sink.close()
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as zf:
        assert zf.read("content/labels.jsonl") == expected
        assert zf.read("small.txt") == b"one write, below the buffer"
        manifest = dict(
            line.split("  ", 1)[::-1] for line in zf.read("MANIFEST.sha256").decode().splitlines()
        )
    assert manifest["content/labels.jsonl"] == hashlib.sha256(expected).hexdigest()
    assert sink.files[0].size == len(expected)


def test_an_error_in_the_deflating_thread_is_raised_to_the_writer():
    class Failing(io.RawIOBase):
        def write(self, data):
            raise OSError("disk full")

    stream = writing._HashingWriter(Failing(), lambda sha, size: None)
    with pytest.raises(OSError, match="disk full"):
        for _ in range(3):
            stream.write(b"x" * writing.WRITE_BUFFER)
        stream.close()
