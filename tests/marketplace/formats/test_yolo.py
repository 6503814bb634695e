"""Reading YOLO: normalised rows to pixels, and Ultralytics' own refusals, each at file:line."""

from __future__ import annotations

import inspect

import pytest

from marketplace.formats import model
from marketplace.formats.model import FormatError
from marketplace.formats.yolo import label_key_for, read_yolo

from .builders import image_bytes, zip_source

W, H = 640, 480

DATA_YAML = """\
path: ../datasets/street  # the exporter's disk, not ours
train: images/train
val: images/val
names:
  0: person
  1: car
  2: bicycle
"""


def _delivery(labels: dict[str, str], *, data_yaml: str = DATA_YAML, images=None, extra=None):
    files: dict[str, bytes | str] = {"data.yaml": data_yaml}
    for key in images or ("images/train/a.jpg", "images/train/b.jpg", "images/val/c.jpg"):
        files[key] = image_bytes(W, H)
    files.update(labels)
    files.update(extra or {})
    return zip_source(files)


def _read(labels: dict[str, str], **kwargs):
    parsed = read_yolo(_delivery(labels, **kwargs))
    items = list(parsed.items)
    labels_out = list(parsed.labels)
    return parsed, items, labels_out


def _where(parsed) -> list[tuple[str, int | None, str]]:
    return [(p.file, p.line, p.code) for p in parsed.problems]


# -- layout -------------------------------------------------------------------------------


def test_the_label_of_an_image_replaces_the_last_images_folder_with_labels():
    assert label_key_for("images/train/a.jpg") == "labels/train/a.txt"
    assert label_key_for("ds/images/x/images/val/b.png") == "ds/images/x/labels/val/b.txt"
    assert label_key_for("train/images/c.jpeg") == "train/labels/c.txt"


def test_it_reads_names_as_a_dict_with_their_indices_as_source_ids_and_splits_from_data_yaml():
    parsed, items, _ = _read({"labels/train/a.txt": "0 0.5 0.5 0.25 0.5\n"})

    assert [(c.name, c.source_id) for c in parsed.categories] == [("person", 0), ("car", 1), ("bicycle", 2)]
    assert [(i.key, i.width, i.height, i.split) for i in items] == [
        ("images/train/a.jpg", W, H, "train"),
        ("images/train/b.jpg", W, H, "train"),
        ("images/val/c.jpg", W, H, "val"),
    ]
    assert parsed.format == "yolo"


def test_items_and_labels_are_generators():
    parsed = read_yolo(_delivery({}))

    assert inspect.isgenerator(parsed.items)
    assert inspect.isgenerator(parsed.labels)


def test_it_follows_a_roboflow_style_yaml_whose_paths_climb_out_of_the_delivery():
    data_yaml = "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['person', 'car']\n"
    parsed, items, labels = _read(
        {"train/labels/a.txt": "1 0.5 0.5 0.5 0.5\n"},
        data_yaml=data_yaml,
        images=("train/images/a.jpg", "valid/images/b.jpg"),
    )

    assert [(i.key, i.split) for i in items] == [
        ("train/images/a.jpg", "train"),
        ("valid/images/b.jpg", "val"),
    ]
    assert [(label.item_key, label.category) for label in labels] == [("train/images/a.jpg", "car")]
    assert parsed.problems == []


def test_it_reads_a_split_given_as_a_list_file():
    data_yaml = "train: train.txt\nnames: [person]\n"
    parsed, items, _ = _read(
        {},
        data_yaml=data_yaml,
        images=("images/a.jpg", "images/b.jpg"),
        extra={"train.txt": "./images/a.jpg\n/content/datasets/x/images/b.jpg\n./images/missing.jpg\n"},
    )

    assert [(i.key, i.split) for i in items] == [("images/a.jpg", "train"), ("images/b.jpg", "train")]
    assert _where(parsed) == [("train.txt", 3, "missing_file")]


def test_it_reads_the_darknet_layout_that_cvat_exports():
    files = {
        "obj.names": "person\ncar\n",
        "obj.data": "classes = 2\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n",
        "train.txt": "data/obj_train_data/a.jpg\ndata/obj_train_data/b.jpg\n",
        "obj_train_data/a.jpg": image_bytes(W, H),
        "obj_train_data/a.txt": "1 0.25 0.25 0.5 0.5\n",
        "obj_train_data/b.jpg": image_bytes(W, H),
    }
    parsed = read_yolo(zip_source(files))

    assert parsed.format == "yolo_darknet"
    assert [(c.name, c.source_id) for c in parsed.categories] == [("person", 0), ("car", 1)]
    assert [(i.key, i.split) for i in parsed.items] == [
        ("obj_train_data/a.jpg", "train"),
        ("obj_train_data/b.jpg", "train"),
    ]
    labels = list(parsed.labels)
    assert [(label.category, label.geometry["bbox"]) for label in labels] == [
        ("car", [0.0, 0.0, 320.0, 240.0])
    ]
    assert labels[0].source_ref == "obj_train_data/a.txt:1"
    assert parsed.problems == []


def test_a_delivery_without_data_yaml_or_obj_names_is_refused():
    with pytest.raises(FormatError):
        read_yolo(zip_source({"images/a.jpg": image_bytes(W, H)}))


def test_names_that_disagree_with_nc_are_refused_with_the_yaml_line():
    with pytest.raises(FormatError) as caught:
        read_yolo(_delivery({}, data_yaml="train: images/train\nnames: [a, b]\nnc: 3\n"))

    assert [(p.file, p.line) for p in caught.value.problems] == [("data.yaml", 3)]


# -- rows to pixels -----------------------------------------------------------------------


def test_a_detect_row_becomes_a_pixel_box():
    _, _, labels = _read({"labels/train/a.txt": "1 0.5 0.5 0.25 0.5\n2 0.125 0.25 0.25 0.5\n"})

    assert [(label.category, label.geometry_type, label.geometry) for label in labels] == [
        ("car", model.BBOX, {"bbox": [240.0, 120.0, 160.0, 240.0]}),
        ("bicycle", model.BBOX, {"bbox": [0.0, 0.0, 160.0, 240.0]}),
    ]
    assert (labels[0].item_key, labels[0].source_ref) == ("images/train/a.jpg", "labels/train/a.txt:1")


def test_a_segment_row_becomes_a_pixel_polygon():
    _, _, labels = _read({"labels/train/a.txt": "0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n"})

    assert [(label.geometry_type, label.geometry) for label in labels] == [
        (model.POLYGON, {"polygons": [[160.0, 120.0, 480.0, 120.0, 480.0, 360.0, 160.0, 360.0]]})
    ]


def test_a_pose_row_becomes_a_box_with_pixel_keypoints():
    data_yaml = "train: images/train\nnames: [person]\nkpt_shape: [2, 3]\nflip_idx: [1, 0]\n"
    parsed, _, labels = _read(
        {"labels/train/a.txt": "0 0.5 0.5 0.5 0.5 0.25 0.5 2 0 0 0\n"}, data_yaml=data_yaml
    )

    assert parsed.categories[0].keypoints == ["0", "1"]
    assert [(label.geometry_type, label.geometry) for label in labels] == [
        (model.KEYPOINTS, {"bbox": [160.0, 120.0, 320.0, 240.0], "keypoints": [160.0, 240.0, 2, 0.0, 0.0, 0]})
    ]


def test_two_dimensional_keypoints_are_visible_unless_negative():
    data_yaml = "train: images/train\nnames: [person]\nkpt_shape: [2, 2]\n"
    _, _, labels = _read(
        {"labels/train/a.txt": "0 0.5 0.5 0.5 0.5 0.25 0.5 -0.005 0.5\n"}, data_yaml=data_yaml
    )

    assert labels[0].geometry["keypoints"] == [160.0, 240.0, 2, 0.0, 240.0, 0]


def test_it_uses_the_image_size_callable_instead_of_opening_images():
    parsed = read_yolo(
        _delivery({"labels/train/a.txt": "0 0.5 0.5 0.5 0.5\n"}), image_size=lambda key: (100, 50)
    )

    assert next(parsed.labels).geometry == {"bbox": [25.0, 12.5, 50.0, 25.0]}


def test_the_default_image_size_applies_the_jpeg_exif_rotation_as_ultralytics_does():
    files = {
        "data.yaml": "train: images/train\nnames: [a]\n",
        "images/train/a.jpg": image_bytes(W, H, exif_orientation=6),
    }

    (item,) = read_yolo(zip_source(files)).items

    assert (item.width, item.height) == (H, W)


def test_a_box_inside_the_one_percent_tolerance_is_clipped_without_complaint():
    parsed, _, labels = _read({"labels/train/a.txt": "0 0.5 0.5 1.001 1.001\n"})

    assert labels[0].geometry == {"bbox": [0.0, 0.0, 640.0, 480.0]}
    assert parsed.problems == []


def test_a_box_hanging_off_the_image_is_clipped_to_it_with_a_warning():
    parsed, _, labels = _read({"labels/train/a.txt": "0 0.95 0.5 0.5 0.5\n"})

    assert labels[0].geometry == {"bbox": [448.0, 120.0, 192.0, 240.0]}
    assert _where(parsed) == [("labels/train/a.txt", 1, "clipped")]


def test_a_yaml_that_asks_to_construct_python_objects_is_refused():
    hostile = "train: images/train\nnames: !!python/object/apply:os.system ['echo pwned']\n"

    with pytest.raises(FormatError) as caught:
        read_yolo(_delivery({}, data_yaml=hostile))

    assert [(p.file, p.line) for p in caught.value.problems] == [("data.yaml", 2)]


# -- Ultralytics' refusals, each at file:line ---------------------------------------------


def test_it_rejects_a_class_index_beyond_nc():
    parsed, _, labels = _read({"labels/train/a.txt": "0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n"})

    assert _where(parsed) == [("labels/train/a.txt", 2, "invalid")]
    assert "exceeds the dataset's class count 3" in parsed.problems[0].message
    assert len(labels) == 1


def test_it_rejects_coordinates_above_one_and_negative_values():
    rows = "0 1.02 0.5 0.1 0.1\n0 0.5 -0.02 0.1 0.1\n-1 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1\n"
    parsed, _, labels = _read({"labels/train/a.txt": rows})

    assert _where(parsed) == [
        ("labels/train/a.txt", 1, "invalid"),
        ("labels/train/a.txt", 2, "invalid"),
        ("labels/train/a.txt", 3, "invalid"),
    ]
    assert "non-normalized or out of bounds" in parsed.problems[0].message
    assert len(labels) == 1


def test_it_rejects_wrong_column_counts():
    parsed, _, _ = _read({"labels/train/a.txt": "0 0.5 0.5 0.1\n\n0 0.5 0.5 0.1 0.1 0.2\n"})

    assert _where(parsed) == [("labels/train/a.txt", 1, "invalid"), ("labels/train/a.txt", 3, "invalid")]


def test_it_rejects_pose_rows_with_the_wrong_number_of_keypoint_values():
    data_yaml = "train: images/train\nnames: [person]\nkpt_shape: [2, 3]\n"
    parsed, _, _ = _read({"labels/train/a.txt": "0 0.5 0.5 0.5 0.5 0.25 0.5 2\n"}, data_yaml=data_yaml)

    assert _where(parsed) == [("labels/train/a.txt", 1, "invalid")]
    assert "need 11 columns" in parsed.problems[0].message


def test_box_rows_mixed_into_a_file_of_segments_are_read_as_boxes_with_a_warning():
    rows = "0 0.1 0.1 0.2 0.1 0.2 0.2\n1 0.5 0.5 0.1 0.1\n0 0.1 0.1 0.2\n1 0.25 0.25 0.5 0.5\n"
    parsed, _, labels = _read({"labels/train/a.txt": rows})

    # One warning for every mixed row (counted, the first located), after the row problems.
    assert _where(parsed) == [("labels/train/a.txt", 3, "invalid"), ("labels/train/a.txt", 2, "mixed_rows")]
    assert "2 times" in parsed.problems[1].message
    assert [label.geometry_type for label in labels] == [model.POLYGON, model.BBOX, model.BBOX]
    assert labels[1].geometry == {"bbox": [0.45 * W, 0.45 * H, 0.1 * W, 0.1 * H]}


def test_obb_and_segment_rows_are_range_checked_on_the_box_they_span_as_ultralytics_does():
    # Ultralytics' verify_image_label turns segment/OBB rows into boxes before its 0..1 check, so
    # points slightly outside the frame pass (its OBB sample data has some); they are clamped here.
    rows = (
        "0 -0.02 0.1 0.5 0.1 0.5 0.4 -0.02 0.4\n"  # a point 2% left of the frame: its box is inside
        "1 0.9 0.1 1.5 0.1 1.5 0.4 0.9 0.4\n"  # its box's centre is beyond 1.01: refused
    )
    parsed, _, labels = _read({"labels/train/a.txt": rows})

    assert _where(parsed) == [("labels/train/a.txt", 1, "clipped"), ("labels/train/a.txt", 2, "invalid")]
    assert labels[0].geometry == {
        "polygons": [[0.0, 0.1 * H, 0.5 * W, 0.1 * H, 0.5 * W, 0.4 * H, 0.0, 0.4 * H]]
    }


def test_it_drops_duplicate_rows_with_a_warning():
    rows = "0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1\n"
    parsed, _, labels = _read({"labels/train/a.txt": rows})

    assert _where(parsed) == [("labels/train/a.txt", 3, "duplicate_row")]
    assert parsed.problems[0].message == "duplicate of line 1; dropped"
    assert [label.source_ref for label in labels] == ["labels/train/a.txt:1", "labels/train/a.txt:2"]


def test_it_rejects_text_that_is_not_a_number():
    parsed, _, _ = _read({"labels/train/a.txt": "car 0.5 0.5 0.1 0.1\n0 nan 0.5 0.1 0.1\n"})

    assert _where(parsed) == [("labels/train/a.txt", 1, "invalid"), ("labels/train/a.txt", 2, "invalid")]


def test_it_rejects_an_image_smaller_than_ten_pixels_with_its_labels():
    parsed = read_yolo(
        _delivery({"labels/train/a.txt": "0 0.5 0.5 0.1 0.1\n"}),
        image_size=lambda key: (9, 9) if key.endswith("a.jpg") else (W, H),
    )

    assert [i.key for i in parsed.items] == ["images/train/b.jpg", "images/val/c.jpg"]
    assert list(parsed.labels) == []
    assert _where(parsed) == [("images/train/a.jpg", None, "bad_image")]


def test_an_unreadable_image_is_reported_once():
    parsed = read_yolo(
        _delivery({"labels/train/a.txt": "0 0.5 0.5 0.1 0.1\n"}, extra={"images/train/a.jpg": b"not a jpeg"})
    )
    list(parsed.items), list(parsed.labels)

    assert _where(parsed) == [("images/train/a.jpg", None, "bad_image")]


def test_a_label_file_without_an_image_is_reported():
    parsed, _, _ = _read({"labels/train/zzz.txt": "0 0.5 0.5 0.1 0.1\n"})

    assert _where(parsed) == [("labels/train/zzz.txt", None, "orphan_label")]
