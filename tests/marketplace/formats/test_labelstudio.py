"""Label Studio JSON exports: the peer fixture from label-studio-converter, then synthetic tasks."""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from marketplace.formats import labelstudio, model
from marketplace.formats.archive import DirectorySource
from marketplace.formats.labelstudio import read_labelstudio

FIXTURES = Path("/work/shared/fixtures/labelstudio")
EXPORT = FIXTURES / "rectangles-export.json"
CONFIG = FIXTURES / "rectangles-label-config.xml"


def _read(root: Path) -> tuple[model.Parsed, list[model.ItemRecord], list[model.LabelRecord]]:
    parsed = read_labelstudio(DirectorySource(root))
    items = list(parsed.items)
    labels = list(parsed.labels)
    return parsed, items, labels


def _image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (width, height)).save(path)


@pytest.fixture
def peer_delivery(tmp_path):
    """The label-studio-converter export as delivered: JSON, config, and images of the sizes it names."""
    shutil.copy(EXPORT, tmp_path / "export.json")
    shutil.copy(CONFIG, tmp_path / "label_config.xml")
    for task in json.loads(EXPORT.read_text()):
        result = task["annotations"][0]["result"][0]
        name = task["data"]["image"].lstrip("/")  # "/image1" -> images/image1.png
        _image(tmp_path / "images" / f"{name}.png", result["original_width"], result["original_height"])
    return tmp_path


# --- the peer fixture -------------------------------------------------------------------------


def test_the_peer_export_reads_without_a_problem(peer_delivery):
    parsed, items, labels = _read(peer_delivery)

    assert parsed.problems == []
    assert [(i.key, i.width, i.height, i.source_id) for i in items] == [
        ("images/image1.png", 2800, 2800, 1),
        ("images/image2.png", 2800, 2800, 2),
    ]
    assert len(labels) == 6


def test_percentages_become_the_exact_pixel_boxes_of_the_file(peer_delivery):
    _, _, labels = _read(peer_delivery)

    export = json.loads(EXPORT.read_text())
    expected = {}
    for task in export:
        for annotation in task["annotations"]:
            for result in annotation["result"]:
                v, w, h = result["value"], result["original_width"], result["original_height"]
                expected[f"{annotation['id']}:{result['id']}"] = [
                    v["x"] * w / 100,
                    v["y"] * h / 100,
                    v["width"] * w / 100,
                    v["height"] * h / 100,
                ]
    assert {label.uid: label.geometry["bbox"] for label in labels} == expected
    # and by hand, for the first box: 37.158...% of 2800 px
    first = next(label for label in labels if label.uid == "1:C7oHaRDVVC")
    assert first.geometry["bbox"] == pytest.approx([1040.4372, 1978.8707, 117.3042, 132.6047], abs=1e-4)
    assert first.category == "parasites"


def test_both_annotators_of_the_first_task_are_kept_as_candidates(peer_delivery):
    _, _, labels = _read(peer_delivery)

    first_task = [label for label in labels if label.item_key == "images/image1.png"]
    assert len(first_task) == 4
    assert not any(label.is_final for label in first_task)
    by_annotator = {}
    for label in first_task:
        by_annotator.setdefault(label.provenance.annotator, []).append(label)
    assert sorted(by_annotator) == ["ls-user-1", "ls-user-2"]
    assert {label.provenance.made_at for label in by_annotator["ls-user-2"]} == {
        datetime(2022, 12, 27, 13, 36, 25, 747398, tzinfo=UTC)
    }
    assert {label.provenance.made_at for label in by_annotator["ls-user-1"]} == {
        datetime(2022, 12, 27, 13, 37, 15, 43317, tzinfo=UTC)
    }
    assert {label.provenance.updated_at for label in by_annotator["ls-user-1"]} == {
        datetime(2022, 12, 27, 21, 5, 3, 127871, tzinfo=UTC)
    }
    assert all(label.provenance.source == model.HUMAN for label in first_task)
    assert by_annotator["ls-user-2"][0].attributes["lead_time"] == 1235.418


def test_the_single_annotation_of_the_second_task_is_final(peer_delivery):
    _, _, labels = _read(peer_delivery)

    second = [label for label in labels if label.item_key == "images/image2.png"]
    assert len(second) == 2
    assert all(label.is_final for label in second)
    assert {label.provenance.annotator for label in second} == {"ls-user-1"}
    assert second[0].source_ref == "export.json#/1/annotations/0/result/0"


def test_categories_come_from_the_label_config(peer_delivery):
    parsed, _, _ = _read(peer_delivery)

    assert [(c.name, c.geometry_types, c.color) for c in parsed.categories] == [
        ("parasites", [model.BBOX], "rgba(218, 1, 238, 1)"),
        ("white", [model.BBOX], "rgba(0, 255, 0, 1)"),
    ]


def test_without_a_label_config_categories_come_from_the_results(peer_delivery):
    (peer_delivery / "label_config.xml").unlink()
    parsed, _, labels = _read(peer_delivery)

    assert [c.name for c in parsed.categories] == ["parasites", "white"]
    assert parsed.problems == []
    assert len(labels) == 6


# --- synthetic tasks --------------------------------------------------------------------------

W, H = 200, 100


def _result(kind: str, value: dict, rid: str = "r1", **extra) -> dict:
    return {
        "id": rid,
        "type": kind,
        "from_name": "tag",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": value,
        **extra,
    }


def _annotation(aid: int, results: list, user=5, **extra) -> dict:
    return {
        "id": aid,
        "completed_by": user,
        "result": results,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": "2024-03-01T10:00:00.000000Z",
        "updated_at": "2024-03-01T10:05:00.000000Z",
        "lead_time": 12.5,
        **extra,
    }


def _task(tid: int, image: str, annotations: list, predictions: list | None = None) -> dict:
    return {"id": tid, "data": {"image": image}, "annotations": annotations, "predictions": predictions or []}


def _deliver(tmp_path: Path, tasks, images=("images/a.jpg",), config: str | None = None) -> Path:
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    for name in images:
        _image(tmp_path / name, W, H)
    if config is not None:
        (tmp_path / "label_config.xml").write_text(config)
    return tmp_path


def _one(tmp_path: Path, result: dict) -> model.LabelRecord:
    root = _deliver(tmp_path, [_task(1, "/data/upload/1/a.jpg", [_annotation(10, [result])])])
    parsed, _, labels = _read(root)
    assert parsed.problems == []
    assert len(labels) == 1
    return labels[0]


def test_a_polygon_in_percent_becomes_pixels(tmp_path):
    value = {"points": [[10, 20], [50, 20], [30, 80]], "closed": True, "polygonlabels": ["road"]}
    label = _one(tmp_path, _result("polygonlabels", value))

    assert label.geometry_type == model.POLYGON
    assert label.geometry == {"polygons": [[20.0, 20.0, 100.0, 20.0, 60.0, 80.0]]}
    assert label.category == "road"
    assert label.uid == label.source_id == "10:r1"
    assert label.is_final


def test_a_keypoint_becomes_a_keypoints_label_with_one_visible_point(tmp_path):
    value = {"x": 25, "y": 50, "width": 0.5, "keypointlabels": ["nose"]}
    label = _one(tmp_path, _result("keypointlabels", value))

    assert label.geometry_type == model.KEYPOINTS
    assert label.geometry == {"keypoints": [50.0, 50.0, 2]}


def test_each_choice_becomes_a_classification(tmp_path):
    root = _deliver(
        tmp_path,
        [
            _task(
                1,
                "/data/upload/1/a.jpg",
                [_annotation(10, [_result("choices", {"choices": ["day", "urban"]})])],
            )
        ],
    )
    _, _, labels = _read(root)

    assert [(label.category, label.geometry_type, label.geometry) for label in labels] == [
        ("day", model.CLASSIFICATION, {}),
        ("urban", model.CLASSIFICATION, {}),
    ]
    assert [label.uid for label in labels] == ["10:r1#0", "10:r1#1"]


def test_an_unrotated_rectangle_is_a_bbox(tmp_path):
    value = {"x": 10, "y": 20, "width": 20, "height": 10, "rotation": 0, "rectanglelabels": ["car"]}
    label = _one(tmp_path, _result("rectanglelabels", value))

    assert label.geometry == {"bbox": [20.0, 20.0, 40.0, 10.0]}


def test_a_rotated_rectangle_turns_clockwise_about_its_top_left_corner(tmp_path):
    value = {"x": 10, "y": 20, "width": 20, "height": 10, "rotation": 90, "rectanglelabels": ["car"]}
    label = _one(tmp_path, _result("rectanglelabels", value))

    assert label.geometry_type == model.POLYGON
    # a 40x10 px box at (20, 20); a quarter turn clockwise (y down) about (20, 20):
    # its top edge now points down, its height now points left.
    assert label.geometry["polygons"][0] == pytest.approx([20, 20, 20, 60, 10, 60, 10, 20])
    assert label.attributes["rotation"] == 90


def test_a_rotated_rectangle_at_30_degrees_keeps_its_size(tmp_path):
    value = {"x": 30, "y": 30, "width": 20, "height": 20, "rotation": 30, "rectanglelabels": ["car"]}
    label = _one(tmp_path, _result("rectanglelabels", value))

    ring = label.geometry["polygons"][0]
    side = math.dist(ring[0:2], ring[2:4])
    assert side == pytest.approx(40.0)  # 20% of 200 px
    assert ring[2:4] == pytest.approx(
        [60 + 40 * math.cos(math.radians(30)), 30 + 40 * math.sin(math.radians(30))]
    )
    assert model.polygon_area(ring) == pytest.approx(40 * 20)


def encode_brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of a binary mask: the inverse of the reader's decoder.

    Every pixel becomes four equal RGBA bytes (0 or 255), as label-studio-converter's
    ``mask2rle`` does; runs longer than one are written as repeat groups, and stretches of
    single values as literal groups, so both kinds are exercised.
    """
    values = np.repeat(mask.ravel().astype(np.uint8) * 255, 4).tolist()
    sizes = (3, 4, 8, 16)
    bits = [f"{len(values):032b}", f"{8 - 1:05b}", *(f"{s - 1:04b}" for s in sizes)]

    def group(repeat: bool, words: list[int]) -> None:
        n = len(words) if not repeat else words[1]
        index = next(i for i, s in enumerate(sizes) if n - 1 < 2**s)
        head = f"{int(repeat)}{index:02b}{n - 1:0{sizes[index]}b}"
        body = f"{words[0]:08b}" if repeat else "".join(f"{w:08b}" for w in words)
        bits.append(head + body)

    runs = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1][1] += 1
        else:
            runs.append([v, 1])
    literal: list[int] = []
    for v, n in runs:
        if n == 1:
            literal.append(v)
            if len(literal) == 8:
                group(False, literal)
                literal = []
            continue
        if literal:
            group(False, literal)
            literal = []
        while n > 0:
            chunk = min(n, 2**16)
            group(True, [v, chunk])
            n -= chunk
    if literal:
        group(False, literal)
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return [int(stream[i : i + 8], 2) for i in range(0, len(stream), 8)]


def test_the_test_encoder_is_the_inverse_of_the_decoder():
    mask = (np.random.default_rng(7).random((13, 17)) > 0.5).astype(np.uint8)

    assert np.array_equal(labelstudio.decode_brush_rle(encode_brush_rle(mask), width=17, height=13), mask)


def test_a_brush_mask_becomes_a_coco_rle_with_the_same_pixels(tmp_path):
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[10:40, 30:90] = 1
    mask[50, 100:180] = 1
    mask[60:63, 5] = 1
    value = {"format": "rle", "rle": encode_brush_rle(mask), "brushlabels": ["sky"]}
    label = _one(tmp_path, _result("brushlabels", value))

    assert label.geometry_type == model.MASK
    rle = label.geometry["rle"]
    assert rle["size"] == [H, W]
    assert isinstance(rle["counts"], str)
    decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert np.array_equal(decoded, mask)


def test_a_brush_rle_for_another_image_size_is_a_problem(tmp_path):
    value = {
        "format": "rle",
        "rle": encode_brush_rle(np.ones((5, 5), dtype=np.uint8)),
        "brushlabels": ["sky"],
    }
    root = _deliver(tmp_path, [_task(1, "/a.jpg", [_annotation(10, [_result("brushlabels", value)])])])
    parsed, _, labels = _read(root)

    assert labels == []
    assert [(p.code, p.pointer) for p in parsed.problems] == [
        ("invalid", "/0/annotations/0/result/0/value/rle")
    ]
    assert "RGBA image has 80000" in parsed.problems[0].message


def test_predictions_are_model_candidates_and_accepted_predictions_keep_their_model(tmp_path):
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    prediction = {
        "id": 77,
        "model_version": "yolo-2024-02",
        "score": 0.91,
        "result": [_result("rectanglelabels", box)],
    }
    accepted = _annotation(10, [_result("rectanglelabels", box, origin="prediction")], parent_prediction=77)
    root = _deliver(tmp_path, [_task(1, "/a.jpg", [accepted], [prediction])])
    parsed, _, labels = _read(root)

    # Label Studio names a prediction's model by model_version only: model_name is taken from it,
    # with a warning that says so.
    assert [(p.code, p.pointer) for p in parsed.problems] == [
        ("model_name_from_version", "/0/predictions/0/model_version")
    ]
    annotation_label, prediction_label = labels
    assert prediction_label.provenance.model_name == "yolo-2024-02"
    assert prediction_label.is_final is False
    assert prediction_label.uid == "prediction-77:r1"
    assert prediction_label.provenance.source == model.MODEL
    assert prediction_label.provenance.model_version == "yolo-2024-02"
    assert prediction_label.provenance.annotator is None
    assert prediction_label.attributes["score"] == 0.91
    assert annotation_label.is_final is True
    assert annotation_label.provenance.source == model.MODEL
    assert annotation_label.provenance.model_version == "yolo-2024-02"
    assert annotation_label.provenance.annotator == "ls-user-5"


def test_the_ground_truth_annotation_is_final_and_the_others_candidates(tmp_path):
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    annotations = [
        _annotation(1, [_result("rectanglelabels", box)], user=5),
        _annotation(2, [_result("rectanglelabels", box)], user=6, ground_truth=True),
        _annotation(3, [_result("rectanglelabels", box)], user=7),
    ]
    root = _deliver(tmp_path, [_task(1, "/a.jpg", annotations)])
    _, _, labels = _read(root)

    assert [(label.provenance.annotator, label.is_final) for label in labels] == [
        ("ls-user-5", False),
        ("ls-user-6", True),
        ("ls-user-7", False),
    ]
    assert labels[1].attributes["ground_truth"] is True


def test_a_cancelled_annotation_is_skipped_and_leaves_the_other_one_final(tmp_path):
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    annotations = [
        _annotation(1, [_result("rectanglelabels", box)], user=5, was_cancelled=True),
        _annotation(2, [_result("rectanglelabels", box)], user=6),
    ]
    root = _deliver(tmp_path, [_task(1, "/a.jpg", annotations)])
    parsed, _, labels = _read(root)

    assert [(p.code, p.pointer) for p in parsed.problems] == [("skipped_cancelled", "/0/annotations/0")]
    assert [(label.provenance.annotator, label.is_final) for label in labels] == [("ls-user-6", True)]


def test_a_user_object_becomes_a_pseudonym_and_its_email_is_never_kept(tmp_path):
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    user = {"id": 42, "email": "jane.doe@example.com", "first_name": "Jane", "last_name": "Doe"}
    root = _deliver(
        tmp_path, [_task(1, "/a.jpg", [_annotation(1, [_result("rectanglelabels", box)], user=user)])]
    )
    _, _, labels = _read(root)

    assert labels[0].provenance.annotator == "ls-user-42"
    assert "example.com" not in repr(labels)
    assert "Jane" not in repr(labels)


def test_a_bad_coordinate_is_a_problem_at_its_json_pointer(tmp_path):
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    bad = dict(box, x="ten")
    annotations = [
        _annotation(1, [_result("rectanglelabels", box)]),
        _annotation(
            2,
            [
                _result("rectanglelabels", box, rid="a"),
                _result("rectanglelabels", box, rid="b"),
                _result("rectanglelabels", bad, rid="c"),
            ],
        ),
    ]
    root = _deliver(tmp_path, [_task(1, "/a.jpg", annotations)])
    parsed, _, labels = _read(root)

    assert [p.pointer for p in parsed.problems] == ["/0/annotations/1/result/2/value/x"]
    assert (
        str(parsed.problems[0]) == "export.json#/0/annotations/1/result/2/value/x: value.x must be a number"
    )
    assert len(labels) == 3


def test_a_box_outside_the_image_is_a_problem(tmp_path):
    box = {"x": 90, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    root = _deliver(tmp_path, [_task(1, "/a.jpg", [_annotation(1, [_result("rectanglelabels", box)])])])
    parsed, _, labels = _read(root)

    assert labels == []
    assert [(p.code, p.pointer) for p in parsed.problems] == [
        ("invalid_geometry", "/0/annotations/0/result/0/value")
    ]


def test_a_label_missing_from_the_config_is_a_problem(tmp_path):
    config = '<View><Image name="image" value="$image"/><RectangleLabels name="tag" toName="image">'
    config += '<Label value="car"/></RectangleLabels></View>'
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["bus"]}
    root = _deliver(
        tmp_path, [_task(1, "/a.jpg", [_annotation(1, [_result("rectanglelabels", box)])])], config=config
    )
    parsed, _, labels = _read(root)

    assert [c.name for c in parsed.categories] == ["car"]
    assert labels == []
    assert [(p.code, p.pointer) for p in parsed.problems] == [
        ("unknown_label", "/0/annotations/0/result/0/value/rectanglelabels/0")
    ]


def test_an_entity_bomb_in_the_label_config_is_refused(tmp_path):
    config = '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    config += '<View><Labels name="l" toName="image"><Label value="&b;"/></Labels></View>'
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    root = _deliver(
        tmp_path, [_task(1, "/a.jpg", [_annotation(1, [_result("rectanglelabels", box)])])], config=config
    )
    parsed, _, labels = _read(root)

    assert [p.code for p in parsed.problems] == ["unsafe_xml"]
    assert [c.name for c in parsed.categories] == ["car"]  # taken from the results instead
    assert len(labels) == 1


def test_image_references_are_found_by_basename_then_path_suffix(tmp_path):
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    tasks = [
        _task(1, "/data/upload/3/3f2a1b9c-street.jpg", [_annotation(1, [_result("rectanglelabels", box)])]),
        _task(2, "s3://bucket/night/cam1.jpg", [_annotation(2, [_result("rectanglelabels", box)])]),
        _task(3, "/data/local-files/?d=day/cam1.jpg", [_annotation(3, [_result("rectanglelabels", box)])]),
        _task(4, "https://cdn.example.com/img/photo%201.png?sig=x", [_annotation(4, [])]),
    ]
    images = ("images/street.jpg", "images/night/cam1.jpg", "images/day/cam1.jpg", "images/photo 1.png")
    root = _deliver(tmp_path, tasks, images=images)
    parsed, items, labels = _read(root)

    assert parsed.problems == []
    assert [i.key for i in items] == list(images)
    assert [i.width for i in items] == [W, W, W, None]  # task 4 has no result to give a size
    assert [label.item_key for label in labels] == list(images[:3])


def test_a_missing_image_is_a_problem_and_its_task_is_skipped(tmp_path):
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    tasks = [
        _task(1, "/data/upload/1/gone.jpg", [_annotation(1, [_result("rectanglelabels", box)])]),
        _task(2, "/a.jpg", [_annotation(2, [_result("rectanglelabels", box)])]),
    ]
    root = _deliver(tmp_path, tasks)
    parsed, items, labels = _read(root)

    assert [(p.code, p.pointer) for p in parsed.problems] == [("missing_image", "/0/data/image")]
    assert [i.key for i in items] == ["images/a.jpg"]
    assert [label.item_key for label in labels] == ["images/a.jpg"]


def test_unsupported_result_types_are_reported_and_skipped(tmp_path):
    results = [
        _result("textarea", {"text": ["looks fine"]}),
        _result("choices", {"choices": ["day"]}, rid="r2"),
    ]
    root = _deliver(tmp_path, [_task(1, "/a.jpg", [_annotation(1, results)])])
    parsed, _, labels = _read(root)

    assert [(p.code, p.pointer) for p in parsed.problems] == [
        ("unsupported_result", "/0/annotations/0/result/0/type")
    ]
    assert [label.category for label in labels] == ["day"]


def test_tasks_straddling_read_chunks_are_read_and_trailing_garbage_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(labelstudio, "READ_CHUNK", 64)
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    tasks = [
        _task(i, "/a.jpg", [_annotation(i, [_result("rectanglelabels", box, rid=f"r{i}")])])
        for i in range(40)
    ]
    text = json.dumps(tasks, indent=1) + "\n{oops"
    _deliver(tmp_path, [])
    (tmp_path / "export.json").write_text(text)
    parsed, _, labels = _read(tmp_path)

    assert len(labels) == 40
    assert [label.uid for label in labels[:2]] == ["0:r0", "1:r1"]
    garbage = [p for p in parsed.problems if p.code == "json_syntax"]
    assert len(garbage) == 1
    assert garbage[0].line == text.count("\n") + 1


def test_broken_json_is_a_problem_with_its_line(tmp_path):
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    good = json.dumps(_task(1, "/a.jpg", [_annotation(1, [_result("rectanglelabels", box)])]))
    _deliver(tmp_path, [])
    (tmp_path / "export.json").write_text(f'[\n{good},\n{{"id": 2, "data": }}\n]')
    parsed, _, labels = _read(tmp_path)

    assert len(labels) == 1
    assert [(p.code, p.line) for p in parsed.problems] == [("json_syntax", 3)]


def test_an_export_that_is_not_a_list_is_a_problem(tmp_path):
    _deliver(tmp_path, {"tasks": []})
    parsed, items, labels = _read(tmp_path)

    assert (items, labels) == ([], [])
    assert [p.code for p in parsed.problems] == ["json_syntax"]


def test_json_values_of_the_wrong_type_are_problems_not_crashes(tmp_path):
    box = {"x": 10, "y": 20, "width": 20, "height": 10, "rectanglelabels": ["car"]}
    results = [
        _result(["rectanglelabels"], box),
        _result("rectanglelabels", box, rid="r2", origin={"kind": "manual"}),
    ]
    annotation = _annotation(1, results, user=[5], parent_prediction=[1])
    root = _deliver(tmp_path, [_task(1, "/a.jpg", [annotation], [{"id": [], "result": "none"}])])
    parsed, _, labels = _read(root)

    assert [label.uid for label in labels] == ["1:r2"]
    assert labels[0].provenance.source == model.HUMAN
    assert labels[0].provenance.annotator is None
    assert {p.code for p in parsed.problems} == {"unsupported_result", "unknown_origin", "invalid"}


def test_predictions_naming_their_model_by_version_only_are_one_counted_warning(tmp_path):
    import json as _json

    from marketplace.formats.archive import DirectorySource
    from marketplace.formats.labelstudio import read_labelstudio as _read

    from .builders import image_bytes

    result = {
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": 40,
        "original_height": 30,
        "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["car"]},
    }
    tasks = [
        {
            "id": i,
            "data": {"image": f"/data/upload/1/{i}.jpg"},
            "predictions": [{"model_version": f"yolo-v{i}", "result": [dict(result, id=f"r{i}")]}],
        }
        for i in range(3)
    ]
    (tmp_path / "export.json").write_text(_json.dumps(tasks))
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(image_bytes(40, 30))
    parsed = _read(DirectorySource(tmp_path))
    labels = list(parsed.labels)

    assert [lab.provenance.model_name for lab in labels] == ["yolo-v0", "yolo-v1", "yolo-v2"]
    warnings = [p for p in parsed.problems if p.code == "model_name_from_version"]
    assert len(warnings) == 1
    assert warnings[0].pointer == "/0/predictions/0/model_version"
    assert "3 times; the first is located here" in warnings[0].message
