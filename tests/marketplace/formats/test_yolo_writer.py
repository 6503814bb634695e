"""Writing YOLO (Ultralytics): traced mask outlines, joined rings, clipping, pose rows, data.yaml."""

from __future__ import annotations

import io

import numpy as np
import yaml
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from marketplace.formats import model
from marketplace.formats.archive import DirectorySource
from marketplace.formats.model import CategoryDef, ItemRecord, LabelRecord
from marketplace.formats.writing import DirectorySink, Notes, fmt_number
from marketplace.formats.yolo import read_yolo
from marketplace.formats.yolo_writer import choose_task, join_rings, mask_outlines, write_yolo

from .builders import image_bytes


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": encoded["counts"].decode("ascii")}


def test_a_mask_outline_covers_every_blob_and_rasterises_back_to_the_mask():
    canvas = Image.new("L", (200, 120), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon([(60, 20), (150, 20), (199, 119), (10, 119)], fill=1)
    draw.ellipse([5, 5, 40, 30], fill=1)
    draw.point((100, 3), fill=1)
    mask = np.asarray(canvas).astype(bool)
    rings = mask_outlines(rle(mask))
    assert len(rings) == 3 and all(len(r) >= 6 for r in rings)
    back = mask_utils.decode(mask_utils.frPyObjects([join_rings(rings)], 120, 200))[:, :, 0].astype(bool)
    assert (back & mask).sum() / (back | mask).sum() > 0.98
    assert len(rings[1]) < 40  # a trapezoid's staircase edges are straightened to a few points


def test_join_rings_passes_through_every_part_once():
    a = [0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]
    b = [10.0, 0.0, 14.0, 0.0, 14.0, 4.0]
    joined = join_rings([a, b])
    points = {(joined[i], joined[i + 1]) for i in range(0, len(joined), 2)}
    assert points == {(0, 0), (4, 0), (4, 4), (0, 4), (10, 0), (14, 0), (14, 4)}


def test_rows_are_clipped_deduplicated_and_never_in_exponent_notation(tmp_path):
    assert (
        fmt_number(0.00001) == "0.000010" and fmt_number(1e-9) == "0.000000" and fmt_number(0.5) == "0.500000"
    )
    cats = [CategoryDef("car", source_id=1)]
    item = ItemRecord(key="images/train/a.jpg", width=100, height=50, split="train")
    labels = [
        LabelRecord(item.key, "car", model.BBOX, {"bbox": [-10.0, 5.0, 30.0, 10.0]}),
        LabelRecord(item.key, "car", model.BBOX, {"bbox": [-10.0, 5.0, 30.0, 10.0]}),
        LabelRecord(item.key, "car", model.POLYLINE, {"points": [1.0, 1.0, 2.0, 40.0]}),
        LabelRecord(item.key, "car", model.CLASSIFICATION, {}),
    ]
    notes = Notes()
    write_yolo(DirectorySink(tmp_path), [(item, labels)], categories=cats, notes=notes, task="detect")
    text = (tmp_path / "labels/train/a.txt").read_text()
    assert "e" not in text
    rows = [[float(v) for v in line.split()] for line in text.splitlines()]
    assert rows == [[0, 0.1, 0.2, 0.2, 0.2], [0, 0.015, 0.41, 0.01, 0.78]]
    codes = {(n["code"], n.get("kind", "")) for n in notes.as_list()}
    assert {
        ("clipped", "bbox"),
        ("dropped", "bbox"),
        ("converted", "polyline"),
        ("dropped", "classification"),
    } <= codes
    assert read_yolo(DirectorySource(tmp_path), image_size=lambda key: (100, 50)).categories[0].name == "car"


def test_a_segment_export_never_mixes_box_and_polygon_rows(tmp_path):
    cats = [CategoryDef("car", source_id=1), CategoryDef("road", source_id=2)]
    item = ItemRecord(key="a.jpg", width=100, height=50, split="val")
    labels = [
        LabelRecord("a.jpg", "car", model.BBOX, {"bbox": [10.0, 10.0, 20.0, 10.0]}),
        LabelRecord(
            "a.jpg", "road", model.POLYGON, {"polygons": [[0, 30, 99, 30, 99, 49], [0, 0, 5, 0, 5, 5]]}
        ),
    ]
    assert choose_task(cats, [model.BBOX, model.POLYGON]) == "segment"
    notes = Notes()
    picture = image_bytes(100, 50)
    write_yolo(
        DirectorySink(tmp_path), [(item, labels)], categories=cats, notes=notes, task="segment",
        image_source=lambda _: io.BytesIO(picture),
    )  # fmt: skip
    rows = [r.split() for r in (tmp_path / "labels/val/a.txt").read_text().splitlines()]
    assert [len(r) for r in rows] == [9, 1 + 2 * 8]  # a 4-corner box; two rings joined by a bridge
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert data["train"] == data["val"] == "images/val"  # no train split: both point at what there is
    parsed = read_yolo(DirectorySource(tmp_path), image_size=lambda key: (100, 50))
    back = list(parsed.labels)
    assert [lab.geometry_type for lab in back] == ["polygon", "polygon"]
    # train and val name one folder (Ultralytics needs both keys): a warning, the images stay in train.
    assert [p.code for p in parsed.problems] == ["split_reused"]


def test_pose_rows_carry_every_keypoint_and_data_yaml_the_skeleton(tmp_path):
    cats = [
        CategoryDef("person", source_id=1, keypoints=["head", "left", "right"]),
        CategoryDef("bag", source_id=2),
    ]
    item = ItemRecord(key="images/train/p.jpg", width=100, height=100, split="train")
    labels = [
        LabelRecord(
            item.key,
            "person",
            model.KEYPOINTS,
            {"keypoints": [50, 10, 2, 0, 0, 0, 60, 90, 1], "bbox": [40.0, 5.0, 30.0, 90.0]},
        ),
        LabelRecord(item.key, "bag", model.BBOX, {"bbox": [70.0, 70.0, 10.0, 10.0]}),
    ]
    notes = Notes()
    picture = image_bytes(100, 100)
    write_yolo(
        DirectorySink(tmp_path), [(item, labels)], categories=cats, notes=notes, task="pose", flip_idx=[0, 2, 1],
        image_source=lambda _: io.BytesIO(picture),
    )  # fmt: skip
    rows = [
        [float(v) for v in line.split()]
        for line in (tmp_path / "labels/train/p.txt").read_text().splitlines()
    ]
    assert rows == [
        [0, 0.55, 0.5, 0.3, 0.9, 0.5, 0.1, 2, 0, 0, 0, 0.6, 0.9, 1],
        [1, 0.75, 0.75, 0.1, 0.1, *[0] * 9],
    ]
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert (
        data["kpt_shape"] == [3, 3]
        and data["flip_idx"] == [0, 2, 1]
        and data["names"] == {0: "person", 1: "bag"}
    )
    parsed = read_yolo(DirectorySource(tmp_path), image_size=lambda key: (100, 100))
    assert parsed.categories[0].keypoints == ["head", "left", "right"]
    first = next(iter(parsed.labels))
    assert first.geometry["keypoints"] == [50.0, 10.0, 2, 0.0, 0.0, 0, 60.0, 90.0, 1]


def test_two_images_with_one_stem_get_two_label_files(tmp_path):
    cats = [CategoryDef("car", source_id=1)]
    records = [
        (ItemRecord(key=f"images/train/a.{ext}", width=10, height=10, split="train"), [
            LabelRecord(f"images/train/a.{ext}", "car", model.BBOX, {"bbox": [1.0, 1.0, 2.0, 2.0]})
        ])
        for ext in ("jpg", "png")
    ]  # fmt: skip
    write_yolo(DirectorySink(tmp_path), records, categories=cats, notes=Notes(), task="detect")
    assert sorted(p.name for p in (tmp_path / "labels/train").iterdir()) == ["a-2.txt", "a.txt"]
