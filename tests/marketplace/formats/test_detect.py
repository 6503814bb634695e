"""Telling the format from the layout the tools really write (formats.detect, no Django)."""

from __future__ import annotations

import pytest

from marketplace.formats.detect import MAX_PEEKS, detect_format
from marketplace.formats.model import FormatError

from .builders import image_bytes, zip_source

VOC_XML = "<annotation><filename>a.jpg</filename><object><name>cat</name></object></annotation>"
CVAT_XML = '<?xml version="1.0"?>\n<annotations><version>1.1</version></annotations>'


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"VOC2012/Annotations/a.xml": VOC_XML}, "voc"),
        ({"train/a.jpg": b"", "train/a.xml": VOC_XML}, "voc"),  # Roboflow / LabelImg: XML beside the image
        ({"export.json": "[]"}, "labelstudio"),
        ({"annotations/instances_val.json": '{"images": []}'}, "coco"),
        ({"train/_annotations.coco.json": '{"images": []}'}, "coco"),  # Roboflow COCO
        ({"data.yaml": "names: [a]", "labels/train/a.txt": ""}, "yolo"),
        ({"obj.names": "a", "obj_train_data/a.txt": ""}, "yolo"),
        ({"classes.txt": "a\n", "a.txt": "0 0.5 0.5 0.1 0.1"}, "yolo"),  # LabelImg
        (
            {"classes.txt": "a\n", "notes.json": '{"categories": []}', "labels/a.txt": ""},
            "yolo",
        ),  # Label Studio YOLO
        ({"train/labelTxt/a.txt": "1 1 2 1 2 2 1 2 plane 0"}, "yolo"),  # DOTA (Roboflow OBB)
        ({"annotations.xml": CVAT_XML}, "cvat"),
        ({"job_7.xml": CVAT_XML}, "cvat"),
    ],
)
def test_each_layout_is_told_apart(files, expected):
    assert detect_format(zip_source(files)) == expected


def test_a_cvat_xml_wins_over_voc_like_files_and_nothing_known_is_a_clear_error():
    files = {"a.xml": VOC_XML, "b.xml": CVAT_XML}
    assert detect_format(zip_source(files)) == "cvat"
    with pytest.raises(FormatError) as caught:
        detect_format(zip_source({"a.jpg": image_bytes(4, 4), "notes.xml": "<notes/>"}))
    assert caught.value.problems[0].code == "unknown_format"


def test_only_a_bounded_number_of_files_is_opened():
    opened: list[str] = []
    source = zip_source({f"x{i:03}.xml": "<other/>" for i in range(MAX_PEEKS * 2)})
    real_open = source.open
    source.open = lambda name: opened.append(name) or real_open(name)
    with pytest.raises(FormatError):
        detect_format(source)
    assert len(opened) == MAX_PEEKS
