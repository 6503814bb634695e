"""YOLO as LabelImg, Label Studio, Roboflow and DOTA write it (issue #17)."""

from __future__ import annotations

from marketplace.formats import model
from marketplace.formats.yolo import read_yolo

from .builders import image_bytes, zip_source

W, H = 64, 48


def _read(files):
    parsed = read_yolo(zip_source(files))
    items, labels = list(parsed.items), list(parsed.labels)
    return parsed, items, labels


def _where(parsed):
    return [(p.file, p.line, p.code) for p in parsed.problems]


def test_labelimg_writes_classes_txt_and_each_label_beside_its_image():
    files = {
        "classes.txt": "dog\ncat\n",
        "a.jpg": image_bytes(W, H),
        "a.txt": "1 0.5 0.5 0.5 0.5\n",
        "b.png": image_bytes(W, H),  # an image without labels
    }
    parsed, items, labels = _read(files)

    assert _where(parsed) == []
    assert [c.name for c in parsed.categories] == ["dog", "cat"]
    assert [i.key for i in items] == ["a.jpg", "b.png"]
    assert [(label.category, label.geometry["bbox"]) for label in labels] == [
        ("cat", [16.0, 12.0, 32.0, 24.0])
    ]


def test_label_studio_yolo_export_has_classes_txt_notes_json_images_and_labels():
    files = {
        "classes.txt": "door\nbus\n",
        "notes.json": '{"categories": [{"id": 0, "name": "door"}, {"id": 1, "name": "bus"}]}',
        "images/x.jpg": image_bytes(W, H),
        "labels/x.txt": "0 0.5 0.5 0.25 0.25\n1 0.5 0.5 0.5 0.5\n",
    }
    parsed, items, labels = _read(files)

    assert _where(parsed) == []
    assert [(i.key, i.split) for i in items] == [("images/x.jpg", "")]
    assert [label.category for label in labels] == ["door", "bus"]


def test_darknet_obj_names_with_images_and_labels_folders_as_datumaro_writes_them():
    files = {
        "obj.names": "car\n",
        "images/train/1.jpg": image_bytes(W, H),
        "labels/train/1.txt": "0 0.5 0.5 0.5 0.5\n",
        "images/val/1.jpg": image_bytes(W, H),
        "labels/val/1.txt": "0 0.5 0.5 0.5 0.5\n",
    }
    parsed, items, labels = _read(files)

    assert _where(parsed) == []
    assert [(i.key, i.split) for i in items] == [("images/train/1.jpg", "train"), ("images/val/1.jpg", "val")]
    assert len(labels) == 2


DOTA = "imagesource:GoogleEarth\ngsd:0.146\n10 10 50 10 50 40 10 40 plane 0\n12 12 20 12 20 20 12 20 ship 1\n"


def test_dota_label_txt_gives_polygons_in_pixels_with_difficulty_and_its_own_classes():
    files = {"images/P1.png": image_bytes(W, H), "labelTxt/P1.txt": DOTA}
    parsed, items, labels = _read(files)

    assert _where(parsed) == []
    assert [c.name for c in parsed.categories] == ["plane", "ship"]
    assert [i.key for i in items] == ["images/P1.png"]
    assert [(lab.category, lab.geometry_type, lab.attributes) for lab in labels] == [
        ("plane", model.POLYGON, {"difficult": False}),
        ("ship", model.POLYGON, {"difficult": True}),
    ]
    assert labels[0].geometry == {"polygons": [[10.0, 10.0, 50.0, 10.0, 50.0, 40.0, 10.0, 40.0]]}
    assert labels[0].source_ref == "labelTxt/P1.txt:3"


def test_roboflow_obb_export_is_dota_under_a_data_yaml_and_unknown_classes_are_errors():
    files = {
        "data.yaml": "train: ../train/images\nnc: 1\nnames: ['plane']\n",
        "train/images/a.jpg": image_bytes(W, H),
        "train/labelTxt/a.txt": "10 10 50 10 50 40 10 40 plane 0\n1 1 2 1 2 2 1 2 boat 0\n",
    }
    parsed, items, labels = _read(files)

    assert [i.key for i in items] == ["train/images/a.jpg"]
    assert [lab.category for lab in labels] == ["plane"]
    assert _where(parsed) == [("train/labelTxt/a.txt", 2, "unknown_category")]
