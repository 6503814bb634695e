"""A file deflated ahead of its turn lands in the archive as the very entry the sink would have written.

``writing.DeflatedFile`` deflates bytes as they come (the labels' content rows on the export's helper
thread, provenance.csv row by row); ``ZipSink.copy_deflated`` copies them in as they are. The archive
must not change by a byte: compared here with the same files written through ``ZipSink.open``, for
data cut into writes in other places, and for a whole export built with and without the helper.
"""

import csv
import io
import random
import zipfile

import pytest
from django.db import connection, transaction

from marketplace.exports import deflated_lines, packaging
from marketplace.formats import model as fmt
from marketplace.formats.writing import WRITE_BUFFER, DeflatedFile, DeflatingSpool, DirectorySink, ZipSink
from tests import factories as f


def sample(size: int) -> bytes:
    rng = random.Random(size)
    words = [
        b'{"bbox":[1.5,2.25]',
        b"0.1234",
        b"\n",
        b"caf\xc3\xa9 ",
        bytes(rng.randrange(256) for _ in range(40)),
    ]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words)
    return bytes(out[:size])


def cut(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, at = [], 0
    while at < len(data):
        step = rng.choice([1, 7, 4096, 70_000, WRITE_BUFFER + 3])
        pieces.append(data[at : at + step])
        at += step
    return pieces


def zip_bytes(files: list[tuple[str, bytes]], *, deflated: set[str]) -> tuple[bytes, bytes]:
    """The archive and its manifest, ``deflated`` files given through DeflatedFile in other cuts."""
    out = io.BytesIO()
    sink = ZipSink(out)
    for n, (name, data) in enumerate(files):
        if name in deflated:
            ahead = DeflatedFile()
            for piece in cut(data, n):
                ahead.write(piece)
            sink.copy_deflated(name, ahead.finish())
            ahead.close()
        else:
            with sink.open(name) as entry:
                for piece in cut(data, n + 100):
                    entry.write(piece)
    sink.write_manifest("MANIFEST.sha256")
    sink.close()
    archive = out.getvalue()
    return archive, zipfile.ZipFile(io.BytesIO(archive)).read("MANIFEST.sha256")


FILES = [
    ("a.json", sample(5000)),
    ("empty.txt", b""),
    ("content/labels.jsonl", sample(3 * WRITE_BUFFER + 17)),
    ("images/x.jpg", sample(3000)),  # stored, not deflated: copied through open()
    ("provenance.csv", sample(1)),
]


def test_a_file_deflated_ahead_is_the_entry_the_sink_writes():
    names = {name for name, _ in FILES}

    written, manifest = zip_bytes(FILES, deflated=set())
    ahead, ahead_manifest = zip_bytes(FILES, deflated=names)

    assert ahead == written
    assert ahead_manifest == manifest
    with zipfile.ZipFile(io.BytesIO(ahead)) as archive:
        assert archive.testzip() is None
        assert [archive.read(name) for name, _ in FILES] == [data for _, data in FILES]


def test_a_directory_sink_writes_it_inflated(tmp_path):
    ahead = DeflatedFile()
    ahead.write(FILES[2][1])
    sink = DirectorySink(tmp_path)
    sink.copy_deflated("content/labels.jsonl", ahead.finish())

    assert (tmp_path / "content" / "labels.jsonl").read_bytes() == FILES[2][1]
    assert sink.files[0].size == len(FILES[2][1])


def test_rows_spooled_while_written_deflate_to_their_text():
    rows = [("é-uid", f"images/{n}.jpg", 'car "x"', n) for n in range(40_000)]
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    with DeflatingSpool() as spool:
        csv.writer(spool).writerows(rows)
        ahead = spool.finish()
        archive = io.BytesIO()
        sink = ZipSink(archive)
        sink.copy_deflated("provenance.csv", ahead)
        sink.close()

    assert zipfile.ZipFile(archive).read("provenance.csv") == text.getvalue().encode()
    assert ahead.size > WRITE_BUFFER  # more than one batch went through the helper thread


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the helper connection is PostgreSQL's")
def test_the_export_is_the_same_with_its_lines_deflated_by_the_helper(transactional_db, tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    label = f.LabelFactory(
        geometry_type=fmt.POLYGON, geometry={"bbox": [1.5, 2, 3, 4], "polygons": [[1, 2, 3.25, 4, 5, 6]]}
    )
    f.LabelFactory(item=label.item, category=label.category, attributes={"colour": "blue"})
    options = {"include_images": False, "splits": [], "categories": [], "candidates": False}
    started = []
    real_start = deflated_lines.DeflatedLabelLines.start

    def start(self):
        started.append(real_start(self))
        return started[-1]

    deflated_lines.DeflatedLabelLines.start = start
    try:
        with (tmp_path / "helper.zip").open("wb") as fh:
            packaging.build_archive(version=label.version, format="coco", options=options, fileobj=fh)
        with transaction.atomic(), (tmp_path / "in-turn.zip").open("wb") as fh:
            packaging.build_archive(version=label.version, format="coco", options=options, fileobj=fh)
    finally:
        deflated_lines.DeflatedLabelLines.start = real_start

    assert started == [True, False]  # the helper deflated the lines outside a transaction only
    assert (tmp_path / "helper.zip").read_bytes() == (tmp_path / "in-turn.zip").read_bytes()
