"""Writing COCO: original category ids, unique ids, string RLE, notes, provenance our reader reads."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from marketplace.formats import model
from marketplace.formats.archive import DirectorySource
from marketplace.formats.coco import read_coco
from marketplace.formats.coco_writer import coco_category_ids, write_coco
from marketplace.formats.model import CategoryDef, ItemRecord, LabelRecord, Provenance
from marketplace.formats.writing import DirectorySink, Notes

from .builders import image_bytes

CATS = [
    CategoryDef("car", source_id=3),
    CategoryDef("person", source_id=7, keypoints=["head", "foot"], skeleton=[[1, 2]]),
]


def rle_of(width: int, height: int) -> dict:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[2:6, 3:9] = 1
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [height, width], "counts": encoded["counts"].decode("ascii")}


def records():
    """A generator, as the service passes them: two splits, the same file name in each."""
    for split in ("train", "val"):
        item = ItemRecord(key=f"images/{split}/a.jpg", width=20, height=10, split=split)
        yield (
            item,
            [
                LabelRecord(
                    item.key, "car", model.BBOX, {"bbox": [1.0, 2.0, 5.0, 4.0]}, attributes={"occluded": True}
                ),
                LabelRecord(item.key, "car", model.MASK, {"rle": rle_of(20, 10)}, iscrowd=True),
                LabelRecord(
                    item.key,
                    "person",
                    model.KEYPOINTS,
                    {"keypoints": [4, 2, 2, 0, 0, 0], "bbox": [3.0, 1.0, 4.0, 8.0]},
                ),
            ],
        )


def write(tmp_path, recs, categories=CATS, **kwargs):
    notes = Notes()
    summary = write_coco(DirectorySink(tmp_path), recs, categories=categories, notes=notes, **kwargs)
    return summary, notes


def test_category_ids_are_the_originals_and_a_missing_one_never_becomes_0():
    cats = [
        CategoryDef("a", source_id=5),
        CategoryDef("b"),
        CategoryDef("c", source_id=0),
        CategoryDef("d", source_id=2),
    ]
    notes = Notes()
    assert coco_category_ids(cats, notes) == {"a": 5, "b": 6, "c": 7, "d": 2}
    assert len(notes.as_list()) == 2


def test_a_generator_of_records_becomes_one_file_per_split_with_unique_ids(tmp_path):
    summary, _ = write(tmp_path, records())
    assert summary.files == ["annotations/instances_train.json", "annotations/instances_val.json"]
    ids = []
    for name in summary.files:
        raw = json.loads((tmp_path / name).read_text())
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(tmp_path / name))
        assert len(coco.anns) == len(raw["annotations"]) == 3
        ids += [a["id"] for a in raw["annotations"]]
        assert [c["id"] for c in raw["categories"]] == [3, 7]
        assert raw["categories"][1]["skeleton"] == [[1, 2]]
        mask = next(a for a in raw["annotations"] if isinstance(a["segmentation"], dict))
        assert isinstance(mask["segmentation"]["counts"], str) and mask["iscrowd"] == 1
        assert mask["area"] == 24.0 and mask["bbox"] == [3.0, 2.0, 6.0, 4.0]
        assert coco.annToMask(mask).sum() == 24
        pose = next(a for a in raw["annotations"] if "keypoints" in a)
        assert pose["num_keypoints"] == 1 and pose["bbox"] == [3.0, 1.0, 4.0, 8.0]
    assert len(set(ids)) == len(ids) == 6


def test_what_coco_cannot_hold_is_in_the_notes_not_silently_gone(tmp_path):
    item = ItemRecord(key="x.jpg", width=20, height=10, split="train")
    labels = [
        LabelRecord("x.jpg", "car", model.CLASSIFICATION, {}),
        LabelRecord(
            "x.jpg",
            "car",
            model.CUBOID_3D,
            {"cuboid_3d": {"position": [0, 0, 1], "dimensions": [1, 1, 1], "rotation": [0, 0, 0]}},
        ),
        LabelRecord("x.jpg", "car", model.POLYLINE, {"points": [1.0, 1.0, 9.0, 1.0]}),
    ]
    _, notes = write(tmp_path, [(item, labels)])
    by_kind = {(n["code"], n["kind"]): n["count"] for n in notes.as_list() if n["code"] != "info"}
    assert by_kind == {
        ("converted", "classification"): 1,
        ("dropped", "cuboid_3d"): 1,
        ("converted", "polyline"): 1,
    }
    # The line, written as its box, carries the box as segmentation: said once, as a reading note.
    (info,) = [n for n in notes.as_list() if n["code"] == "info"]
    assert "segmentation" in info["detail"]
    raw = json.loads((tmp_path / "annotations/instances_train.json").read_text())
    assert raw["images"][0]["classifications"] == [{"category_id": 3, "source": "human"}]
    (line,) = raw["annotations"]
    assert line["bbox"] == [1.0, 1.0, 8.0, 1.0] and line["points"] == [
        1.0,
        1.0,
        9.0,
        1.0,
    ]  # a line covers a pixel


def test_provenance_rides_on_each_annotation_and_our_reader_reads_it_back(tmp_path):
    made = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    item = ItemRecord(key="images/train/a.jpg", width=20, height=10, split="train")
    label = LabelRecord(
        item.key,
        "car",
        model.BBOX,
        {"bbox": [1.0, 2.0, 5.0, 4.0]},
        attributes={"state": "red"},
        uid="5f0c8f0e-4c1e-4d3a-9a55-5d1f0c3b7a21",
        is_final=False,
        provenance=Provenance(
            annotator="A-1",
            made_at=made,
            guideline_version="v1.2",
            source="model",
            model_name="m",
            model_version="2",
        ),
    )
    write(tmp_path, [(item, [label])], image_source=lambda _: io.BytesIO(image_bytes(20, 10)))
    parsed = read_coco(DirectorySource(tmp_path))
    assert [i.key for i in parsed.items] == ["images/train/a.jpg"]
    (back,) = list(parsed.labels)
    assert not parsed.problems
    assert back.attributes == {"state": "red"} and back.is_final is False
    assert back.provenance == Provenance(
        annotator="A-1",
        made_at=made,
        guideline_version="v1.2",
        source="model",
        model_name="m",
        model_version="2",
    )


def test_fields_coco_does_not_define_go_back_as_fields_and_pycocotools_reads_them(tmp_path):
    # COCO-WholeBody-style extra fields on a keypoint annotation, and a polyline from CVAT.
    face = [float(v) for v in range(9)]
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 10}],
        "categories": [{"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0,
             "face_kpts": face, "face_valid": True, "lefthand_box": [1, 2, 3, 4]},
        ],
    }  # fmt: skip
    source = tmp_path / "in"
    (source / "annotations").mkdir(parents=True)
    (source / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    (source / "a.jpg").write_bytes(image_bytes(20, 10))
    parsed = read_coco(DirectorySource(source))
    items, labels = list(parsed.items), list(parsed.labels)
    assert labels[0].attributes["face_kpts"] == face  # kept, and said so
    assert [p.code for p in parsed.problems] == ["extra_fields"]
    polyline = LabelRecord(items[0].key, "car", model.POLYLINE, {"points": [1.0, 1.0, 5.0, 5.0, 9.0, 1.0]})

    out = tmp_path / "out"
    picture = image_bytes(20, 10)
    write(
        out,
        [(items[0], [*labels, polyline])],
        categories=parsed.categories,
        image_source=lambda _: io.BytesIO(picture),
    )
    coco = COCO(str(out / "annotations" / "instances_train.json"))
    first, second = (coco.anns[i] for i in sorted(coco.anns))
    assert (
        first["face_kpts"] == face and first["face_valid"] is True and first["lefthand_box"] == [1, 2, 3, 4]
    )
    assert "coco_fields" not in json.dumps(coco.dataset)  # the marker is ours, never written
    assert second["points"] == [1.0, 1.0, 5.0, 5.0, 9.0, 1.0]  # beside its box
    # Read back: the same fields as attributes, the polyline as a polyline.
    again = read_coco(DirectorySource(out))
    list(again.items)
    back = list(again.labels)
    assert back[0].attributes["face_kpts"] == face
    assert back[1].geometry_type == model.POLYLINE
    assert back[1].geometry == {"points": [1.0, 1.0, 5.0, 5.0, 9.0, 1.0], "bbox": [1.0, 1.0, 8.0, 4.0]}
