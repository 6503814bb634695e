"""Writing Pascal VOC: the inverse of the reader's 1-based rule, palette PNGs, escaping."""

from __future__ import annotations

import io
import json
import random
import uuid
from xml.etree import ElementTree

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from marketplace.formats import model
from marketplace.formats.archive import DirectorySource
from marketplace.formats.model import CategoryDef, ItemRecord, LabelRecord
from marketplace.formats.voc import mask_uid, read_voc
from marketplace.formats.voc_writer import voc_box, write_voc
from marketplace.formats.writing import DirectorySink, Notes

from .builders import image_bytes


def test_voc_corners_invert_the_readers_rule_within_half_a_pixel():
    rng = random.Random(7)
    width, height = 640, 480
    assert voc_box([0.0, 0.0, 640.0, 480.0], width, height) == ((1, 1, 640, 480), False)
    assert voc_box([10.0, 20.0, 30.0, 40.0], width, height) == ((11, 21, 40, 60), False)  # integers: exact
    for _ in range(2000):
        x, y = rng.uniform(0, 600), rng.uniform(0, 440)
        w, h = rng.uniform(1, width - x), rng.uniform(1, height - y)
        (xmin, ymin, xmax, ymax), clamped = voc_box([x, y, w, h], width, height)
        assert not clamped
        # The reader's rule: x = xmin - 1, w = xmax - xmin + 1.
        assert abs((xmin - 1) - x) <= 0.5 and abs((xmin - 1 + xmax - xmin + 1) - (x + w)) <= 0.5
        assert abs((ymin - 1) - y) <= 0.5 and abs((ymin - 1 + ymax - ymin + 1) - (y + h)) <= 0.5
    assert voc_box([-5.0, 3.0, 20.0, 10.0], width, height) == ((1, 4, 15, 13), True)


def test_masks_are_palette_pngs_by_object_and_class_and_the_reader_gets_them_back(tmp_path):
    cats = [CategoryDef("car", source_id=1), CategoryDef("road & verge", source_id=2)]
    item = ItemRecord(key="images/train/a.jpg", width=30, height=20, split="train")
    labels = [
        LabelRecord(
            item.key,
            "road & verge",
            model.POLYGON,
            {"polygons": [[0, 10, 29, 10, 29, 19, 0, 19]]},
            attributes={"type": "<asphalt>"},
        ),
        LabelRecord(
            item.key, "car", model.BBOX, {"bbox": [2.0, 2.0, 6.0, 5.0]}, attributes={"occluded": True}
        ),
    ]
    notes = Notes()
    write_voc(
        DirectorySink(tmp_path),
        [(item, labels)],
        categories=cats,
        notes=notes,
        image_source=lambda _: io.BytesIO(image_bytes(30, 20)),
    )
    objects = Image.open(tmp_path / "SegmentationObject/a.png")
    classes = Image.open(tmp_path / "SegmentationClass/a.png")
    assert objects.mode == classes.mode == "P"
    assert set(np.unique(np.asarray(objects))) == {0, 1}  # the polygon is the first <object>
    assert set(np.unique(np.asarray(classes))) == {0, 2}  # "road & verge" is line 2 of labelmap.txt
    assert (tmp_path / "ImageSets/Main/train.txt").read_text() == "a\n"
    parsed = read_voc(DirectorySource(tmp_path))
    assert [i.key for i in parsed.items] == ["JPEGImages/a.jpg"]
    back = list(parsed.labels)
    assert not parsed.problems
    kinds = sorted((lab.category, lab.geometry_type) for lab in back)
    assert kinds == [("car", "bbox"), ("road & verge", "bbox"), ("road & verge", "mask")]
    car = next(lab for lab in back if lab.category == "car")
    assert car.geometry["bbox"] == [2, 2, 6, 5] and car.attributes["occluded"] is True
    road = next(lab for lab in back if lab.geometry_type == "bbox" and lab.category != "car")
    assert road.attributes["type"] == "<asphalt>"


def test_classifications_become_the_per_class_image_lists(tmp_path):
    cats = [CategoryDef("good", source_id=1), CategoryDef("poor", source_id=2)]
    records = [
        (
            ItemRecord(key=f"{n}.jpg", width=10, height=10, split="val"),
            [LabelRecord(f"{n}.jpg", cls, model.CLASSIFICATION, {})],
        )
        for n, cls in (("a", "good"), ("b", "poor"), ("c", "good"))
    ]
    notes = Notes()
    write_voc(DirectorySink(tmp_path), records, categories=cats, notes=notes)
    assert (tmp_path / "ImageSets/Main/good_val.txt").read_text() == "a 1\nb -1\nc 1\n"
    assert (tmp_path / "ImageSets/Main/poor_val.txt").read_text() == "a -1\nb 1\nc -1\n"
    assert [(n["code"], n["count"]) for n in notes.as_list()] == [("converted", 3)]


def _box_and_mask(width=30, height=20, *, mask_attributes=None):
    """A box and the mask the VOC reader took from the same <object> (mask uid derived from the box's)."""
    box_uid = str(uuid.uuid4())
    pixels = np.zeros((height, width), dtype=np.uint8)
    pixels[0:20, 0:30] = 1  # the whole image: wider than the box, as datumaro's voc_dataset1 has it
    rle = mask_utils.encode(np.asfortranarray(pixels))
    attributes = {"pose": "Unspecified", "truncated": True}
    box = LabelRecord(
        "a.jpg", "cat", model.BBOX, {"bbox": [0.0, 1.0, 3.0, 3.0]}, attributes=attributes, uid=box_uid
    )
    mask = LabelRecord(
        "a.jpg",
        "cat",
        model.MASK,
        {"rle": {"size": [height, width], "counts": rle["counts"].decode()}, "bbox": [0.0, 0.0, 30.0, 20.0]},
        attributes=dict(attributes if mask_attributes is None else mask_attributes),
        uid=mask_uid(box_uid),
    )
    other = LabelRecord("a.jpg", "cat", model.BBOX, {"bbox": [10.0, 10.0, 5.0, 5.0]}, attributes=attributes)
    return [box, other, mask]


def _objects(path) -> list[tuple[str, tuple[int, ...]]]:
    root = ElementTree.parse(path).getroot()  # noqa: S314 - the file this test just wrote
    return [
        (
            obj.findtext("name"),
            tuple(int(obj.findtext(f"bndbox/{c}")) for c in ("xmin", "ymin", "xmax", "ymax")),
        )
        for obj in root.iter("object")
    ]


def test_a_mask_and_the_box_of_its_object_are_written_as_one_object(tmp_path):
    item = ItemRecord(key="a.jpg", width=30, height=20, split="train")
    write_voc(
        DirectorySink(tmp_path), [(item, _box_and_mask())], categories=[CategoryDef("cat", 1)], notes=Notes()
    )

    # VOC's rules, read with ElementTree and Pillow: the box's own corners (1-based inclusive), and
    # the mask's pixels under that object's index 1 in SegmentationObject; the other box is object 2.
    assert _objects(tmp_path / "Annotations/a.xml") == [("cat", (1, 2, 3, 4)), ("cat", (11, 11, 15, 15))]
    instances = np.asarray(Image.open(tmp_path / "SegmentationObject/a.png"))
    assert set(np.unique(instances)) == {1}
    assert set(np.unique(np.asarray(Image.open(tmp_path / "SegmentationClass/a.png")))) == {1}
    references = [
        json.loads(line)["label"] for line in (tmp_path / "provenance.jsonl").read_text().splitlines()
    ]
    assert references == ["Annotations/a.xml#1", "SegmentationObject/a.png#1", "Annotations/a.xml#2"]


def test_a_mask_that_says_something_else_of_its_object_stays_its_own_object(tmp_path):
    item = ItemRecord(key="a.jpg", width=30, height=20, split="train")
    labels = _box_and_mask(mask_attributes={"pose": "Left"})
    write_voc(DirectorySink(tmp_path), [(item, labels)], categories=[CategoryDef("cat", 1)], notes=Notes())

    objects = _objects(tmp_path / "Annotations/a.xml")
    assert objects == [("cat", (1, 2, 3, 4)), ("cat", (11, 11, 15, 15)), ("cat", (1, 1, 30, 20))]
    assert set(np.unique(np.asarray(Image.open(tmp_path / "SegmentationObject/a.png")))) == {3}
