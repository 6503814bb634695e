"""Reading COCO: every geometry kept exactly, every problem located by a JSON pointer."""

from __future__ import annotations

import copy
import inspect
import json
from datetime import UTC, datetime

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from marketplace.formats import model
from marketplace.formats.coco import read_coco
from marketplace.formats.model import FormatError

from .builders import image_bytes, zip_source

W, H = 64, 48


def _crowd_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[10:20, 5:30] = 1
    mask[30:35, 40:60] = 1
    return mask


def _uncompressed_rle(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: column-major runs, starting with a run of zeros."""
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return [int(c) for c in counts]


def _compressed(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def _document() -> dict:
    small = np.zeros((H, W), dtype=np.uint8)
    small[0:4, 0:4] = 1
    return {
        "info": {"description": "fixture"},
        "images": [
            {"id": 10, "file_name": "a.jpg", "width": W, "height": H, "license": 1},
            {"id": 11, "file_name": "b.jpg", "width": W, "height": H},
        ],
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": ["nose", "left_eye", "right_eye"],
                "skeleton": [[1, 2], [1, 3]],
            },
            {"id": 3, "name": "car", "supercategory": "vehicle"},
            {"id": 7, "name": "indoor"},
        ],
        "annotations": [
            {
                "id": 100,
                "image_id": 10,
                "category_id": 3,
                "bbox": [0, 0, 10.5, 20],
                "iscrowd": 0,
                "area": 210,
            },
            {
                "id": 101,
                "image_id": 10,
                "category_id": 3,
                "bbox": [10, 10, 20, 10],
                "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20], [40, 30, 50, 30, 45, 40]],
                "iscrowd": 0,
                "attributes": {"occluded": True, "color": "red"},
                "annotator": "ann-7",
                "created_at": "2024-05-01T12:30:00Z",
                "guideline_version": "v1.2",
                "source": "model",
                "model_name": "sam",
                "model_version": "2.1",
                "is_final": False,
            },
            {
                "id": 102,
                "image_id": 11,
                "category_id": 3,
                "segmentation": {"size": [H, W], "counts": _uncompressed_rle(_crowd_mask())},
                "bbox": [5, 10, 55, 25],
                "iscrowd": 1,
            },
            {"id": 103, "image_id": 11, "category_id": 3, "segmentation": _compressed(small), "iscrowd": 1},
            {
                "id": 104,
                "image_id": 11,
                "category_id": 1,
                "bbox": [20, 5, 20, 30],
                "segmentation": [[20, 5, 40, 5, 40, 35, 20, 35]],
                "keypoints": [25, 8, 2, 23, 7, 1, 0, 0, 0],
                "num_keypoints": 2,
                "iscrowd": 0,
            },
            {"id": 105, "image_id": 10, "category_id": 7},
        ],
    }


def _delivery(doc: dict | None = None, *, json_name: str = "annotations/instances_train.json", layout=None):
    files = {json_name: json.dumps(doc if doc is not None else _document(), indent=1)}
    for key in layout or ("images/train/a.jpg", "images/train/b.jpg"):
        files[key] = image_bytes(W, H)
    return zip_source(files)


def _read(doc=None, **kwargs):
    parsed = read_coco(_delivery(doc, **kwargs))
    items = list(parsed.items)
    labels = list(parsed.labels)
    return parsed, items, {label.source_id: label for label in labels}


def _where(parsed) -> list[tuple[str, str]]:
    return [(p.pointer, p.code) for p in parsed.problems]


# -- schema and items ---------------------------------------------------------------------


def test_it_keeps_the_original_category_ids_and_the_one_based_skeleton():
    parsed, _, _ = _read()

    assert [(c.source_id, c.name, c.supercategory) for c in parsed.categories] == [
        (1, "person", "person"),
        (3, "car", "vehicle"),
        (7, "indoor", ""),
    ]
    person = parsed.categories[0]
    assert person.keypoints == ["nose", "left_eye", "right_eye"]
    assert person.skeleton == [[1, 2], [1, 3]]


def test_it_resolves_image_files_under_images_split_and_takes_the_split_from_the_file_name():
    parsed, items, _ = _read()

    assert [(i.key, i.width, i.height, i.split, i.source_id) for i in items] == [
        ("images/train/a.jpg", W, H, "train", 10),
        ("images/train/b.jpg", W, H, "train", 11),
    ]
    assert items[0].source_ref == "annotations/instances_train.json#/images/0"
    assert items[0].attributes == {"license": 1}
    assert parsed.problems == []


def test_it_finds_images_in_a_coco2017_style_split_folder():
    _, items, _ = _read(
        json_name="coco/annotations/person_keypoints_val2017.json",
        layout=("coco/val2017/a.jpg", "coco/val2017/b.jpg"),
    )

    assert [(i.key, i.split) for i in items] == [
        ("coco/val2017/a.jpg", "val2017"),
        ("coco/val2017/b.jpg", "val2017"),
    ]


def test_a_top_level_json_without_a_split_in_its_name_has_the_empty_split():
    _, items, labels = _read(json_name="export.json", layout=("a.jpg", "b.jpg"))

    assert [(i.key, i.split) for i in items] == [("a.jpg", ""), ("b.jpg", "")]
    assert len(labels) == 6


def test_items_and_labels_are_generators():
    parsed = read_coco(_delivery())

    assert inspect.isgenerator(parsed.items)
    assert inspect.isgenerator(parsed.labels)


# -- geometry -----------------------------------------------------------------------------


def test_it_reads_a_box_exactly_as_zero_based_x_y_w_h():
    _, _, labels = _read()

    label = labels[100]
    assert (label.item_key, label.category, label.geometry_type) == ("images/train/a.jpg", "car", model.BBOX)
    assert label.geometry == {"bbox": [0, 0, 10.5, 20]}
    assert label.source_ref == "annotations/instances_train.json#/annotations/0"


def test_a_polygon_annotation_keeps_all_its_rings_and_its_box():
    _, _, labels = _read()

    label = labels[101]
    assert label.geometry_type == model.POLYGON
    assert label.geometry == {
        "bbox": [10, 10, 20, 10],
        "polygons": [[10, 10, 30, 10, 30, 20, 10, 20], [40, 30, 50, 30, 45, 40]],
    }


def test_an_uncompressed_crowd_rle_is_stored_compressed_and_decodes_to_the_original_mask():
    _, _, labels = _read()

    label = labels[102]
    assert label.geometry_type == model.MASK
    assert label.iscrowd is True
    rle = label.geometry["rle"]
    assert isinstance(rle["counts"], str)
    assert rle["size"] == [H, W]
    decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert np.array_equal(decoded, _crowd_mask())
    assert mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}) == 250 + 100
    assert label.geometry["bbox"] == [5, 10, 55, 25]


def test_a_compressed_rle_is_kept_as_given():
    small = np.zeros((H, W), dtype=np.uint8)
    small[0:4, 0:4] = 1
    _, _, labels = _read()

    rle = labels[103].geometry["rle"]
    assert rle == _compressed(small)
    assert mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}) == 16


def test_a_keypoint_annotation_is_a_keypoints_label_that_keeps_its_box_and_polygon():
    _, _, labels = _read()

    label = labels[104]
    assert (label.category, label.geometry_type) == ("person", model.KEYPOINTS)
    assert label.geometry == {
        "bbox": [20, 5, 20, 30],
        "polygons": [[20, 5, 40, 5, 40, 35, 20, 35]],
        "keypoints": [25, 8, 2, 23, 7, 1, 0, 0, 0],
    }


def test_an_annotation_without_geometry_is_an_image_level_classification():
    _, _, labels = _read()

    label = labels[105]
    assert (label.item_key, label.category, label.geometry_type, label.geometry) == (
        "images/train/a.jpg",
        "indoor",
        model.CLASSIFICATION,
        {},
    )


def test_it_reads_cvat_attributes_and_provenance_fields():
    _, _, labels = _read()

    label = labels[101]
    assert label.attributes == {"occluded": True, "color": "red"}
    assert label.is_final is False
    prov = label.provenance
    assert (prov.annotator, prov.guideline_version, prov.source, prov.model_name, prov.model_version) == (
        "ann-7",
        "v1.2",
        "model",
        "sam",
        "2.1",
    )
    assert prov.made_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert labels[100].provenance == model.Provenance()
    assert labels[100].is_final is True


# -- problems -----------------------------------------------------------------------------


def test_it_reports_an_unknown_category_and_an_unknown_image_by_pointer_and_skips_them():
    doc = _document()
    doc["annotations"][0]["category_id"] = 2
    doc["annotations"][5]["image_id"] = 99

    parsed, _, labels = _read(doc)

    assert _where(parsed) == [
        ("/annotations/0/category_id", "unknown_category"),
        ("/annotations/5/image_id", "unknown_image"),
    ]
    assert parsed.problems[0].file == "annotations/instances_train.json"
    assert 100 not in labels and 105 not in labels


def test_it_reports_duplicate_annotation_and_image_ids():
    doc = _document()
    doc["annotations"][3]["id"] = 100
    doc["images"].append({"id": 10, "file_name": "b.jpg", "width": W, "height": H})

    parsed, _, labels = _read(doc)

    assert _where(parsed) == [("/images/2/id", "duplicate_id"), ("/annotations/3/id", "duplicate_id")]
    assert labels[100].geometry == {"bbox": [0, 0, 10.5, 20]}


def test_it_reports_a_box_outside_the_image():
    doc = _document()
    doc["annotations"][0]["bbox"] = [50, 0, 20, 10]

    parsed, _, labels = _read(doc)

    assert _where(parsed) == [("/annotations/0/bbox", "invalid_geometry")]
    assert "outside the 64x48 image" in parsed.problems[0].message
    assert 100 not in labels


def test_it_reports_the_ring_of_a_degenerate_polygon():
    doc = _document()
    doc["annotations"][1]["segmentation"][1] = [40, 30, 50, 30]

    parsed, _, _ = _read(doc)

    assert _where(parsed) == [("/annotations/1/segmentation/1", "invalid_geometry")]


def test_it_reports_num_keypoints_that_disagrees_with_the_visibility_flags_but_keeps_the_label():
    doc = _document()
    doc["annotations"][4]["num_keypoints"] = 3

    parsed, _, labels = _read(doc)

    assert _where(parsed) == [("/annotations/4/num_keypoints", "inconsistent")]
    assert labels[104].geometry["keypoints"] == [25, 8, 2, 23, 7, 1, 0, 0, 0]


def test_it_reports_keypoints_that_do_not_match_the_category():
    doc = _document()
    doc["annotations"][4]["keypoints"] = [25, 8, 2]

    parsed, _, _ = _read(doc)

    assert _where(parsed) == [("/annotations/4/keypoints", "invalid")]


def test_it_reports_rle_counts_that_do_not_cover_the_image():
    doc = _document()
    doc["annotations"][2]["segmentation"]["counts"] = [10, 20]
    doc["annotations"][3]["segmentation"]["counts"] = "not an rle"

    parsed, _, _ = _read(doc)

    assert _where(parsed) == [
        ("/annotations/2/segmentation/counts", "invalid_geometry"),
        ("/annotations/3/segmentation/counts", "invalid_geometry"),
    ]


def test_it_reports_an_image_file_missing_from_the_delivery():
    parsed, items, labels = _read(layout=("images/train/a.jpg",))

    assert _where(parsed) == [("/images/1/file_name", "missing_file")]
    assert [i.key for i in items] == ["images/train/a.jpg"]
    assert sorted(labels) == [100, 101, 105]


def test_it_reports_bad_provenance_and_still_yields_the_label():
    doc = _document()
    doc["annotations"][0].update(created_at="yesterday", source="robot", is_final="yes")

    parsed, _, labels = _read(doc)

    assert _where(parsed) == [
        ("/annotations/0/is_final", "invalid"),
        ("/annotations/0/created_at", "invalid"),
        ("/annotations/0/source", "invalid"),
    ]
    assert labels[100].provenance.made_at is None


def test_it_refuses_invalid_json_with_its_line():
    source = zip_source({"annotations/instances_train.json": '{\n  "images": [,\n]}'})

    with pytest.raises(FormatError) as caught:
        read_coco(source)

    problem = caught.value.problems[0]
    assert (problem.file, problem.line, problem.code) == (
        "annotations/instances_train.json",
        2,
        "invalid_json",
    )


def test_it_collects_every_problem_up_to_a_cap_of_one_thousand():
    doc = _document()
    template = doc["annotations"][0]
    doc["annotations"] = [dict(copy.deepcopy(template), id=i, category_id=99) for i in range(1500)]

    parsed, _, labels = _read(doc)

    assert len(parsed.problems) == 1000
    assert parsed.problems[998].pointer == "/annotations/998/category_id"
    assert parsed.problems[-1].code == "too_many_problems"
    assert labels == {}


def test_it_keeps_the_uid_our_own_export_writes_so_a_round_trip_keeps_label_identity():
    doc = _document()
    doc["annotations"][0]["uid"] = "5f0c8f0e-4c1e-4d3a-9a55-5d1f0c3b7a21"
    doc["annotations"][1]["uid"] = 17

    parsed, _, labels = _read(doc)

    uids = {label.source_id: label.uid for label in labels.values()}
    assert uids[doc["annotations"][0]["id"]] == "5f0c8f0e-4c1e-4d3a-9a55-5d1f0c3b7a21"
    assert uids[doc["annotations"][1]["id"]] is None
    assert [(p.pointer, p.code) for p in parsed.problems] == [("/annotations/1/uid", "invalid")]


def test_a_coordinate_past_a_floats_range_is_a_located_refusal_not_a_crash():
    doc = _document()
    doc["annotations"][0]["bbox"] = [10**400, 0, 1, 1]  # json.dumps writes all 401 digits

    parsed, _, labels = _read(doc)

    assert ("/annotations/0/bbox", "invalid_geometry") in _where(parsed)
    assert doc["annotations"][0]["id"] not in labels
