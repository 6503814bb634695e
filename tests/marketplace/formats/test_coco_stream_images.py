"""Streaming COCO's images (coco_stream.StreamedHead): the whole-file reader's outcome, without a list
of every image's object, and each walk over the images stops where they end."""

from __future__ import annotations

import io
import json
import tracemalloc

from marketplace.formats import coco, coco_stream
from marketplace.formats.coco import read_coco

from .builders import image_bytes, zip_source
from .test_coco_stream import both_ways


def _images(n: int, **extra) -> list[dict]:
    return [
        {
            "id": i + 1,
            "file_name": f"{i + 1:012d}.jpg",
            "width": 64,
            "height": 48,
            "license": 1 + i % 8,
            "date_captured": "2013-11-14 11:18:45",
            "coco_url": f"http://images.cocodataset.org/train2017/{i + 1:012d}.jpg",
            **extra,
        }
        for i in range(n)
    ]


def _files(doc: dict, n_images: int) -> dict:
    files = {"annotations/instances_train.json": json.dumps(doc)}
    picture = image_bytes(64, 48)
    for i in range(n_images):
        files[f"images/train/{i + 1:012d}.jpg"] = picture
    return files


def _doc(images: list[dict], order=("categories", "images", "annotations")) -> dict:
    parts = {
        "categories": [{"id": 1, "name": "car"}],
        "images": images,
        "annotations": [
            {"id": a + 1, "image_id": 1 + a % len(images), "category_id": 1, "bbox": [1, 2, 10, 10]}
            for a in range(3 * len(images))
        ],
    }
    return {k: parts[k] for k in order}


def test_images_before_or_after_the_annotations_read_as_the_whole_file_reader_reads_them(monkeypatch):
    # Two images with the same file (a duplicate), a classification kept in an image, a bad image.
    images = _images(4)
    images[1]["file_name"] = images[0]["file_name"]
    images[2]["classifications"] = [{"category_id": 1}]
    images[3]["width"] = -1
    for order in (("categories", "images", "annotations"), ("annotations", "images", "categories")):
        whole, streamed = both_ways(monkeypatch, _files(_doc(images, order), 4))
        assert streamed == whole
        assert streamed[0] == "read" and len(streamed[2]) == 3  # the duplicate left out


def test_the_images_are_not_held_as_a_list_of_their_objects(monkeypatch):
    n = 20_000
    doc = _doc(_images(n))
    doc["annotations"] = doc["annotations"][:10]
    text = json.dumps(doc)
    monkeypatch.setattr(coco, "STREAM_ABOVE_BYTES", -1)
    source = zip_source(_files(doc, 1))  # one file present: the index still walks every image

    tracemalloc.start()
    try:
        json.loads(text)
        whole_parse = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        parsed = read_coco(source)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert isinstance(parsed.problems, list)
    # Before: the images' objects (~1 KB each, about the whole parse) were held, and more.
    assert held < whole_parse / 3, (held, whole_parse)


def test_a_walk_over_the_images_stops_where_they_end():
    doc = _doc(_images(50))
    doc["annotations"] *= 200
    data = json.dumps(doc).encode()
    read = []

    class Counting(io.BytesIO):
        def read(self, size=-1):
            chunk = super().read(size)
            read.append(len(chunk))
            return chunk

    doc = coco_stream.read_outline(lambda: Counting(data), max_bytes=len(data), max_depth=64, name="a.json")
    head = doc["images"]
    assert isinstance(head, coco_stream.StreamedHead)
    read.clear()  # the outline's own pass read everything; a walk over the images reads their bytes
    assert [img["id"] for img in head] == list(range(1, 51))
    # ijson reads in 64 kB buffers: with the annotations far larger than the images, the walk must
    # stop well before the end of the file.
    annotations_at = data.index(b'"annotations"')
    assert len(data) > annotations_at + 4 * 65536
    assert sum(read) <= annotations_at + 65536
