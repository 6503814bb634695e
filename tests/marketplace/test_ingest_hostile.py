"""Hostile and broken deliveries: each is refused with its own code, a located report, no rows, no files."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from marketplace.models import Delivery

from . import ingest_support as support
from .ingest_support import (
    coco_doc,
    coco_files,
    make_delivery,
    picture,
    png_with_size,
    row_counts,
    storage_files,
    zip_bytes,
    zip_with_entry_mode,
)

pytestmark = pytest.mark.django_db

media, run = support.media, support.run  # fixtures

ENTITY_BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<annotation><filename>&lol3;</filename><size><width>64</width><height>48</height><depth>3</depth></size></annotation>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE annotations [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotations><version>1.1</version><meta><task><labels><label><name>&secret;</name><type>rectangle</type></label></labels></task></meta>
<image id="0" name="a.jpg" width="64" height="48"><box label="car" xtl="1" ytl="1" xbr="9" ybr="9" occluded="0"/></image>
</annotations>
"""


def _patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Make the central directory claim a smaller uncompressed size than the entry inflates to."""
    out = bytearray(data)
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        (name_len,) = struct.unpack_from("<H", data, at + 28)
        if bytes(data[at + 46 : at + 46 + name_len]).decode() == name:
            struct.pack_into("<I", out, at + 24, size)
        at = data.find(b"PK\x01\x02", at + 4)
    return bytes(out)


def _raw_zip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, content in entries:
                zf.writestr(name, content)
    return buf.getvalue()


def _coco_with(**replace) -> bytes:
    files = coco_files(n_images=1)
    files.update(replace)
    return zip_bytes(files)


def path_traversal():
    return _raw_zip([*coco_files(n_images=1).items(), ("../../etc/cron.d/evil", b"* * * * * root sh")])


def absolute_name():
    return _raw_zip([*coco_files(n_images=1).items(), ("/etc/passwd", b"root:x:0:0")])


def symlink():
    return zip_with_entry_mode(coco_files(n_images=1), "images/train/link.jpg", "/etc/passwd")


def ratio_bomb():
    return _coco_with(**{"images/train/zeros.bin": b"\0" * (8 << 20)})


def total_size_bomb(settings):
    settings.DELIVERY_MAX_UNCOMPRESSED_BYTES = 1000
    return zip_bytes(coco_files(n_images=3))


def too_many_files(settings):
    settings.DELIVERY_MAX_ENTRIES = 20
    return zip_bytes({**coco_files(n_images=1), **{f"images/train/x{i}.txt": b"x" for i in range(30)}})


def lying_header():
    # The annotation file inflates to 8 MiB of JSON whitespace but its header says 1000 bytes:
    # no check of the headers can see it; counting while reading does.
    files = coco_files(n_images=1)
    name = "annotations/instances_train.json"
    files[name] = files[name] + " " * (8 << 20)
    return _patch_declared_size(zip_bytes(files), name, 1000)


def duplicate_names():
    files = coco_files(n_images=1)
    return _raw_zip([*files.items(), ("images/train/0000.jpg", picture(64, 48, 9))])


def truncated_archive():
    data = zip_bytes(coco_files(n_images=2))
    return data[: len(data) // 2]


def image_bomb():
    return _coco_with(**{"images/train/0000.jpg": png_with_size(30000, 30000)})


def not_an_image():
    return _coco_with(**{"images/train/0000.jpg": b"#!/bin/sh\nrm -rf /\n"})


def truncated_image():
    noise = np.random.default_rng(4).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=95)
    return _coco_with(
        **{"images/train/0000.jpg": buf.getvalue()[: buf.tell() * 9 // 10]}
    )  # its last tenth gone


def xml_entity_bomb():
    return zip_bytes({"VOC/Annotations/a.xml": ENTITY_BOMB, "VOC/JPEGImages/a.jpg": picture(64, 48)})


def xml_external_entity():
    return zip_bytes({"annotations.xml": EXTERNAL_ENTITY, "images/a.jpg": picture(64, 48)})


def json_too_deep():
    deep = '{"images": [], "annotations": [], "x": ' + "[" * 5000 + "]" * 5000 + "}"
    return _coco_with(**{"annotations/instances_train.json": deep})


def json_too_large(settings):
    settings.DELIVERY_MAX_JSON_BYTES = 300
    return zip_bytes(coco_files(n_images=4))


def outside_the_image():
    doc = coco_doc([("0000.jpg", 64, 48)], [{"image_id": 1, "category_id": 1, "bbox": [50, 40, 30, 30]}])
    return zip_bytes(coco_files(n_images=1, doc=doc))


def unknown_category():
    doc = coco_doc([("0000.jpg", 64, 48)], [{"image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5]}])
    return zip_bytes(coco_files(n_images=1, doc=doc))


def missing_image():
    files = coco_files(n_images=2)
    del files["images/train/0001.jpg"]
    return zip_bytes(files)


def label_file_without_image():
    return zip_bytes(
        {
            "data.yaml": "names: [car, person]\ntrain: images/train\n",
            "images/train/a.jpg": picture(64, 48),
            "labels/train/a.txt": "0 0.5 0.5 0.2 0.2\n",
            "labels/train/ghost.txt": "1 0.5 0.5 0.2 0.2\n",
        }
    )


HOSTILE = [
    (path_traversal, "unsafe_path", "../../etc/cron.d/evil"),
    (absolute_name, "unsafe_path", "/etc/passwd"),
    (symlink, "symlink", "images/train/link.jpg"),
    (ratio_bomb, "compression_ratio", "images/train/zeros.bin"),
    (total_size_bomb, "too_large", "delivery.zip"),
    (too_many_files, "too_many_entries", "delivery.zip"),
    (lying_header, "zip_bomb", "annotations/instances_train.json"),
    (duplicate_names, "duplicate_name", "images/train/0000.jpg"),
    (truncated_archive, "not_a_zip", "delivery.zip"),
    (image_bomb, "image_bomb", "images/train/0000.jpg"),
    (not_an_image, "not_an_image", "images/train/0000.jpg"),
    (truncated_image, "corrupt_image", "images/train/0000.jpg"),
    (xml_entity_bomb, "forbidden_xml", "VOC/Annotations/a.xml"),
    (xml_external_entity, "unsafe_xml", "annotations.xml"),
    (json_too_deep, "too_deep", "annotations/instances_train.json"),
    (json_too_large, "too_large", "annotations/instances_train.json"),
    (outside_the_image, "invalid_geometry", "annotations/instances_train.json"),
    (unknown_category, "unknown_category", "annotations/instances_train.json"),
    (missing_image, "missing_file", "annotations/instances_train.json"),
    (label_file_without_image, "orphan_label", "labels/train/ghost.txt"),
]


@pytest.mark.parametrize(("build", "code", "file"), HOSTILE, ids=[h[0].__name__ for h in HOSTILE])
def test_a_hostile_delivery_is_refused_cleanly(build, code, file, dataset, media, run, settings):
    data = build(settings) if "settings" in build.__code__.co_varnames else build()
    delivery = make_delivery(dataset, data)
    rows, files = row_counts(), storage_files(media)

    result = run(delivery)

    assert delivery.status == Delivery.Status.FAILED and result.version_number is None
    assert row_counts() == rows, "a refused delivery must not add rows"
    assert storage_files(media) == files, "a refused delivery must not add files"
    found = {(p["code"], p["file"]) for p in result.problems}
    assert (code, file) in found, result.problems
    assert all(p["message"] for p in result.problems)
    assert delivery.report["stage"] == "failed" and delivery.report["problem_counts"]["error"] >= 1


def test_a_located_problem_says_where(dataset, media, run):
    result = run(make_delivery(dataset, outside_the_image()))
    (problem,) = [p for p in result.problems if p["code"] == "invalid_geometry"]
    assert problem["location"] == "/annotations/0/bbox" and "outside" in problem["message"]


def test_a_yolo_problem_says_which_line(dataset, media, run):
    files = {
        "data.yaml": "names: [car]\ntrain: images/train\n",
        "images/train/a.jpg": picture(64, 48),
        "labels/train/a.txt": "0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n",
    }
    result = run(make_delivery(dataset, zip_bytes(files)))
    assert not result.ok
    (problem,) = result.problems
    assert (problem["file"], problem["location"]) == ("labels/train/a.txt", "line 2")


def test_a_delivery_that_is_not_json_reports_the_line(dataset, media, run):
    files = coco_files(n_images=1)
    files["annotations/instances_train.json"] = '{\n "images": [],\n "annotations": [,]\n}'
    result = run(make_delivery(dataset, zip_bytes(files)))
    (problem,) = result.problems
    assert problem["code"] == "invalid_json" and problem["location"] == "line 3"


def test_the_delivery_archive_itself_is_kept_as_evidence(dataset, media, run):
    delivery = make_delivery(dataset, truncated_archive())
    run(delivery)
    assert delivery.archive.name in storage_files(media)
    assert json.dumps(delivery.report)  # the report is plain JSON
