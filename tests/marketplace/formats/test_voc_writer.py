"""Writing Pascal VOC: the inverse of the reader's 1-based rule, palette PNGs, escaping."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image

from marketplace.formats import model
from marketplace.formats.archive import DirectorySource
from marketplace.formats.model import CategoryDef, ItemRecord, LabelRecord
from marketplace.formats.voc import read_voc
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
